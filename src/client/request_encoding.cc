// Zero-copy encoding of ModelInferRequest: see request_encoding.h.
#include "request_encoding.h"

#include <string>
#include <vector>

namespace beamline::client {

namespace {

// The request message is written by hand: fields 1-6 (names, shapes, parameters: small) into one
// buffer, and each raw_input_contents entry (field 7) as a slice over the request's own buffer,
// pinned until gRPC lets go of it. Protobuf parsers accept fields in any order and repeated
// fields spread out, so the server sees the same message SerializeToString would make, without
// the 9 MB copy.

void putVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

size_t varintSize(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

void putTag(std::string& out, uint32_t field) { putVarint(out, (field << 3) | 2); }

void putBytes(std::string& out, uint32_t field, std::string_view bytes) {
  if (bytes.empty()) return;
  putTag(out, field);
  putVarint(out, bytes.size());
  out.append(bytes);
}

void putMessage(std::string& out, uint32_t field, const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  putTag(out, field);
  putVarint(out, size);
  const size_t at = out.size();
  out.resize(at + size);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + at));
}

void putParameters(std::string& out, uint32_t field,
                   const google::protobuf::Map<std::string, inference::InferParameter>& map) {
  for (const auto& [key, value] : map) {
    const size_t value_size = value.ByteSizeLong();
    const size_t entry = 1 + varintSize(key.size()) + key.size() + 1 + varintSize(value_size) + value_size;
    putTag(out, field);
    putVarint(out, entry);
    putTag(out, 1);
    putVarint(out, key.size());
    out.append(key);
    putMessage(out, 2, value);
  }
}

void unpin(void* request) { static_cast<const InferRequest*>(request)->unpinBuffers(); }

// Buffers this small are copied into the header instead (a slice costs more than the copy).
constexpr size_t kCopyBelow = 16 * 1024;

}  // namespace

void encodeModelInferRequest(const InferRequest& request, grpc::ByteBuffer& out) {
  const auto& message = request.message();
  std::vector<grpc::Slice> slices;
  std::string pending;
  putBytes(pending, 1, message.model_name());
  putBytes(pending, 2, message.model_version());
  putBytes(pending, 3, message.id());
  putParameters(pending, 4, message.parameters());
  for (const auto& input : message.inputs()) putMessage(pending, 5, input);
  for (const auto& output : message.outputs()) putMessage(pending, 6, output);
  for (const std::string& raw : message.raw_input_contents()) {
    putTag(pending, 7);
    putVarint(pending, raw.size());
    if (raw.size() < kCopyBelow) {
      pending.append(raw);
      continue;
    }
    slices.emplace_back(pending);
    pending.clear();
    request.pinBuffers();
    slices.emplace_back(const_cast<char*>(raw.data()), raw.size(), &unpin,
                        const_cast<InferRequest*>(&request));
  }
  if (!pending.empty()) slices.emplace_back(pending);
  out = grpc::ByteBuffer(slices.data(), slices.size());
}

}  // namespace beamline::client
