// tuneProcessForInference(): OpenBLAS's pool is limited unless the user chose, and large blocks
// come from the heap (kept when freed) rather than from mmap (unmapped when freed).
#include <malloc.h>
#include <stdlib.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "beamline/core/process_tuning.h"

namespace {

TEST(ProcessTuningTest, LimitsOpenBlasUnlessTheEnvironmentChose) {
  unsetenv("OPENBLAS_NUM_THREADS");
  beamline::tuneProcessForInference();
  ASSERT_NE(getenv("OPENBLAS_NUM_THREADS"), nullptr);
  EXPECT_STREQ(getenv("OPENBLAS_NUM_THREADS"), "1");

  setenv("OPENBLAS_NUM_THREADS", "4", 1);
  beamline::tuneProcessForInference();
  EXPECT_STREQ(getenv("OPENBLAS_NUM_THREADS"), "4");
  unsetenv("OPENBLAS_NUM_THREADS");
}

TEST(ProcessTuningTest, LargeBlocksComeFromTheHeapNotFromMmap) {
  beamline::tuneProcessForInference();
  // 48 MiB: above glibc's largest dynamic mmap threshold (32 MiB), so without the tuning it is
  // always served by mmap (and unmapped again by free). Sanitizer allocators report zeros here.
  const size_t size = 48u << 20;
  const size_t mmapped_before = mallinfo2().hblks;
  void* block = malloc(size);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, size);
  asm volatile("" : : "r"(block) : "memory");  // the allocation must happen
  EXPECT_EQ(mallinfo2().hblks, mmapped_before) << "the 48 MiB block was served by mmap";
  free(block);
}

}  // namespace
