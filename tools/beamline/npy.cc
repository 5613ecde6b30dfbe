// .npy reading and writing; see npy.h. The format: the magic "\x93NUMPY", a major and minor version
// byte, the header length (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3), then a
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} padded with spaces and a
// final '\n', then the raw array data.
#include "npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>

namespace beamline::tools {
namespace {

static_assert(std::endian::native == std::endian::little, ".npy data is read as little-endian");

constexpr std::string_view kMagic = "\x93NUMPY";

// What the 'descr' string describes.
struct Dtype {
  DataType datatype = DataType::kInvalid;
  size_t item_size = 0;  // bytes per element in the file (the width n of |S<n>)
};

// The parsed header dict.
struct Header {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<Shape> shape;
};

// A recursive-descent reader for the small subset of Python literals .npy headers use.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  Result<Header> parse() {
    Header header;
    skipSpace();
    if (!consume('{')) return error("expected '{'");
    while (true) {
      skipSpace();
      if (consume('}')) break;
      BL_ASSIGN_OR_RETURN(std::string key, parseString());
      skipSpace();
      if (!consume(':')) return error("expected ':' after key '" + key + "'");
      skipSpace();
      if (key == "descr") {
        if (peek() == '[') {
          return invalidArg("structured dtypes (a list in 'descr') are not supported");
        }
        BL_ASSIGN_OR_RETURN(header.descr, parseString());
      } else if (key == "fortran_order") {
        BL_ASSIGN_OR_RETURN(header.fortran_order, parseBool());
      } else if (key == "shape") {
        BL_ASSIGN_OR_RETURN(header.shape, parseTuple());
      } else {
        return error("unexpected key '" + key + "'");
      }
      skipSpace();
      if (consume(',')) continue;
      skipSpace();
      if (consume('}')) break;
      return error("expected ',' or '}'");
    }
    return header;
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void skipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  Status error(const std::string& what) const {
    return invalidArg("malformed header at character " + std::to_string(pos_) + ": " + what);
  }

  Result<std::string> parseString() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') return error("expected a quoted string");
    ++pos_;
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return error("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return value;
  }

  Result<bool> parseBool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    return error("expected True or False");
  }

  Result<Shape> parseTuple() {
    if (!consume('(')) return error("expected '(' to start the shape");
    Shape shape;
    while (true) {
      skipSpace();
      if (consume(')')) return shape;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) {
        return error("expected a non-negative integer in the shape");
      }
      int64_t dim = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const int digit = peek() - '0';
        if (dim > (std::numeric_limits<int64_t>::max() - digit) / 10) {
          return error("dimension too large");
        }
        dim = dim * 10 + digit;
        ++pos_;
      }
      consume('L');  // Python 2 long literals, in files written by old NumPy
      shape.push_back(dim);
      skipSpace();
      if (consume(',')) continue;
      skipSpace();
      if (consume(')')) return shape;
      return error("expected ',' or ')' in the shape");
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

Result<Dtype> parseDescr(const std::string& descr) {
  const auto unsupported_descr = [&](const std::string& why) {
    return unsupported("dtype '" + descr + "' is not supported: " + why);
  };
  if (descr.size() < 2) return unsupported_descr("unrecognised");
  const char order = descr[0];
  const char kind = descr[1];
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    return unsupported_descr("unrecognised byte-order character");
  }
  if (kind == 'O') return unsupported_descr("object arrays are pickled Python objects");
  size_t size = 0;
  const std::string_view digits = std::string_view(descr).substr(2);
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return unsupported_descr("unrecognised");
  }
  for (char c : digits) size = size * 10 + static_cast<size_t>(c - '0');

  if (kind == 'U') {
    return unsupported_descr("unicode strings; convert with arr.astype('S') (UTF-8 bytes)");
  }
  if (kind == 'S' || kind == 'a') {
    if (size == 0) return unsupported_descr("zero-width byte strings");
    return Dtype{DataType::kBytes, size};
  }
  if (order == '>' && size > 1) {
    return unsupported_descr(
        "big-endian data; convert with arr.astype(arr.dtype.newbyteorder('<'))");
  }
  DataType datatype = DataType::kInvalid;
  switch (kind) {
    case 'f':
      datatype = size == 2   ? DataType::kFp16
                 : size == 4 ? DataType::kFp32
                 : size == 8 ? DataType::kFp64
                             : DataType::kInvalid;
      break;
    case 'i':
      datatype = size == 1   ? DataType::kInt8
                 : size == 2 ? DataType::kInt16
                 : size == 4 ? DataType::kInt32
                 : size == 8 ? DataType::kInt64
                             : DataType::kInvalid;
      break;
    case 'u':
      datatype = size == 1   ? DataType::kUint8
                 : size == 2 ? DataType::kUint16
                 : size == 4 ? DataType::kUint32
                 : size == 8 ? DataType::kUint64
                             : DataType::kInvalid;
      break;
    case 'b':
      datatype = size == 1 ? DataType::kBool : DataType::kInvalid;
      break;
    default:
      break;
  }
  if (datatype == DataType::kInvalid) {
    return unsupported_descr(
        "supported are <f2 <f4 <f8 |i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 |b1 and |S<n>");
  }
  return Dtype{datatype, size};
}

// The descr NumPy itself writes for a datatype.
Result<std::string> descrFor(DataType datatype) {
  switch (datatype) {
    case DataType::kBool:
      return std::string("|b1");
    case DataType::kUint8:
      return std::string("|u1");
    case DataType::kUint16:
      return std::string("<u2");
    case DataType::kUint32:
      return std::string("<u4");
    case DataType::kUint64:
      return std::string("<u8");
    case DataType::kInt8:
      return std::string("|i1");
    case DataType::kInt16:
      return std::string("<i2");
    case DataType::kInt32:
      return std::string("<i4");
    case DataType::kInt64:
      return std::string("<i8");
    case DataType::kFp16:
      return std::string("<f2");
    case DataType::kFp32:
      return std::string("<f4");
    case DataType::kFp64:
      return std::string("<f8");
    default:
      return invalidArg(std::string(dataTypeWireName(datatype)) +
                        " has no NumPy dtype; convert it first (BF16: to FP32)");
  }
}

uint32_t readLittleEndian(const std::byte* p, size_t n) {
  uint32_t value = 0;
  for (size_t i = 0; i < n; ++i) value |= static_cast<uint32_t>(p[i]) << (8 * i);
  return value;
}

std::string shapeTuple(std::span<const int64_t> shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ',';
  text += ')';
  return text;
}

}  // namespace

Result<NpyArray> parseNpy(std::span<const std::byte> file) {
  const auto text = [&](size_t offset, size_t n) {
    return std::string_view(reinterpret_cast<const char*>(file.data()) + offset, n);
  };
  if (file.size() < kMagic.size() + 2 || text(0, kMagic.size()) != kMagic) {
    return invalidArg("not a .npy file (no \\x93NUMPY magic)");
  }
  const auto major = static_cast<unsigned>(file[6]);
  const auto minor = static_cast<unsigned>(file[7]);
  size_t length_bytes = 0;
  if (major == 1) {
    length_bytes = 2;
  } else if (major == 2 || major == 3) {
    length_bytes = 4;
  } else {
    return unsupported(".npy format version " + std::to_string(major) + "." +
                       std::to_string(minor) + " is not supported (1.0, 2.0 and 3.0 are)");
  }
  const size_t prefix = kMagic.size() + 2 + length_bytes;
  if (file.size() < prefix) return invalidArg("truncated .npy header");
  const size_t header_length = readLittleEndian(file.data() + 8, length_bytes);
  if (file.size() - prefix < header_length) {
    return invalidArg("truncated .npy header: says " + std::to_string(header_length) +
                      " bytes, the file has " + std::to_string(file.size() - prefix));
  }
  BL_ASSIGN_OR_RETURN(const Header header, HeaderParser(text(prefix, header_length)).parse());
  if (!header.descr || !header.fortran_order || !header.shape) {
    return invalidArg("malformed header: 'descr', 'fortran_order' and 'shape' are all required");
  }
  if (*header.fortran_order && header.shape->size() > 1) {
    return unsupported(
        "Fortran-order arrays are not supported; save with np.save(f, np.ascontiguousarray(a))");
  }
  BL_ASSIGN_OR_RETURN(const Dtype dtype, parseDescr(*header.descr));
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(*header.shape));
  const auto unsigned_count = static_cast<uint64_t>(count);
  if (dtype.item_size != 0 &&
      unsigned_count > std::numeric_limits<uint64_t>::max() / dtype.item_size) {
    return invalidArg("shape " + shapeToString(*header.shape) + " is too large");
  }
  const uint64_t data_bytes = unsigned_count * dtype.item_size;
  const std::span<const std::byte> data = file.subspan(prefix + header_length);
  if (data.size() < data_bytes) {
    return invalidArg("truncated data: " + std::string(*header.descr) + " " +
                      shapeToString(*header.shape) + " needs " + std::to_string(data_bytes) +
                      " bytes, the file has " + std::to_string(data.size()));
  }
  if (data.size() > data_bytes) {
    return invalidArg(std::to_string(data.size() - data_bytes) +
                      " unexpected bytes after the array data");
  }

  NpyArray array;
  array.datatype = dtype.datatype;
  array.shape = *header.shape;
  if (dtype.datatype != DataType::kBytes) {
    array.data.assign(data.begin(), data.end());
    return array;
  }
  // |S<n>: each element is n bytes, NUL-padded; NumPy strips trailing NULs on access.
  std::string encoded;
  for (uint64_t i = 0; i < unsigned_count; ++i) {
    std::string_view element(reinterpret_cast<const char*>(data.data()) + i * dtype.item_size,
                             dtype.item_size);
    const size_t end = element.find_last_not_of('\0');
    element = element.substr(0, end == std::string_view::npos ? 0 : end + 1);
    appendBytesElement(encoded, element);
  }
  const auto* begin = reinterpret_cast<const std::byte*>(encoded.data());
  array.data.assign(begin, begin + encoded.size());
  return array;
}

Result<NpyArray> readNpy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return notFound("cannot open " + path.string());
  std::vector<std::byte> bytes;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0) return invalidArg("cannot read " + path.string());
  bytes.resize(static_cast<size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    return invalidArg("cannot read " + path.string());
  }
  auto array = parseNpy(bytes);
  if (!array.isOk()) return array.status().withContext(path.string());
  return array;
}

Result<std::string> encodeNpy(DataType datatype, std::span<const int64_t> shape,
                              std::span<const std::byte> data) {
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(shape));
  std::string descr;
  std::string body;
  if (datatype == DataType::kBytes) {
    BL_ASSIGN_OR_RETURN(const auto elements, splitBytesElements(data, count));
    size_t width = 1;
    for (std::string_view element : elements) width = std::max(width, element.size());
    descr = "|S" + std::to_string(width);
    body.reserve(width * elements.size());
    for (std::string_view element : elements) {
      body.append(element);
      body.append(width - element.size(), '\0');
    }
  } else {
    BL_ASSIGN_OR_RETURN(descr, descrFor(datatype));
    BL_ASSIGN_OR_RETURN(const uint64_t expected, fixedByteSize(datatype, shape));
    if (expected != data.size()) {
      return invalidArg(std::to_string(data.size()) + " bytes of data for " +
                        std::string(dataTypeWireName(datatype)) + " " + shapeToString(shape) +
                        ", expected " + std::to_string(expected));
    }
    body.assign(reinterpret_cast<const char*>(data.data()), data.size());
  }

  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shapeTuple(shape) + ", }";
  // Pad with spaces and end with '\n' so the data starts at a multiple of 64 bytes, as NumPy does.
  const auto padded_length = [&](size_t length_bytes) {
    const size_t unpadded = kMagic.size() + 2 + length_bytes + header.size() + 1;
    return header.size() + 1 + (64 - unpadded % 64) % 64;
  };
  size_t length_bytes = 2;
  if (padded_length(2) > std::numeric_limits<uint16_t>::max()) length_bytes = 4;
  const size_t total = padded_length(length_bytes);
  header.append(total - header.size() - 1, ' ');
  header.push_back('\n');

  std::string out(kMagic);
  out.push_back(static_cast<char>(length_bytes == 2 ? 1 : 2));
  out.push_back(0);
  for (size_t i = 0; i < length_bytes; ++i)
    out.push_back(static_cast<char>((total >> (8 * i)) & 0xff));
  out += header;
  out += body;
  return out;
}

Status writeNpy(const std::filesystem::path& path, DataType datatype,
                std::span<const int64_t> shape, std::span<const std::byte> data) {
  auto encoded = encodeNpy(datatype, shape, data);
  if (!encoded.isOk()) return encoded.status().withContext(path.string());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return invalidArg("cannot create " + path.string());
  out.write(encoded->data(), static_cast<std::streamsize>(encoded->size()));
  out.close();
  if (!out) return internalError("cannot write " + path.string());
  return Status::ok();
}

}  // namespace beamline::tools
