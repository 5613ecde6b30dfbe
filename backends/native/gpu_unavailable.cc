// The GPU entry points of a build without CUDA (BEAMLINE_WITH_CUDA=OFF): no devices, and every
// call answers UNAVAILABLE.

#include "gpu_algorithms.h"

namespace beamline::native::gpu {

namespace {
Status noCuda() { return unavailable("this build of beamline has no CUDA support"); }
}  // namespace

struct GpuWorkspace::Impl {};

bool compiledWithCuda() { return false; }
int deviceCount() { return 0; }

GpuWorkspace::GpuWorkspace(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuWorkspace::~GpuWorkspace() = default;
int GpuWorkspace::device() const { return -1; }

Result<std::unique_ptr<GpuWorkspace>> GpuWorkspace::create(int /*device*/) { return noCuda(); }

Status findNeighbourEdgesGpu(const PointSetView&, const FrnnConfig&, GpuWorkspace&, EdgeList&) {
  return noCuda();
}
Status findNeighbourEdgesOnDevice(const float*, int64_t, int64_t, const FrnnConfig&, GpuWorkspace&,
                                  const int64_t**, int64_t*) {
  return noCuda();
}
Status labelComponentsGpu(int64_t, const ScoredEdgesView&, const ComponentsConfig&, GpuWorkspace&,
                          int64_t*) {
  return noCuda();
}
Status labelComponentsOnDevice(int64_t, const ScoredEdgesView&, const ComponentsConfig&,
                               GpuWorkspace&, int64_t*) {
  return noCuda();
}

}  // namespace beamline::native::gpu
