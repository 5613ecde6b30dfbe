// Process-wide settings for a process that runs inference: `beamline serve`, and any program that
// runs models in-process (the in-process client endpoint, the local fallback, benchmarks).
//
// Call once, early, from main() and before any backend is loaded; any thread. It changes the whole
// process, which is why libraries never call it by themselves: an event-processing framework that
// embeds beamline decides.
#pragma once

namespace beamline {

// 1. Keeps freed large buffers (message bodies, LibTorch's batch temporaries) in the heap instead
//    of returning them to the kernel and faulting them back in on the next request or batch:
//    glibc's mmap threshold to 64 MiB, trim threshold to 256 MiB. Without it, in-process LibTorch
//    inference measured 1.3-2x slower than the same model inside `beamline serve`.
// 2. Sets OPENBLAS_NUM_THREADS=1 unless the environment already sets it. Debian's LibTorch does
//    its matrix products in OpenBLAS, whose thread pool (one thread per core, spinning when idle)
//    ignores a model's INTRA_OP_THREAD_COUNT; beamline parallelises with instances instead. Must
//    run before LibTorch (and so OpenBLAS) is loaded, i.e. before the first backend plug-in.
void tuneProcessForInference();

}  // namespace beamline
