#include "beamline/core/process_tuning.h"

#include <malloc.h>

#include <cstdlib>

namespace beamline {

void tuneProcessForInference() {
  mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
  setenv("OPENBLAS_NUM_THREADS", "1", /*overwrite=*/0);
}

}  // namespace beamline
