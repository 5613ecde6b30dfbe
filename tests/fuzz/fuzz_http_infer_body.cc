// Fuzz target for the decoders of outside data on the HTTP path: the inference body (JSON header
// + binary tensor data), the gzip/deflate decoder and the router. Built as a libFuzzer target with
// -DBEAMLINE_BUILD_FUZZERS=ON (clang), and otherwise as a replay program that CTest runs over the
// seed corpus, so that it keeps compiling and the seeds keep passing.
//
// Input layout: byte 0 selects the decoder, bytes 1-2 the JSON header length (little endian,
// taken modulo the body size), the rest is the body.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "frontend/http/http_routes.h"
#include "frontend/http/infer_codec.h"
#include "net/compression.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const auto body = std::as_bytes(std::span(data + 3, size - 3));
  const size_t header_length =
      body.empty() ? 0
                   : (static_cast<size_t>(data[1]) | (static_cast<size_t>(data[2]) << 8)) %
                         (body.size() + 1);
  using namespace beamline;
  switch (data[0] % 4) {
    case 0: {
      InferenceRequest request;
      frontend::http::OutputFormat format;
      frontend::http::JsonInputStorage storage;
      (void)frontend::http::parseInferRequest(body, header_length, "fuzz", request, format,
                                              storage);
      break;
    }
    case 1:
      (void)net::decompress(net::ContentCoding::kGzip, body, 1 << 20);
      break;
    case 2:
      (void)net::decompress(net::ContentCoding::kDeflate, body, 1 << 20);
      break;
    default: {
      const std::string_view text(reinterpret_cast<const char*>(body.data()), body.size());
      (void)frontend::http::matchRoute(header_length % 2 ? "GET" : "POST", text);
      (void)net::chooseResponseCoding(text);
    }
  }
  return 0;
}
