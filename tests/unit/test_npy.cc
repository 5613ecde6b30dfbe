// .npy reading and writing (tools/beamline/npy.h).
#include "npy.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace beamline::tools {
namespace {

template <typename T>
std::vector<std::byte> bytesOf(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

std::span<const std::byte> asSpan(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A file as NumPy writes it: magic, version 1.0, header padded to 64 bytes, data.
std::string handMadeNpy(const std::string& dict, const std::string& data) {
  std::string header = dict;
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

TEST(NpyTest, RoundTripsEveryNumericType) {
  struct Case {
    DataType datatype;
    std::vector<std::byte> data;
  };
  const std::vector<Case> cases = {
      {DataType::kFp32, bytesOf<float>({1.5f, -2.0f, 3.25f, 0.0f, 1e30f, -1e-30f})},
      {DataType::kFp64, bytesOf<double>({1.5, -2.0, 3.25, 0.0, 1e300, -1e-300})},
      {DataType::kFp16, bytesOf<uint16_t>({0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000, 0x3555})},
      {DataType::kInt8, bytesOf<int8_t>({-128, -1, 0, 1, 127, 5})},
      {DataType::kInt16, bytesOf<int16_t>({-32768, -1, 0, 1, 32767, 5})},
      {DataType::kInt32, bytesOf<int32_t>({INT32_MIN, -1, 0, 1, INT32_MAX, 5})},
      {DataType::kInt64, bytesOf<int64_t>({INT64_MIN, -1, 0, 1, INT64_MAX, 5})},
      {DataType::kUint8, bytesOf<uint8_t>({0, 1, 2, 254, 255, 7})},
      {DataType::kUint16, bytesOf<uint16_t>({0, 1, 2, 65534, 65535, 7})},
      {DataType::kUint32, bytesOf<uint32_t>({0, 1, 2, 4000000000u, UINT32_MAX, 7})},
      {DataType::kUint64, bytesOf<uint64_t>({0, 1, 2, 1ull << 63, UINT64_MAX, 7})},
      {DataType::kBool, bytesOf<uint8_t>({0, 1, 1, 0, 1, 0})},
  };
  const Shape shape = {2, 3};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(dataTypeWireName(c.datatype)));
    auto encoded = encodeNpy(c.datatype, shape, c.data);
    ASSERT_TRUE(encoded.isOk()) << encoded.status().toString();
    // NumPy aligns the data to 64 bytes.
    EXPECT_EQ((encoded->size() - c.data.size()) % 64, 0u);
    auto decoded = parseNpy(asSpan(*encoded));
    ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
    EXPECT_EQ(decoded->datatype, c.datatype);
    EXPECT_EQ(decoded->shape, shape);
    EXPECT_EQ(decoded->data, c.data);
  }
}

TEST(NpyTest, RoundTripsThroughAFile) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "beamline_npy_test.npy";
  const auto data = bytesOf<float>({1, 2, 3, 4});
  ASSERT_TRUE(writeNpy(path, DataType::kFp32, Shape{4}, data).isOk());
  auto array = readNpy(path);
  ASSERT_TRUE(array.isOk()) << array.status().toString();
  EXPECT_EQ(array->shape, Shape{4});
  EXPECT_EQ(array->data, data);
  std::filesystem::remove(path);
}

TEST(NpyTest, WritesTheHeaderNumPyWrites) {
  auto encoded = encodeNpy(DataType::kFp32, Shape{3}, bytesOf<float>({1, 2, 3}));
  ASSERT_TRUE(encoded.isOk());
  EXPECT_EQ(encoded->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(encoded->find("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"),
            std::string::npos);
  EXPECT_EQ(encoded->at(127), '\n');  // 10 + 58 + 1 bytes, padded to 128
}

TEST(NpyTest, ReadsScalarsAndEmptyArrays) {
  auto scalar = parseNpy(asSpan(handMadeNpy(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", std::string(8, '\0'))));
  ASSERT_TRUE(scalar.isOk()) << scalar.status().toString();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->data.size(), 8u);

  auto empty = parseNpy(
      asSpan(handMadeNpy("{'descr': '<i4', 'fortran_order': False, 'shape': (0, 5), }", "")));
  ASSERT_TRUE(empty.isOk()) << empty.status().toString();
  EXPECT_EQ(empty->shape, (Shape{0, 5}));
}

TEST(NpyTest, ReadsVersion2AndDoubleQuotedHeaders) {
  std::string header = "{\"descr\": \"|u1\", \"shape\": (2,), \"fortran_order\": False}\n";
  std::string file = "\x93NUMPY";
  file.push_back(2);
  file.push_back(0);
  for (int i = 0; i < 4; ++i) file.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  file += header + "\x07\x09";
  auto array = parseNpy(asSpan(file));
  ASSERT_TRUE(array.isOk()) << array.status().toString();
  EXPECT_EQ(array->datatype, DataType::kUint8);
  EXPECT_EQ(array->data, (std::vector<std::byte>{std::byte{7}, std::byte{9}}));
}

TEST(NpyTest, MapsFixedWidthByteStringsToBytes) {
  // np.array([b"ab", b"", b"xyz"]) is |S3, NUL-padded.
  auto array =
      parseNpy(asSpan(handMadeNpy("{'descr': '|S3', 'fortran_order': False, 'shape': (3,), }",
                                  std::string("ab\0\0\0\0xyz", 9))));
  ASSERT_TRUE(array.isOk()) << array.status().toString();
  EXPECT_EQ(array->datatype, DataType::kBytes);
  auto elements = splitBytesElements(array->data, 3);
  ASSERT_TRUE(elements.isOk());
  EXPECT_EQ((*elements)[0], "ab");
  EXPECT_EQ((*elements)[1], "");
  EXPECT_EQ((*elements)[2], "xyz");

  auto encoded = encodeNpy(DataType::kBytes, Shape{3}, array->data);
  ASSERT_TRUE(encoded.isOk());
  EXPECT_NE(encoded->find("'descr': '|S3'"), std::string::npos);
  auto again = parseNpy(asSpan(*encoded));
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->data, array->data);
}

TEST(NpyTest, RejectsFortranOrder) {
  auto array = parseNpy(asSpan(handMadeNpy(
      "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0'))));
  ASSERT_FALSE(array.isOk());
  EXPECT_NE(array.status().message().find("Fortran"), std::string::npos);
}

TEST(NpyTest, RejectsTruncatedFiles) {
  auto full = encodeNpy(DataType::kFp32, Shape{2, 2}, bytesOf<float>({1, 2, 3, 4}));
  ASSERT_TRUE(full.isOk());
  auto short_data = parseNpy(asSpan(full->substr(0, full->size() - 1)));
  ASSERT_FALSE(short_data.isOk());
  EXPECT_NE(short_data.status().message().find("truncated data"), std::string::npos);
  auto short_header = parseNpy(asSpan(full->substr(0, 30)));
  ASSERT_FALSE(short_header.isOk());
  EXPECT_NE(short_header.status().message().find("truncated"), std::string::npos);
  EXPECT_FALSE(parseNpy(asSpan(full->substr(0, 5))).isOk());
  EXPECT_FALSE(parseNpy(asSpan(*full + "x")).isOk());  // trailing garbage
}

TEST(NpyTest, RejectsUnsupportedDtypes) {
  for (const char* descr : {"<U4", "|O", ">f4", "<c8", "<f16", "|V2"}) {
    SCOPED_TRACE(descr);
    auto array = parseNpy(asSpan(handMadeNpy(
        std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (1,), }",
        std::string(16, '\0'))));
    ASSERT_FALSE(array.isOk());
    EXPECT_NE(array.status().message().find(descr), std::string::npos);
  }
  EXPECT_FALSE(parseNpy(asSpan(handMadeNpy(
                            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                            std::string(4, '\0'))))
                   .isOk());
}

TEST(NpyTest, WriteRejectsWrongSizeAndBf16) {
  EXPECT_FALSE(encodeNpy(DataType::kFp32, Shape{3}, bytesOf<float>({1, 2})).isOk());
  EXPECT_FALSE(encodeNpy(DataType::kBf16, Shape{1}, bytesOf<uint16_t>({0})).isOk());
}

TEST(NpyTest, ReportsMissingFile) {
  auto array = readNpy("/nonexistent/beamline.npy");
  ASSERT_FALSE(array.isOk());
  EXPECT_EQ(array.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace beamline::tools
