// CUDA versions of FRNN and connected components, with the same semantics and results as the CPU
// versions (frnn.h, connected_components.h).
//
// Compiled when BEAMLINE_WITH_CUDA is on; otherwise every entry point answers UNAVAILABLE and
// deviceCount() is 0. The CUDA runtime is linked statically, so code that includes these loads on
// machines without a driver; nothing here touches the device before it is asked to.
// This header includes no CUDA header: streams are passed as `void*` (a cudaStream_t).
#pragma once

#include <cstdint>
#include <memory>

#include "beamline/core/status.h"
#include "connected_components.h"
#include "frnn.h"

namespace beamline::native::gpu {

// True when this build has the CUDA implementations.
bool compiledWithCuda();

// The number of CUDA devices this process can use: 0 without CUDA support, without a driver
// (cudaGetDeviceCount's error is checked; it leaves the count untouched then) or without devices.
// Any thread.
int deviceCount();

// One device's stream and scratch buffers, grown as needed and reused from call to call. Used by
// one thread at a time (a backend instance's execution thread); create it on that thread.
class GpuWorkspace {
 public:
  // UNAVAILABLE when CUDA is not compiled in or `device` does not exist.
  static Result<std::unique_ptr<GpuWorkspace>> create(int device);
  ~GpuWorkspace();
  GpuWorkspace(const GpuWorkspace&) = delete;
  GpuWorkspace& operator=(const GpuWorkspace&) = delete;

  int device() const;

  struct Impl;  // defined by the CUDA implementation
  Impl& impl() { return *impl_; }

 private:
  explicit GpuWorkspace(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Host memory in and out: copies the points to the device, builds the edges there, copies them
// back into `edges`.
Status findNeighbourEdgesGpu(const PointSetView& host_points, const FrnnConfig& config,
                             GpuWorkspace& workspace, EdgeList& edges);

// Device memory in and out: `device_points` [count, dimensions] is on the workspace's device. On
// success `*device_edges` is [2, *edge_count] INT64 device memory owned by the workspace, valid
// until its next FRNN call. Work is ordered on the workspace's stream and finished on return.
Status findNeighbourEdgesOnDevice(const float* device_points, int64_t count, int64_t dimensions,
                                  const FrnnConfig& config, GpuWorkspace& workspace,
                                  const int64_t** device_edges, int64_t* edge_count);

// Host memory in and out; `labels` has node_count values.
Status labelComponentsGpu(int64_t node_count, const ScoredEdgesView& host_edges,
                          const ComponentsConfig& config, GpuWorkspace& workspace, int64_t* labels);

// Device memory in and out (edges, scores and labels on the workspace's device). Finished on
// return.
Status labelComponentsOnDevice(int64_t node_count, const ScoredEdgesView& device_edges,
                               const ComponentsConfig& config, GpuWorkspace& workspace,
                               int64_t* device_labels);

}  // namespace beamline::native::gpu
