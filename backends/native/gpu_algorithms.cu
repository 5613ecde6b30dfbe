// CUDA FRNN and connected components (see gpu_algorithms.h, frnn.h, connected_components.h).
//
// FRNN, after libFRNN's grid (InsertPoints, PrefixSum, CountingSort, FindNbrs):
//   bounds (per-block min/max, finished on the host) -> grid (the CPU's choice) -> cell of each
//   point and a count per cell -> exclusive scan -> points sorted by cell -> per point, count the
//   points within the radius in the 3^axes cells around it -> scan -> write the candidates as (d2,
//   j) keys
//   -> when a point has more than max_neighbours, a segmented sort of the keys -> pair keys
//   min * N + max of the kept ones -> radix sort -> unique -> split into [2, E].
// Distances use __fsub_rn/__fmul_rn/__fadd_rn: no fused multiply-add, like the CPU.
//
// Connected components: lock-free union-find that hooks the larger root under the smaller (after
// ECL-CC, Jaiganesh & Burtscher 2018), so each root is its component's smallest node; then the
// roots are flagged, ranked by a scan, and every node takes its root's rank.

#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#include <cub/device/device_select.cuh>
#include <cuda/functional>
#include <limits>
#include <string>
#include <vector>

#include "gpu_algorithms.h"

namespace beamline::native::gpu {

namespace {

constexpr int kThreads = 256;

#define BL_CUDA_RETURN_IF_ERROR(call)                                     \
  do {                                                                    \
    const cudaError_t bl_cuda_error_ = (call);                            \
    if (bl_cuda_error_ != cudaSuccess) {                                  \
      return internalError(std::string("CUDA error in ") + #call + ": " + \
                           cudaGetErrorName(bl_cuda_error_) + " (" +      \
                           cudaGetErrorString(bl_cuda_error_) + ")");     \
    }                                                                     \
  } while (0)

int blocksFor(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 8192)));
}

// A device allocation that only grows.
struct DeviceBuffer {
  void* pointer = nullptr;
  size_t bytes = 0;

  ~DeviceBuffer() {
    if (pointer != nullptr) cudaFree(pointer);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(pointer);
  }
};

Status reserve(DeviceBuffer& buffer, size_t bytes) {
  if (bytes <= buffer.bytes) return Status::ok();
  const size_t grown = std::max(bytes, buffer.bytes + buffer.bytes / 2);
  if (buffer.pointer != nullptr) {
    BL_CUDA_RETURN_IF_ERROR(cudaFree(buffer.pointer));
    buffer.pointer = nullptr;
    buffer.bytes = 0;
  }
  BL_CUDA_RETURN_IF_ERROR(cudaMalloc(&buffer.pointer, grown));
  buffer.bytes = grown;
  return Status::ok();
}

}  // namespace

struct GpuWorkspace::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  DeviceBuffer cub_temporary;
  // FRNN
  DeviceBuffer points, partial_minimum, partial_maximum, flags, cell_of_point, cell_count,
      cell_start, cell_fill, points_by_cell, neighbour_count, neighbour_offset, candidates,
      sorted_candidates, kept_count, kept_offset, pair_keys, sorted_pair_keys, unique_keys,
      selected_count, edges;
  // Connected components
  DeviceBuffer edge_sources, edge_targets, edge_scores, parent, roots, root_flags, root_rank,
      labels, bad_edge;

  ~Impl() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  Status select() {
    BL_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
    return Status::ok();
  }
  Status synchronize() {
    BL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return Status::ok();
  }
  Status launched() {
    BL_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    return Status::ok();
  }
  template <typename T>
  Status toHost(T* host, const void* device_memory, size_t count) {
    if (count == 0) return Status::ok();
    BL_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host, device_memory, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
    return synchronize();
  }
  template <typename T>
  Status toDevice(DeviceBuffer& buffer, const T* host, size_t count) {
    BL_RETURN_IF_ERROR(reserve(buffer, std::max<size_t>(1, count) * sizeof(T)));
    if (count == 0) return Status::ok();
    BL_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(buffer.pointer, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
    return Status::ok();
  }
};

bool compiledWithCuda() { return true; }

int deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error so that later calls start clean
    return 0;
  }
  return count;
}

GpuWorkspace::GpuWorkspace(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuWorkspace::~GpuWorkspace() {
  if (impl_) cudaSetDevice(impl_->device);
}
int GpuWorkspace::device() const { return impl_->device; }

Result<std::unique_ptr<GpuWorkspace>> GpuWorkspace::create(int device) {
  const int count = deviceCount();
  if (device < 0 || device >= count) {
    return unavailable("CUDA device " + std::to_string(device) + " is not available (" +
                       std::to_string(count) + " device(s) visible to this process)");
  }
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  BL_RETURN_IF_ERROR(impl->select());
  BL_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  return std::unique_ptr<GpuWorkspace>(new GpuWorkspace(std::move(impl)));
}

// --- FRNN kernels ------------------------------------------------------------------------------

namespace {

__device__ __forceinline__ float squaredDistance(const float* a, const float* b,
                                                 int64_t dimensions) {
  float sum = 0.0f;
  for (int64_t k = 0; k < dimensions; ++k) {
    const float difference = __fsub_rn(a[k], b[k]);
    sum = __fadd_rn(sum, __fmul_rn(difference, difference));
  }
  return sum;
}

// Per block and coordinate: the minimum and maximum; flags[0] = 1 on a non-finite coordinate.
__global__ void boundsKernel(const float* points, int64_t count, int64_t dimensions,
                             float* partial_minimum, float* partial_maximum, int* flags) {
  using BlockReduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename BlockReduce::TempStorage storage;
  for (int64_t k = 0; k < dimensions; ++k) {
    float low = FLT_MAX;
    float high = -FLT_MAX;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float x = points[i * dimensions + k];
      if (!isfinite(x)) atomicExch(&flags[0], 1);
      low = fminf(low, x);
      high = fmaxf(high, x);
    }
    const float block_low = BlockReduce(storage).Reduce(low, cuda::minimum<float>());
    __syncthreads();
    const float block_high = BlockReduce(storage).Reduce(high, cuda::maximum<float>());
    __syncthreads();
    if (threadIdx.x == 0) {
      partial_minimum[blockIdx.x * dimensions + k] = block_low;
      partial_maximum[blockIdx.x * dimensions + k] = block_high;
    }
  }
}

__device__ __forceinline__ int64_t linearCell(const detail::Grid& grid, const float* x) {
  int64_t linear = 0;
  for (int a = grid.axes_count - 1; a >= 0; --a) {
    linear = linear * grid.cells[a] + detail::cellCoordinate(grid, a, x[grid.axes[a]]);
  }
  return linear;
}

__global__ void cellKernel(const float* points, int64_t count, int64_t dimensions,
                           detail::Grid grid, int64_t* cell_of_point,
                           unsigned long long* cell_count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t cell = linearCell(grid, points + i * dimensions);
    cell_of_point[i] = cell;
    atomicAdd(&cell_count[cell], 1ull);
  }
}

__global__ void scatterKernel(int64_t count, const int64_t* cell_of_point,
                              const unsigned long long* cell_start, unsigned long long* cell_fill,
                              int64_t* points_by_cell) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t cell = cell_of_point[i];
    const unsigned long long slot = cell_start[cell] + atomicAdd(&cell_fill[cell], 1ull);
    points_by_cell[slot] = i;
  }
}

// Visits every point j != i within the radius of point i; `visit(j, d2)`.
template <typename Visit>
__device__ __forceinline__ void forEachNeighbour(const float* points, int64_t i, int64_t dimensions,
                                                 const detail::Grid& grid,
                                                 const unsigned long long* cell_start,
                                                 const int64_t* points_by_cell, float r2,
                                                 Visit visit) {
  const float* x = points + i * dimensions;
  int64_t centre[3] = {0, 0, 0};
  int offsets = 1;
  for (int a = 0; a < grid.axes_count; ++a) {
    centre[a] = detail::cellCoordinate(grid, a, x[grid.axes[a]]);
    offsets *= 3;
  }
  for (int offset = 0; offset < offsets; ++offset) {
    int rest = offset;
    bool inside = true;
    int64_t coordinate[3] = {0, 0, 0};
    for (int a = 0; a < grid.axes_count; ++a) {
      coordinate[a] = centre[a] + rest % 3 - 1;
      rest /= 3;
      inside = inside && coordinate[a] >= 0 && coordinate[a] < grid.cells[a];
    }
    if (!inside) continue;
    int64_t linear = 0;
    for (int a = grid.axes_count - 1; a >= 0; --a) linear = linear * grid.cells[a] + coordinate[a];
    for (unsigned long long p = cell_start[linear]; p < cell_start[linear + 1]; ++p) {
      const int64_t j = points_by_cell[p];
      if (j == i) continue;
      const float d2 = squaredDistance(x, points + j * dimensions, dimensions);
      if (d2 <= r2) visit(j, d2);
    }
  }
}

__global__ void countNeighboursKernel(const float* points, int64_t count, int64_t dimensions,
                                      detail::Grid grid, const unsigned long long* cell_start,
                                      const int64_t* points_by_cell, float r2,
                                      int64_t max_neighbours, unsigned long long* neighbour_count,
                                      int* flags) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    unsigned long long found = 0;
    forEachNeighbour(points, i, dimensions, grid, cell_start, points_by_cell, r2,
                     [&](int64_t, float) { ++found; });
    neighbour_count[i] = found;
    if (found > static_cast<unsigned long long>(max_neighbours)) atomicExch(&flags[1], 1);
  }
}

// Candidate keys: the FP32 bits of d2 (non-negative, so they order like the values) above j.
__global__ void writeCandidatesKernel(const float* points, int64_t count, int64_t dimensions,
                                      detail::Grid grid, const unsigned long long* cell_start,
                                      const int64_t* points_by_cell, float r2,
                                      const unsigned long long* neighbour_offset,
                                      unsigned long long* candidates) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    unsigned long long slot = neighbour_offset[i];
    forEachNeighbour(points, i, dimensions, grid, cell_start, points_by_cell, r2,
                     [&](int64_t j, float d2) {
                       const auto bits = static_cast<unsigned long long>(__float_as_uint(d2));
                       candidates[slot++] = (bits << 32) | static_cast<unsigned long long>(j);
                     });
  }
}

__global__ void keptCountKernel(int64_t count, const unsigned long long* neighbour_count,
                                int64_t max_neighbours, unsigned long long* kept_count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    kept_count[i] = min(neighbour_count[i], static_cast<unsigned long long>(max_neighbours));
  }
}

__global__ void pairKeysKernel(int64_t count, const unsigned long long* candidates,
                               const unsigned long long* neighbour_offset,
                               const unsigned long long* kept_offset,
                               unsigned long long* pair_keys) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const unsigned long long begin = neighbour_offset[i];
    const unsigned long long kept = kept_offset[i + 1] - kept_offset[i];
    for (unsigned long long t = 0; t < kept; ++t) {
      const auto j = static_cast<int64_t>(candidates[begin + t] & 0xffffffffull);
      const int64_t low = min(i, j);
      const int64_t high = max(i, j);
      pair_keys[kept_offset[i] + t] = static_cast<unsigned long long>(low * count + high);
    }
  }
}

__global__ void splitPairsKernel(const unsigned long long* keys, int64_t edge_count,
                                 int64_t point_count, int64_t* edges) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < edge_count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto key = static_cast<int64_t>(keys[e]);
    edges[e] = key / point_count;
    edges[edge_count + e] = key % point_count;
  }
}

int bitsFor(unsigned long long largest) {
  int bits = 1;
  while (bits < 64 && (largest >> bits) != 0) ++bits;
  return bits;
}

}  // namespace

Status findNeighbourEdgesOnDevice(const float* device_points, int64_t count, int64_t dimensions,
                                  const FrnnConfig& config, GpuWorkspace& workspace,
                                  const int64_t** device_edges, int64_t* edge_count) {
  BL_RETURN_IF_ERROR(validateFrnnConfig(config));
  if (count < 0 || dimensions <= 0) {
    return invalidArg("FRNN needs points of shape [N, D] with D >= 1, got [" +
                      std::to_string(count) + ", " + std::to_string(dimensions) + "]");
  }
  // Candidate keys keep j in 32 bits.
  if (count > std::numeric_limits<int32_t>::max()) {
    return invalidArg("FRNN on the GPU supports at most 2^31 - 1 points, got " +
                      std::to_string(count));
  }
  GpuWorkspace::Impl& w = workspace.impl();
  BL_RETURN_IF_ERROR(w.select());
  BL_RETURN_IF_ERROR(reserve(w.edges, 16));
  *device_edges = w.edges.as<int64_t>();
  *edge_count = 0;
  if (count == 0) return Status::ok();
  const cudaStream_t stream = w.stream;
  const auto n = static_cast<size_t>(count);
  const auto d = static_cast<size_t>(dimensions);

  // Bounds and the finiteness check.
  const int bound_blocks = std::min(blocksFor(count), 256);
  BL_RETURN_IF_ERROR(reserve(w.partial_minimum, bound_blocks * d * sizeof(float)));
  BL_RETURN_IF_ERROR(reserve(w.partial_maximum, bound_blocks * d * sizeof(float)));
  BL_RETURN_IF_ERROR(reserve(w.flags, 2 * sizeof(int)));
  BL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.flags.pointer, 0, 2 * sizeof(int), stream));
  boundsKernel<<<bound_blocks, kThreads, 0, stream>>>(
      device_points, count, dimensions, w.partial_minimum.as<float>(),
      w.partial_maximum.as<float>(), w.flags.as<int>());
  BL_RETURN_IF_ERROR(w.launched());
  std::vector<float> partial_minimum(bound_blocks * d), partial_maximum(bound_blocks * d);
  int flags[2] = {0, 0};
  BL_RETURN_IF_ERROR(
      w.toHost(partial_minimum.data(), w.partial_minimum.pointer, partial_minimum.size()));
  BL_RETURN_IF_ERROR(
      w.toHost(partial_maximum.data(), w.partial_maximum.pointer, partial_maximum.size()));
  BL_RETURN_IF_ERROR(w.toHost(flags, w.flags.pointer, 2));
  if (flags[0] != 0) return invalidArg("FRNN points have a non-finite coordinate");
  std::vector<float> minimum(d, std::numeric_limits<float>::max());
  std::vector<float> maximum(d, std::numeric_limits<float>::lowest());
  for (int b = 0; b < bound_blocks; ++b) {
    for (size_t k = 0; k < d; ++k) {
      minimum[k] = std::min(minimum[k], partial_minimum[b * d + k]);
      maximum[k] = std::max(maximum[k], partial_maximum[b * d + k]);
    }
  }
  const detail::Grid grid =
      detail::chooseGrid(minimum.data(), maximum.data(), dimensions, count, config.radius);
  const auto cells = static_cast<size_t>(grid.total_cells);
  const int blocks = blocksFor(count);

  // Counting sort by cell.
  BL_RETURN_IF_ERROR(reserve(w.cell_of_point, n * sizeof(int64_t)));
  BL_RETURN_IF_ERROR(reserve(w.cell_count, (cells + 1) * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.cell_start, (cells + 1) * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.cell_fill, cells * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.points_by_cell, n * sizeof(int64_t)));
  BL_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(w.cell_count.pointer, 0, (cells + 1) * sizeof(unsigned long long), stream));
  BL_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(w.cell_fill.pointer, 0, cells * sizeof(unsigned long long), stream));
  cellKernel<<<blocks, kThreads, 0, stream>>>(device_points, count, dimensions, grid,
                                              w.cell_of_point.as<int64_t>(),
                                              w.cell_count.as<unsigned long long>());
  BL_RETURN_IF_ERROR(w.launched());
  size_t temporary_bytes = 0;
  BL_CUDA_RETURN_IF_ERROR(
      cub::DeviceScan::ExclusiveSum(nullptr, temporary_bytes, w.cell_count.as<unsigned long long>(),
                                    w.cell_start.as<unsigned long long>(), cells + 1, stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      w.cub_temporary.pointer, temporary_bytes, w.cell_count.as<unsigned long long>(),
      w.cell_start.as<unsigned long long>(), cells + 1, stream));
  scatterKernel<<<blocks, kThreads, 0, stream>>>(
      count, w.cell_of_point.as<int64_t>(), w.cell_start.as<unsigned long long>(),
      w.cell_fill.as<unsigned long long>(), w.points_by_cell.as<int64_t>());
  BL_RETURN_IF_ERROR(w.launched());

  // Neighbour counts, then the candidates.
  const float r2 = config.radius * config.radius;
  BL_RETURN_IF_ERROR(reserve(w.neighbour_count, (n + 1) * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.neighbour_offset, (n + 1) * sizeof(unsigned long long)));
  BL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.neighbour_count.as<unsigned long long>() + n, 0,
                                          sizeof(unsigned long long), stream));
  countNeighboursKernel<<<blocks, kThreads, 0, stream>>>(
      device_points, count, dimensions, grid, w.cell_start.as<unsigned long long>(),
      w.points_by_cell.as<int64_t>(), r2, config.max_neighbours,
      w.neighbour_count.as<unsigned long long>(), w.flags.as<int>());
  BL_RETURN_IF_ERROR(w.launched());
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      nullptr, temporary_bytes, w.neighbour_count.as<unsigned long long>(),
      w.neighbour_offset.as<unsigned long long>(), n + 1, stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      w.cub_temporary.pointer, temporary_bytes, w.neighbour_count.as<unsigned long long>(),
      w.neighbour_offset.as<unsigned long long>(), n + 1, stream));
  unsigned long long candidate_count = 0;
  BL_RETURN_IF_ERROR(
      w.toHost(&candidate_count, w.neighbour_offset.as<unsigned long long>() + n, 1));
  BL_RETURN_IF_ERROR(w.toHost(flags, w.flags.pointer, 2));
  if (candidate_count == 0) return Status::ok();

  BL_RETURN_IF_ERROR(reserve(w.candidates, candidate_count * sizeof(unsigned long long)));
  writeCandidatesKernel<<<blocks, kThreads, 0, stream>>>(
      device_points, count, dimensions, grid, w.cell_start.as<unsigned long long>(),
      w.points_by_cell.as<int64_t>(), r2, w.neighbour_offset.as<unsigned long long>(),
      w.candidates.as<unsigned long long>());
  BL_RETURN_IF_ERROR(w.launched());
  const unsigned long long* kept_candidates = w.candidates.as<unsigned long long>();
  if (flags[1] != 0) {  // some point has more than max_neighbours: keep the nearest
    BL_RETURN_IF_ERROR(reserve(w.sorted_candidates, candidate_count * sizeof(unsigned long long)));
    BL_CUDA_RETURN_IF_ERROR(cub::DeviceSegmentedSort::SortKeys(
        nullptr, temporary_bytes, w.candidates.as<unsigned long long>(),
        w.sorted_candidates.as<unsigned long long>(), static_cast<int64_t>(candidate_count), count,
        w.neighbour_offset.as<unsigned long long>(),
        w.neighbour_offset.as<unsigned long long>() + 1, stream));
    BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
    BL_CUDA_RETURN_IF_ERROR(cub::DeviceSegmentedSort::SortKeys(
        w.cub_temporary.pointer, temporary_bytes, w.candidates.as<unsigned long long>(),
        w.sorted_candidates.as<unsigned long long>(), static_cast<int64_t>(candidate_count), count,
        w.neighbour_offset.as<unsigned long long>(),
        w.neighbour_offset.as<unsigned long long>() + 1, stream));
    kept_candidates = w.sorted_candidates.as<unsigned long long>();
  }
  BL_RETURN_IF_ERROR(reserve(w.kept_count, (n + 1) * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.kept_offset, (n + 1) * sizeof(unsigned long long)));
  BL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.kept_count.as<unsigned long long>() + n, 0,
                                          sizeof(unsigned long long), stream));
  keptCountKernel<<<blocks, kThreads, 0, stream>>>(
      count, w.neighbour_count.as<unsigned long long>(), config.max_neighbours,
      w.kept_count.as<unsigned long long>());
  BL_RETURN_IF_ERROR(w.launched());
  BL_CUDA_RETURN_IF_ERROR(
      cub::DeviceScan::ExclusiveSum(nullptr, temporary_bytes, w.kept_count.as<unsigned long long>(),
                                    w.kept_offset.as<unsigned long long>(), n + 1, stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      w.cub_temporary.pointer, temporary_bytes, w.kept_count.as<unsigned long long>(),
      w.kept_offset.as<unsigned long long>(), n + 1, stream));
  unsigned long long pair_count = 0;
  BL_RETURN_IF_ERROR(w.toHost(&pair_count, w.kept_offset.as<unsigned long long>() + n, 1));
  if (pair_count == 0) return Status::ok();

  // Pair keys -> sorted -> unique -> [2, E].
  BL_RETURN_IF_ERROR(reserve(w.pair_keys, pair_count * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.sorted_pair_keys, pair_count * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.unique_keys, pair_count * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.selected_count, sizeof(int64_t)));
  pairKeysKernel<<<blocks, kThreads, 0, stream>>>(
      count, kept_candidates, w.neighbour_offset.as<unsigned long long>(),
      w.kept_offset.as<unsigned long long>(), w.pair_keys.as<unsigned long long>());
  BL_RETURN_IF_ERROR(w.launched());
  const int end_bit =
      bitsFor(static_cast<unsigned long long>(count) * static_cast<unsigned long long>(count));
  BL_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortKeys(nullptr, temporary_bytes, w.pair_keys.as<unsigned long long>(),
                                     w.sorted_pair_keys.as<unsigned long long>(),
                                     static_cast<int64_t>(pair_count), 0, end_bit, stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortKeys(
      w.cub_temporary.pointer, temporary_bytes, w.pair_keys.as<unsigned long long>(),
      w.sorted_pair_keys.as<unsigned long long>(), static_cast<int64_t>(pair_count), 0, end_bit,
      stream));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceSelect::Unique(
      nullptr, temporary_bytes, w.sorted_pair_keys.as<unsigned long long>(),
      w.unique_keys.as<unsigned long long>(), w.selected_count.as<int64_t>(),
      static_cast<int64_t>(pair_count), stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceSelect::Unique(
      w.cub_temporary.pointer, temporary_bytes, w.sorted_pair_keys.as<unsigned long long>(),
      w.unique_keys.as<unsigned long long>(), w.selected_count.as<int64_t>(),
      static_cast<int64_t>(pair_count), stream));
  int64_t unique_count = 0;
  BL_RETURN_IF_ERROR(w.toHost(&unique_count, w.selected_count.pointer, 1));
  BL_RETURN_IF_ERROR(reserve(w.edges, 2 * static_cast<size_t>(unique_count) * sizeof(int64_t)));
  splitPairsKernel<<<blocksFor(unique_count), kThreads, 0, stream>>>(
      w.unique_keys.as<unsigned long long>(), unique_count, count, w.edges.as<int64_t>());
  BL_RETURN_IF_ERROR(w.launched());
  BL_RETURN_IF_ERROR(w.synchronize());
  *device_edges = w.edges.as<int64_t>();
  *edge_count = unique_count;
  return Status::ok();
}

Status findNeighbourEdgesGpu(const PointSetView& host_points, const FrnnConfig& config,
                             GpuWorkspace& workspace, EdgeList& edges) {
  GpuWorkspace::Impl& w = workspace.impl();
  BL_RETURN_IF_ERROR(w.select());
  edges.data_.clear();
  edges.count_ = 0;
  if (host_points.count < 0 || host_points.dimensions <= 0) {
    return invalidArg("FRNN needs points of shape [N, D] with D >= 1, got [" +
                      std::to_string(host_points.count) + ", " +
                      std::to_string(host_points.dimensions) + "]");
  }
  const auto values = static_cast<size_t>(host_points.count * host_points.dimensions);
  if (values > 0 && host_points.data == nullptr) return invalidArg("FRNN points have no data");
  BL_RETURN_IF_ERROR(w.toDevice(w.points, host_points.data, values));
  const int64_t* device_edges = nullptr;
  int64_t edge_count = 0;
  BL_RETURN_IF_ERROR(findNeighbourEdgesOnDevice(w.points.as<float>(), host_points.count,
                                                host_points.dimensions, config, workspace,
                                                &device_edges, &edge_count));
  edges.count_ = edge_count;
  edges.data_.resize(2 * static_cast<size_t>(edge_count));
  return w.toHost(edges.data_.data(), device_edges, edges.data_.size());
}

// --- connected components kernels
// -----------------------------------------------------------------

namespace {

// The root of `node`, shortening the path on the way (parents only ever decrease, so a racing
// write can only point to another ancestor).
__device__ __forceinline__ int64_t representative(volatile long long* parent, int64_t node) {
  long long current = parent[node];
  if (current != node) {
    long long previous = node;
    long long next;
    while (current > (next = parent[current])) {
      parent[previous] = next;
      previous = current;
      current = next;
    }
  }
  return current;
}

__global__ void initialiseParentsKernel(int64_t node_count, long long* parent) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < node_count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    parent[i] = i;
  }
}

// Joins the nodes of every selected edge; records the first edge that names a node outside
// [0, node_count) in *bad_edge.
__global__ void hookKernel(int64_t node_count, const int64_t* sources, const int64_t* targets,
                           const float* scores, int64_t edge_count, float threshold,
                           long long* parent, unsigned long long* bad_edge) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < edge_count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t a = sources[e];
    const int64_t b = targets[e];
    if (a < 0 || a >= node_count || b < 0 || b >= node_count) {
      atomicMin(bad_edge, static_cast<unsigned long long>(e));
      continue;
    }
    if (!(scores[e] > threshold)) continue;
    volatile long long* shared_parent = parent;
    long long root_a = representative(shared_parent, a);
    long long root_b = representative(shared_parent, b);
    while (root_a != root_b) {
      if (root_a > root_b) {
        const long long tmp = root_a;
        root_a = root_b;
        root_b = tmp;
      }
      // Hook the larger root under the smaller; if it is no longer a root, climb and retry.
      const auto seen = static_cast<long long>(atomicCAS(
          reinterpret_cast<unsigned long long*>(&parent[root_b]),
          static_cast<unsigned long long>(root_b), static_cast<unsigned long long>(root_a)));
      if (seen == root_b) break;
      root_b = representative(shared_parent, seen);
    }
  }
}

__global__ void rootsKernel(int64_t node_count, long long* parent, int64_t* roots,
                            unsigned long long* root_flags) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < node_count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t root = representative(parent, i);
    roots[i] = root;
    root_flags[i] = root == i ? 1ull : 0ull;
  }
}

__global__ void labelsKernel(int64_t node_count, const int64_t* roots,
                             const unsigned long long* root_rank, int64_t* labels) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < node_count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    labels[i] = static_cast<int64_t>(root_rank[roots[i]]);
  }
}

}  // namespace

Status labelComponentsOnDevice(int64_t node_count, const ScoredEdgesView& device_edges,
                               const ComponentsConfig& config, GpuWorkspace& workspace,
                               int64_t* device_labels) {
  BL_RETURN_IF_ERROR(validateComponentsConfig(config));
  if (node_count < 0 || device_edges.count < 0) {
    return invalidArg("connected components: negative node or edge count");
  }
  GpuWorkspace::Impl& w = workspace.impl();
  BL_RETURN_IF_ERROR(w.select());
  const cudaStream_t stream = w.stream;
  const auto n = static_cast<size_t>(node_count);
  BL_RETURN_IF_ERROR(reserve(w.parent, std::max<size_t>(1, n) * sizeof(long long)));
  BL_RETURN_IF_ERROR(reserve(w.bad_edge, sizeof(unsigned long long)));
  BL_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(w.bad_edge.pointer, 0xff, sizeof(unsigned long long), stream));
  if (node_count > 0) {
    initialiseParentsKernel<<<blocksFor(node_count), kThreads, 0, stream>>>(
        node_count, w.parent.as<long long>());
    BL_RETURN_IF_ERROR(w.launched());
  }
  if (device_edges.count > 0) {
    hookKernel<<<blocksFor(device_edges.count), kThreads, 0, stream>>>(
        node_count, device_edges.sources, device_edges.targets, device_edges.scores,
        device_edges.count, config.threshold, w.parent.as<long long>(),
        w.bad_edge.as<unsigned long long>());
    BL_RETURN_IF_ERROR(w.launched());
  }
  unsigned long long bad_edge = 0;
  BL_RETURN_IF_ERROR(w.toHost(&bad_edge, w.bad_edge.pointer, 1));
  if (bad_edge != std::numeric_limits<unsigned long long>::max()) {
    int64_t nodes[2] = {0, 0};
    BL_RETURN_IF_ERROR(w.toHost(&nodes[0], device_edges.sources + bad_edge, 1));
    BL_RETURN_IF_ERROR(w.toHost(&nodes[1], device_edges.targets + bad_edge, 1));
    return invalidArg("connected components: edge " + std::to_string(bad_edge) + " (" +
                      std::to_string(nodes[0]) + ", " + std::to_string(nodes[1]) +
                      ") names a node outside [0, " + std::to_string(node_count) + ")");
  }
  if (node_count == 0) return Status::ok();
  BL_RETURN_IF_ERROR(reserve(w.roots, n * sizeof(int64_t)));
  BL_RETURN_IF_ERROR(reserve(w.root_flags, (n + 1) * sizeof(unsigned long long)));
  BL_RETURN_IF_ERROR(reserve(w.root_rank, (n + 1) * sizeof(unsigned long long)));
  rootsKernel<<<blocksFor(node_count), kThreads, 0, stream>>>(
      node_count, w.parent.as<long long>(), w.roots.as<int64_t>(),
      w.root_flags.as<unsigned long long>());
  BL_RETURN_IF_ERROR(w.launched());
  size_t temporary_bytes = 0;
  BL_CUDA_RETURN_IF_ERROR(
      cub::DeviceScan::ExclusiveSum(nullptr, temporary_bytes, w.root_flags.as<unsigned long long>(),
                                    w.root_rank.as<unsigned long long>(), n, stream));
  BL_RETURN_IF_ERROR(reserve(w.cub_temporary, temporary_bytes));
  BL_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      w.cub_temporary.pointer, temporary_bytes, w.root_flags.as<unsigned long long>(),
      w.root_rank.as<unsigned long long>(), n, stream));
  labelsKernel<<<blocksFor(node_count), kThreads, 0, stream>>>(
      node_count, w.roots.as<int64_t>(), w.root_rank.as<unsigned long long>(), device_labels);
  BL_RETURN_IF_ERROR(w.launched());
  return w.synchronize();
}

Status labelComponentsGpu(int64_t node_count, const ScoredEdgesView& host_edges,
                          const ComponentsConfig& config, GpuWorkspace& workspace,
                          int64_t* labels) {
  GpuWorkspace::Impl& w = workspace.impl();
  BL_RETURN_IF_ERROR(w.select());
  if (node_count < 0 || host_edges.count < 0) {
    return invalidArg("connected components: negative node or edge count");
  }
  if (host_edges.count > 0 && (host_edges.sources == nullptr || host_edges.targets == nullptr ||
                               host_edges.scores == nullptr)) {
    return invalidArg("connected components: edges without data");
  }
  const auto e = static_cast<size_t>(host_edges.count);
  BL_RETURN_IF_ERROR(w.toDevice(w.edge_sources, host_edges.sources, e));
  BL_RETURN_IF_ERROR(w.toDevice(w.edge_targets, host_edges.targets, e));
  BL_RETURN_IF_ERROR(w.toDevice(w.edge_scores, host_edges.scores, e));
  BL_RETURN_IF_ERROR(
      reserve(w.labels, std::max<size_t>(1, static_cast<size_t>(node_count)) * sizeof(int64_t)));
  const ScoredEdgesView device_edges{w.edge_sources.as<int64_t>(), w.edge_targets.as<int64_t>(),
                                     w.edge_scores.as<float>(), host_edges.count};
  BL_RETURN_IF_ERROR(
      labelComponentsOnDevice(node_count, device_edges, config, workspace, w.labels.as<int64_t>()));
  return w.toHost(labels, w.labels.pointer, static_cast<size_t>(node_count));
}

}  // namespace beamline::native::gpu
