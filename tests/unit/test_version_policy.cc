// Version selection by policy and discovery of version directories (src/core/version_policy.h).
#include "core/version_policy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace beamline {
namespace {

namespace fs = std::filesystem;
using Versions = std::vector<int64_t>;

inference::ModelVersionPolicy latest(uint32_t n) {
  inference::ModelVersionPolicy policy;
  policy.mutable_latest()->set_num_versions(n);
  return policy;
}

TEST(SelectVersionsTest, LatestTakesTheHighestVersionsAscending) {
  const Versions available = {3, 1, 7, 2};
  EXPECT_EQ(selectVersions(latest(1), available), (Versions{7}));
  EXPECT_EQ(selectVersions(latest(2), available), (Versions{3, 7}));
  EXPECT_EQ(selectVersions(latest(10), available), (Versions{1, 2, 3, 7}));
}

TEST(SelectVersionsTest, UnsetPolicyActsAsLatestOne) {
  EXPECT_EQ(selectVersions(inference::ModelVersionPolicy(), Versions{1, 5, 2}), (Versions{5}));
}

TEST(SelectVersionsTest, AllTakesEveryVersionOnce) {
  inference::ModelVersionPolicy policy;
  policy.mutable_all();
  EXPECT_EQ(selectVersions(policy, Versions{4, 2, 4, 9}), (Versions{2, 4, 9}));
}

TEST(SelectVersionsTest, SpecificTakesTheAvailableListedVersions) {
  inference::ModelVersionPolicy policy;
  policy.mutable_specific()->add_versions(9);
  policy.mutable_specific()->add_versions(2);
  policy.mutable_specific()->add_versions(5);
  policy.mutable_specific()->add_versions(2);
  EXPECT_EQ(selectVersions(policy, Versions{1, 2, 3, 9}), (Versions{2, 9}));
}

TEST(SelectVersionsTest, NoAvailableVersionsSelectsNothing) {
  EXPECT_TRUE(selectVersions(latest(3), Versions{}).empty());
}

class ListVersionDirectoriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("beamline_versions_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ListVersionDirectoriesTest, ListsNumericDirectoriesOnlySorted) {
  for (const char* name :
       {"10", "2", "1", "0", "007", "3a", "v4", "-5", "labels", "99999999999999999999"}) {
    fs::create_directories(dir_ / name);
  }
  std::ofstream(dir_ / "5") << "a file, not a version directory";
  std::ofstream(dir_ / "config.pbtxt") << "";
  auto versions = listVersionDirectories(dir_);
  ASSERT_TRUE(versions.isOk()) << versions.status().toString();
  EXPECT_EQ(*versions, (Versions{1, 2, 10}));
}

TEST_F(ListVersionDirectoriesTest, EmptyModelDirectoryHasNoVersions) {
  auto versions = listVersionDirectories(dir_);
  ASSERT_TRUE(versions.isOk());
  EXPECT_TRUE(versions->empty());
}

TEST_F(ListVersionDirectoriesTest, MissingDirectoryIsNotFound) {
  auto versions = listVersionDirectories(dir_ / "absent");
  EXPECT_EQ(versions.status().code(), StatusCode::kNotFound);
  EXPECT_NE(versions.status().message().find("absent"), std::string::npos);
}

}  // namespace
}  // namespace beamline
