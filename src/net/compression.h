// HTTP content codings with zlib: gzip and deflate (the zlib format, which is what HTTP calls
// "deflate"; raw deflate streams are accepted too, as some clients send them).
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "beamline/core/status.h"
#include "net/byte_buffer.h"

namespace beamline::net {

enum class ContentCoding { kIdentity, kGzip, kDeflate };

std::string_view contentCodingName(ContentCoding coding);

// A Content-Encoding value: "" or "identity", "gzip" (or "x-gzip"), "deflate"; nullopt for any
// other coding (or a list of codings).
std::optional<ContentCoding> parseContentEncoding(std::string_view header);

// The response coding for an Accept-Encoding value: gzip or deflate when accepted (q > 0; gzip
// wins a tie), identity otherwise.
ContentCoding chooseResponseCoding(std::string_view accept_encoding);

// Decodes `input`. INVALID_ARG when the data is corrupt, truncated, or would decode to more than
// `max_output` bytes (checked while decoding, so a small "zip bomb" costs at most `max_output`).
Result<ByteBuffer> decompress(ContentCoding coding, std::span<const std::byte> input,
                              uint64_t max_output);

// Encodes the concatenation of `parts` (gzip or zlib stream; fastest compression level, because
// it runs on the I/O threads and tensor data compresses little at any level).
Result<std::string> compress(ContentCoding coding,
                             std::span<const std::span<const std::byte>> parts);

}  // namespace beamline::net
