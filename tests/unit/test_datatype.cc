// Datatype names and sizes, shapes, and the BYTES element encoding
// (include/beamline/core/datatype.h, tensor.h), plus Status formatting.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/status.h"
#include "beamline/core/tensor.h"

namespace beamline {
namespace {

std::span<const std::byte> asBytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

void expectError(const Status& status, std::string_view substring) {
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg) << status.toString();
  EXPECT_NE(status.message().find(substring), std::string::npos)
      << "expected \"" << substring << "\" in: " << status.message();
}

TEST(DataTypeTest, WireNamesRoundTripForEveryType) {
  for (int i = 1; i <= 14; ++i) {
    const auto type = static_cast<DataType>(i);
    const auto parsed = dataTypeFromWireName(dataTypeWireName(type));
    ASSERT_TRUE(parsed.has_value()) << i;
    EXPECT_EQ(*parsed, type);
  }
}

TEST(DataTypeTest, UsesTritonSpellings) {
  EXPECT_EQ(dataTypeWireName(DataType::kFp32), "FP32");
  EXPECT_EQ(dataTypeWireName(DataType::kBytes), "BYTES");
  EXPECT_EQ(dataTypeWireName(DataType::kBf16), "BF16");
  EXPECT_EQ(dataTypeWireName(DataType::kInvalid), "INVALID");
  EXPECT_EQ(dataTypeConfigName(DataType::kBytes), "TYPE_STRING");
  EXPECT_EQ(dataTypeConfigName(DataType::kUint16), "TYPE_UINT16");
  EXPECT_EQ(dataTypeConfigName(DataType::kBool), "TYPE_BOOL");
}

TEST(DataTypeTest, RejectsUnknownWireNames) {
  EXPECT_FALSE(dataTypeFromWireName("INVALID").has_value());
  EXPECT_FALSE(dataTypeFromWireName("fp32").has_value());
  EXPECT_FALSE(dataTypeFromWireName("TYPE_FP32").has_value());
  EXPECT_FALSE(dataTypeFromWireName("").has_value());
}

TEST(DataTypeTest, ReportsElementSizes) {
  EXPECT_EQ(dataTypeByteSize(DataType::kBool), 1u);
  EXPECT_EQ(dataTypeByteSize(DataType::kInt8), 1u);
  EXPECT_EQ(dataTypeByteSize(DataType::kFp16), 2u);
  EXPECT_EQ(dataTypeByteSize(DataType::kBf16), 2u);
  EXPECT_EQ(dataTypeByteSize(DataType::kUint32), 4u);
  EXPECT_EQ(dataTypeByteSize(DataType::kFp32), 4u);
  EXPECT_EQ(dataTypeByteSize(DataType::kInt64), 8u);
  EXPECT_EQ(dataTypeByteSize(DataType::kFp64), 8u);
  EXPECT_EQ(dataTypeByteSize(DataType::kBytes), 0u);
  EXPECT_EQ(dataTypeByteSize(DataType::kInvalid), 0u);
  EXPECT_EQ(dataTypeByteSize(static_cast<DataType>(99)), 0u);
}

TEST(ShapeTest, FormatsShapes) {
  EXPECT_EQ(shapeToString(std::vector<int64_t>{2, 3, -1}), "[2,3,-1]");
  EXPECT_EQ(shapeToString(std::vector<int64_t>{}), "[]");
}

TEST(ShapeTest, CountsElements) {
  EXPECT_EQ(*elementCount(std::vector<int64_t>{2, 3, 4}), 24);
  EXPECT_EQ(*elementCount(std::vector<int64_t>{}), 1);
  EXPECT_EQ(*elementCount(std::vector<int64_t>{5, 0, 7}), 0);
}

TEST(ShapeTest, RejectsNegativeDimensionInElementCount) {
  expectError(elementCount(std::vector<int64_t>{2, -1}).status(), "dimension 1 is -1");
}

TEST(ShapeTest, RejectsOverflowInElementCount) {
  const int64_t big = int64_t{1} << 32;
  expectError(elementCount(std::vector<int64_t>{big, big}).status(), "overflows");
  expectError(elementCount(std::vector<int64_t>{std::numeric_limits<int64_t>::max(), 2}).status(),
              "overflows");
  // A zero anywhere makes the product representable.
  EXPECT_EQ(*elementCount(std::vector<int64_t>{big, big, 0}), 0);
}

TEST(ShapeTest, ComputesFixedByteSize) {
  EXPECT_EQ(*fixedByteSize(DataType::kFp32, std::vector<int64_t>{2, 3}), 24u);
  EXPECT_EQ(*fixedByteSize(DataType::kFp16, std::vector<int64_t>{}), 2u);
  expectError(fixedByteSize(DataType::kBytes, std::vector<int64_t>{1}).status(), "BYTES");
  const int64_t max = std::numeric_limits<int64_t>::max();
  expectError(fixedByteSize(DataType::kFp64, std::vector<int64_t>{max}).status(), "overflows");
}

TEST(ShapeTest, MatchesWildcardDimensions) {
  EXPECT_TRUE(shapeMatches(std::vector<int64_t>{4, 3}, std::vector<int64_t>{-1, 3}));
  EXPECT_FALSE(shapeMatches(std::vector<int64_t>{4, 2}, std::vector<int64_t>{-1, 3}));
  EXPECT_FALSE(shapeMatches(std::vector<int64_t>{4}, std::vector<int64_t>{4, 1}));
  EXPECT_TRUE(shapeMatches(std::vector<int64_t>{}, std::vector<int64_t>{}));
}

TEST(BytesEncodingTest, WritesLittleEndianLengthPrefix) {
  std::string out;
  appendBytesElement(out, std::string(258, 'x'));
  ASSERT_EQ(out.size(), 262u);
  EXPECT_EQ(static_cast<unsigned char>(out[0]), 0x02);
  EXPECT_EQ(static_cast<unsigned char>(out[1]), 0x01);
  EXPECT_EQ(out[2], '\0');
  EXPECT_EQ(out[3], '\0');
}

TEST(BytesEncodingTest, AppendSplitAndCountRoundTrip) {
  const std::vector<std::string_view> elements = {"hello", "", "world!",
                                                  std::string_view("\0a", 2)};
  std::string out;
  for (const auto element : elements) {
    appendBytesElement(out, element);
  }
  EXPECT_EQ(out.size(), serializedBytesSize(elements));
  EXPECT_EQ(out.size(), 4u * 4 + 5 + 0 + 6 + 2);

  auto split = splitBytesElements(asBytes(out), 4);
  ASSERT_TRUE(split.isOk()) << split.status().toString();
  EXPECT_EQ(*split, elements);
  auto any_count = splitBytesElements(asBytes(out), -1);
  ASSERT_TRUE(any_count.isOk());
  EXPECT_EQ(any_count->size(), 4u);
  EXPECT_EQ(*countBytesElements(asBytes(out)), 4);
}

TEST(BytesEncodingTest, AcceptsZeroLengthElementsAndEmptyData) {
  std::string out;
  appendBytesElement(out, "");
  appendBytesElement(out, "");
  EXPECT_EQ(out, std::string(8, '\0'));
  auto split = splitBytesElements(asBytes(out), 2);
  ASSERT_TRUE(split.isOk());
  EXPECT_TRUE((*split)[0].empty());
  EXPECT_TRUE((*split)[1].empty());

  const std::string empty;
  EXPECT_EQ(*countBytesElements(asBytes(empty)), 0);
  EXPECT_TRUE(splitBytesElements(asBytes(empty), 0).isOk());
}

TEST(BytesEncodingTest, RejectsTruncatedLengthPrefix) {
  std::string out;
  appendBytesElement(out, "abc");
  out += std::string("\x01\x00", 2);
  expectError(countBytesElements(asBytes(out)).status(),
              "BYTES element 1 at byte offset 7: truncated length prefix (needs 4 bytes, 2 left)");
  expectError(splitBytesElements(asBytes(out), -1).status(), "element 1 at byte offset 7");
}

TEST(BytesEncodingTest, RejectsLengthPastTheEnd) {
  std::string out;
  appendBytesElement(out, "abc");
  appendBytesElement(out, "defgh");
  out.resize(out.size() - 1);
  expectError(splitBytesElements(asBytes(out), 2).status(),
              "BYTES element 1 at byte offset 7: length prefix says 5 bytes but only 4 follow");
}

TEST(BytesEncodingTest, ReadsHugeLengthPrefixWithoutOverflow) {
  const std::string out(
      "\xff\xff\xff\xff"
      "abc",
      7);
  expectError(countBytesElements(asBytes(out)).status(),
              "length prefix says 4294967295 bytes but only 3 follow");
}

TEST(BytesEncodingTest, RejectsWrongElementCount) {
  std::string out;
  appendBytesElement(out, "a");
  appendBytesElement(out, "b");
  expectError(splitBytesElements(asBytes(out), 3).status(),
              "holds 2 element(s) in 10 bytes, expected 3");
  expectError(splitBytesElements(asBytes(out), 1).status(),
              "more than the expected 1 element(s): element 1 starts at byte offset 5");
  // A huge expected count must not be trusted for allocation.
  expectError(splitBytesElements(asBytes(out), std::numeric_limits<int64_t>::max()).status(),
              "expected 9223372036854775807");
}

TEST(StatusTest, NamesEveryCode) {
  EXPECT_EQ(statusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(statusCodeName(StatusCode::kUnknown), "UNKNOWN");
  EXPECT_EQ(statusCodeName(StatusCode::kInternal), "INTERNAL");
  EXPECT_EQ(statusCodeName(StatusCode::kNotFound), "NOT_FOUND");
  EXPECT_EQ(statusCodeName(StatusCode::kInvalidArg), "INVALID_ARG");
  EXPECT_EQ(statusCodeName(StatusCode::kUnavailable), "UNAVAILABLE");
  EXPECT_EQ(statusCodeName(StatusCode::kUnsupported), "UNSUPPORTED");
  EXPECT_EQ(statusCodeName(StatusCode::kAlreadyExists), "ALREADY_EXISTS");
  EXPECT_EQ(statusCodeName(StatusCode::kCancelled), "CANCELLED");
}

TEST(StatusTest, FormatsAndAddsContext) {
  EXPECT_EQ(Status::ok().toString(), "OK");
  const Status status = notFound("model 'x'");
  EXPECT_EQ(status.toString(), "NOT_FOUND: model 'x'");
  const Status wrapped = status.withContext("load");
  EXPECT_EQ(wrapped.code(), StatusCode::kNotFound);
  EXPECT_EQ(wrapped.message(), "load: model 'x'");
  EXPECT_TRUE(Status::ok().withContext("load").isOk());
}

}  // namespace
}  // namespace beamline
