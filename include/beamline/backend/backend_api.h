/*
 * beamline backend C ABI, version 1.
 *
 * A backend is a shared library `libbeamline_backend_<name>.so` that the server opens with dlopen
 * when a model's config names it (`backend: "<name>"`, or a `platform` mapped to it). It exports two
 * symbols with C linkage:
 *
 *   uint32_t    beamline_backend_api_version(void);
 *       The ABI version the backend was compiled against: (major << 16) | minor.
 *   BlError*    beamline_backend_init(const BlHostApi* host, BlBackendApi* backend);
 *       Called once after the version check. The backend keeps `host` (valid until the library is
 *       closed) and fills `backend` with its entry points.
 *
 * Version rule: the server loads a backend only when the majors are equal and the backend's minor is
 * not newer than the server's. New entry points are only ever appended to the end of BlHostApi and
 * BlBackendApi (each carries its own `struct_size`), so an older backend keeps working with a newer
 * server, and a newer server can tell which entry points an older backend filled in.
 *
 * Rules for both sides:
 *  - No C++ exception crosses this boundary. Every failure is a BlError* (NULL means success).
 *    An error returned by a backend function is owned by the host afterwards.
 *  - Handles (BlModel, BlInstance, BlBatch) are owned by the host and are only valid during the calls
 *    documented below. Backend state (`void*` model/instance state) is owned by the backend and freed
 *    in the matching destroy call.
 *  - Threads: modelCreate/modelDestroy run on the repository's load thread; instanceCreate,
 *    instanceDestroy and execute of one instance all run on that instance's own execution thread.
 *    Different instances of the same model execute concurrently, so model state must be safe for
 *    concurrent reads.
 *
 * One execute() call receives one *batch*: the host has already merged the requests of the batch into
 * contiguous input tensors (and, for ragged inputs, added the batch_input companion tensors), and it
 * splits the outputs back per request. A backend therefore sees a single set of inputs and produces a
 * single set of outputs, whether that batch holds one request or many, and whether it is a neural
 * network or a native algorithm.
 */
#ifndef BEAMLINE_BACKEND_BACKEND_API_H_
#define BEAMLINE_BACKEND_BACKEND_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BL_BACKEND_API_VERSION_MAJOR 1u
#define BL_BACKEND_API_VERSION_MINOR 0u
#define BL_BACKEND_API_VERSION ((BL_BACKEND_API_VERSION_MAJOR << 16) | BL_BACKEND_API_VERSION_MINOR)

#if defined(__GNUC__)
#define BL_BACKEND_EXPORT __attribute__((visibility("default")))
#else
#define BL_BACKEND_EXPORT
#endif

/* Error categories; the same set (and meaning) as the server's status codes and Triton's. */
typedef enum BlStatusCode {
  BL_STATUS_OK = 0,
  BL_STATUS_UNKNOWN = 1,
  BL_STATUS_INTERNAL = 2,
  BL_STATUS_NOT_FOUND = 3,
  BL_STATUS_INVALID_ARG = 4,
  BL_STATUS_UNAVAILABLE = 5,
  BL_STATUS_UNSUPPORTED = 6,
  BL_STATUS_ALREADY_EXISTS = 7,
  BL_STATUS_CANCELLED = 8
} BlStatusCode;

/* Tensor element types; numbers equal model_config.proto's DataType enum. BYTES elements are stored
 * as a 4-byte little-endian length followed by the bytes, back to back. */
typedef enum BlDataType {
  BL_TYPE_INVALID = 0,
  BL_TYPE_BOOL = 1,
  BL_TYPE_UINT8 = 2,
  BL_TYPE_UINT16 = 3,
  BL_TYPE_UINT32 = 4,
  BL_TYPE_UINT64 = 5,
  BL_TYPE_INT8 = 6,
  BL_TYPE_INT16 = 7,
  BL_TYPE_INT32 = 8,
  BL_TYPE_INT64 = 9,
  BL_TYPE_FP16 = 10,
  BL_TYPE_FP32 = 11,
  BL_TYPE_FP64 = 12,
  BL_TYPE_BYTES = 13,
  BL_TYPE_BF16 = 14
} BlDataType;

typedef enum BlMemoryKind {
  BL_MEMORY_CPU = 0,
  BL_MEMORY_CPU_PINNED = 1,
  BL_MEMORY_GPU = 2
} BlMemoryKind;

typedef enum BlInstanceKind {
  BL_INSTANCE_CPU = 0,
  BL_INSTANCE_GPU = 1
} BlInstanceKind;

typedef enum BlLogLevel {
  BL_LOG_ERROR = 0,
  BL_LOG_WARNING = 1,
  BL_LOG_INFO = 2,
  BL_LOG_VERBOSE = 3
} BlLogLevel;

typedef enum BlParameterType {
  BL_PARAMETER_BOOL = 0,
  BL_PARAMETER_INT64 = 1,
  BL_PARAMETER_STRING = 2,
  BL_PARAMETER_DOUBLE = 3,
  BL_PARAMETER_UINT64 = 4
} BlParameterType;

/* One request parameter (the protocol's InferParameter); only the member of `type` is set.
 * Strings stay valid for the duration of the execute() call. */
typedef struct BlParameter {
  const char* name;
  BlParameterType type;
  int bool_value;
  int64_t int64_value;
  uint64_t uint64_value;
  double double_value;
  const char* string_value;
} BlParameter;

/* Opaque handles owned by the host. */
typedef struct BlError BlError;
typedef struct BlModel BlModel;       /* one loaded version of one model */
typedef struct BlInstance BlInstance; /* one execution instance of that model version */
typedef struct BlBatch BlBatch;       /* one execution: inputs in, outputs out */

/* A read-only view of one tensor. `data` stays valid for the duration of the execute() call and
 * must not be written: for a single request it is the request message's own memory. */
typedef struct BlTensorView {
  const char* name;
  BlDataType datatype;
  const int64_t* shape;
  uint32_t rank;
  const void* data;
  uint64_t byte_size;
  BlMemoryKind memory_kind;
  int64_t memory_device_id;
} BlTensorView;

/* Entry points the host offers to backends. */
typedef struct BlHostApi {
  uint32_t struct_size; /* sizeof(BlHostApi) as compiled into the host */
  uint32_t api_version; /* the host's BL_BACKEND_API_VERSION */

  /* Errors. errorNew copies `message`. */
  BlError* (*errorNew)(BlStatusCode code, const char* message);
  void (*errorDelete)(BlError* error);

  /* Logging through the server's logger (thread-safe). */
  void (*log)(BlLogLevel level, const char* file, int line, const char* message);

  /* Model version. Strings stay valid until modelDestroy returns. */
  const char* (*modelName)(const BlModel* model);
  int64_t (*modelVersion)(const BlModel* model);
  /* The version directory, e.g. <repository>/<model>/<version>. */
  const char* (*modelVersionPath)(const BlModel* model);
  /* The model's ModelConfig (model_config.proto), serialized in protobuf wire format, after the
   * server filled in its defaults. Protobuf field numbers are the stable contract here. */
  void (*modelConfig)(const BlModel* model, const void** bytes, uint64_t* byte_size);

  /* Instance. */
  const char* (*instanceName)(const BlInstance* instance);
  BlInstanceKind (*instanceKind)(const BlInstance* instance);
  int32_t (*instanceDeviceId)(const BlInstance* instance); /* GPU ordinal; -1 for CPU */

  /* Batch inputs. Index-based access is in the order of the model config's inputs that the batch
   * carries (optional inputs that no request sent are absent). */
  uint32_t (*batchInputCount)(const BlBatch* batch);
  BlError* (*batchInput)(const BlBatch* batch, uint32_t index, BlTensorView* view);
  /* NOT_FOUND error when the batch has no input of that name. */
  BlError* (*batchInputByName)(const BlBatch* batch, const char* name, BlTensorView* view);
  /* Number of requests merged into this batch (for logging and statistics). */
  uint32_t (*batchRequestCount)(const BlBatch* batch);

  /* Outputs. A backend asks for the memory of each output it produces. When no request of the
   * batch asked for that output, *buffer is set to NULL and no error is returned: the backend skips
   * it. For BYTES outputs byte_size is the serialized size (length prefixes included). The buffer
   * stays owned by the host. */
  int (*batchOutputRequested)(const BlBatch* batch, const char* name);
  BlError* (*batchOutputAllocate)(BlBatch* batch, const char* name, BlDataType datatype,
                                  const int64_t* shape, uint32_t rank, uint64_t byte_size,
                                  void** buffer);

  /* Optional timing for statistics (CLOCK_MONOTONIC nanoseconds from nowNs): when the inputs
   * were ready for the model, and when the model finished. Without it the whole execute() call
   * counts as compute_infer. */
  uint64_t (*nowNs)(void);
  void (*batchReportComputeTimes)(BlBatch* batch, uint64_t input_end_ns, uint64_t infer_end_ns);

  /* The parameters of request `request_index` (< batchRequestCount) that the server does not
   * interpret itself (custom parameters are passed through to the backend). */
  uint32_t (*batchRequestParameterCount)(const BlBatch* batch, uint32_t request_index);
  BlError* (*batchRequestParameter)(const BlBatch* batch, uint32_t request_index,
                                    uint32_t parameter_index, BlParameter* parameter);
} BlHostApi;

/* Entry points a backend offers to the host; filled in by beamline_backend_init. */
typedef struct BlBackendApi {
  uint32_t struct_size; /* sizeof(BlBackendApi) as compiled into the backend */

  /* Load one model version. On success *model_state is the backend's (may be NULL). */
  BlError* (*modelCreate)(BlModel* model, void** model_state);
  void (*modelDestroy)(void* model_state);

  /* Create one execution instance (e.g. move the network to its device). */
  BlError* (*instanceCreate)(void* model_state, BlInstance* instance, void** instance_state);
  void (*instanceDestroy)(void* instance_state);

  /* Execute one batch on one instance. Runs on the instance's own execution thread. */
  BlError* (*execute)(void* instance_state, BlBatch* batch);

  /* Called once before the library is closed. May be NULL. */
  void (*finalize)(void);
} BlBackendApi;

typedef uint32_t (*BlBackendApiVersionFn)(void);
typedef BlError* (*BlBackendInitFn)(const BlHostApi* host, BlBackendApi* backend);

#define BL_BACKEND_API_VERSION_SYMBOL "beamline_backend_api_version"
#define BL_BACKEND_INIT_SYMBOL "beamline_backend_init"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BEAMLINE_BACKEND_BACKEND_API_H_ */
