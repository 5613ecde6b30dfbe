#include "net/compression.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace beamline::net {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// zlib's window-bits argument for a coding. For "deflate", a stream that does not start with a
// zlib header is taken as raw deflate.
int inflateWindowBits(ContentCoding coding, std::span<const std::byte> input) {
  if (coding == ContentCoding::kGzip) return 15 + 32;  // gzip or zlib, detected
  if (input.size() >= 2) {
    const unsigned b0 = static_cast<unsigned>(input[0]);
    const unsigned b1 = static_cast<unsigned>(input[1]);
    if ((b0 & 0x0f) == 8 && ((b0 << 8) | b1) % 31 == 0) return 15;  // zlib header
  }
  return -15;  // raw deflate
}

}  // namespace

std::string_view contentCodingName(ContentCoding coding) {
  switch (coding) {
    case ContentCoding::kGzip:
      return "gzip";
    case ContentCoding::kDeflate:
      return "deflate";
    default:
      return "identity";
  }
}

std::optional<ContentCoding> parseContentEncoding(std::string_view header) {
  header = trim(header);
  if (header.empty() || equalsIgnoreCase(header, "identity")) return ContentCoding::kIdentity;
  if (equalsIgnoreCase(header, "gzip") || equalsIgnoreCase(header, "x-gzip")) {
    return ContentCoding::kGzip;
  }
  if (equalsIgnoreCase(header, "deflate")) return ContentCoding::kDeflate;
  return std::nullopt;
}

ContentCoding chooseResponseCoding(std::string_view accept_encoding) {
  double gzip_q = 0, deflate_q = 0, star_q = -1;
  while (!accept_encoding.empty()) {
    const size_t comma = accept_encoding.find(',');
    std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    double q = 1;
    if (const size_t semicolon = item.find(';'); semicolon != std::string_view::npos) {
      std::string_view parameter = trim(item.substr(semicolon + 1));
      item = item.substr(0, semicolon);
      if (parameter.size() > 2 && (parameter[0] == 'q' || parameter[0] == 'Q') &&
          parameter[1] == '=') {
        q = std::atof(std::string(parameter.substr(2)).c_str());
      }
    }
    item = trim(item);
    if (equalsIgnoreCase(item, "gzip") || equalsIgnoreCase(item, "x-gzip")) {
      gzip_q = std::max(gzip_q, q);
    } else if (equalsIgnoreCase(item, "deflate")) {
      deflate_q = std::max(deflate_q, q);
    } else if (item == "*") {
      star_q = q;
    }
  }
  if (gzip_q == 0 && deflate_q == 0 && star_q > 0) gzip_q = star_q;
  if (gzip_q > 0 && gzip_q >= deflate_q) return ContentCoding::kGzip;
  if (deflate_q > 0) return ContentCoding::kDeflate;
  return ContentCoding::kIdentity;
}

Result<ByteBuffer> decompress(ContentCoding coding, std::span<const std::byte> input,
                              uint64_t max_output) {
  if (coding == ContentCoding::kIdentity) {
    return internalError("decompress() called for the identity coding");
  }
  z_stream stream{};
  if (inflateInit2(&stream, inflateWindowBits(coding, input)) != Z_OK) {
    return internalError("zlib: cannot initialise the decompressor");
  }
  // The gzip trailer states the decoded size (mod 2^32): a good first guess.
  uint64_t capacity = std::max<uint64_t>(input.size() * 4, 64 * 1024);
  if (coding == ContentCoding::kGzip && input.size() >= 18) {
    uint32_t stated = 0;
    std::memcpy(&stated, input.data() + input.size() - 4, 4);
    capacity = std::max<uint64_t>(stated, 1);
  }
  capacity = std::min(capacity, max_output + 1);
  ByteBuffer output;
  uint64_t produced = 0;
  Status failure;
  try {
    output = ByteBuffer::uninitialized(capacity);
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(input.data()));
    stream.avail_in = static_cast<uInt>(input.size());
    while (true) {
      if (produced == output.size()) {
        if (produced > max_output) break;
        const uint64_t grown = std::min<uint64_t>(output.size() * 2, max_output + 1);
        ByteBuffer bigger = ByteBuffer::uninitialized(grown);
        std::memcpy(bigger.data(), output.data(), produced);
        output = std::move(bigger);
      }
      const uint64_t room = std::min<uint64_t>(output.size() - produced, 1u << 30);
      stream.next_out = reinterpret_cast<Bytef*>(output.data() + produced);
      stream.avail_out = static_cast<uInt>(room);
      const int rc = inflate(&stream, Z_NO_FLUSH);
      produced += room - stream.avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_OK) continue;
      if (rc == Z_BUF_ERROR && stream.avail_in == 0) {
        failure = invalidArg(std::string("the ") + std::string(contentCodingName(coding)) +
                             " request body is truncated");
        break;
      }
      if (rc == Z_BUF_ERROR) continue;
      failure = invalidArg(std::string("the ") + std::string(contentCodingName(coding)) +
                           " request body cannot be decoded: " +
                           (stream.msg != nullptr ? stream.msg : "corrupt data"));
      break;
    }
  } catch (const std::bad_alloc&) {
    failure = internalError("out of memory while decoding the request body");
  }
  inflateEnd(&stream);
  if (!failure.isOk()) return failure;
  if (produced > max_output) {
    return invalidArg("the decoded request body is larger than the limit of " +
                      std::to_string(max_output) + " bytes");
  }
  output.truncate(produced);
  return output;
}

Result<std::string> compress(ContentCoding coding,
                             std::span<const std::span<const std::byte>> parts) {
  if (coding == ContentCoding::kIdentity) {
    return internalError("compress() called for the identity coding");
  }
  z_stream stream{};
  const int window_bits = coding == ContentCoding::kGzip ? 15 + 16 : 15;
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return internalError("zlib: cannot initialise the compressor");
  }
  uint64_t total = 0;
  for (const auto& part : parts) total += part.size();
  std::string output;
  Status failure;
  try {
    output.resize(deflateBound(&stream, static_cast<uLong>(total)) + 64);
    size_t produced = 0;
    for (size_t i = 0; i <= parts.size() && failure.isOk(); ++i) {
      const bool last = i == parts.size();
      if (!last) {
        stream.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(parts[i].data()));
        stream.avail_in = static_cast<uInt>(parts[i].size());
      }
      while (true) {
        if (produced == output.size()) output.resize(output.size() * 2);
        stream.next_out = reinterpret_cast<Bytef*>(output.data() + produced);
        stream.avail_out = static_cast<uInt>(output.size() - produced);
        const int rc = deflate(&stream, last ? Z_FINISH : Z_NO_FLUSH);
        produced = output.size() - stream.avail_out;
        if (rc == Z_STREAM_ERROR) {
          failure = internalError("zlib: compression failed");
          break;
        }
        if (last ? rc == Z_STREAM_END : (stream.avail_in == 0 && stream.avail_out > 0)) break;
      }
    }
    output.resize(produced);
  } catch (const std::bad_alloc&) {
    failure = internalError("out of memory while compressing the response");
  }
  deflateEnd(&stream);
  if (!failure.isOk()) return failure;
  return output;
}

}  // namespace beamline::net
