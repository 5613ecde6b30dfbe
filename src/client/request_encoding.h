// Client-side gRPC wire helpers. Encodes a ModelInferRequest for gRPC without copying its raw
// input buffers:
//
// Fields 1-6 (names, shapes, parameters: small) are written into one buffer; each
// raw_input_contents entry (field 7) of 16 KiB or more becomes a slice over the request's own
// memory, pinned (InferRequest::pinBuffers) until gRPC drops its last reference. Protobuf parsers
// accept fields in any order, so the server parses exactly the message SerializeToString would
// have made, without the client-side copy of the tensors. The request must not change until the
// call is over and its pins are released (InferRequest waits for that before changing a buffer).
//
// Threads: any; the request is only read.
#pragma once

#include <grpc/compression.h>
#include <grpcpp/support/byte_buffer.h>

#include "beamline/client/grpc_client.h"

namespace beamline::client {

void encodeModelInferRequest(const InferRequest& request, grpc::ByteBuffer& out);

// The gRPC algorithm for a client's compression setting.
inline grpc_compression_algorithm toGrpcCompression(Compression compression) {
  switch (compression) {
    case Compression::kGzip:
      return GRPC_COMPRESS_GZIP;
    case Compression::kDeflate:
      return GRPC_COMPRESS_DEFLATE;
    case Compression::kNone:
      break;
  }
  return GRPC_COMPRESS_NONE;
}

}  // namespace beamline::client
