// The HTTP transport: content codings (pure) and a real server on a loopback port driven with a
// plain socket, for what a client library would hide (keep-alive, 100-continue, chunked bodies,
// size limits, compressed bodies, responses from another thread).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "net/compression.h"
#include "net/http_server.h"

namespace beamline::net {
namespace {

std::span<const std::byte> bytesOf(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

// --- codings -----------------------------------------------------------------------------------

TEST(CompressionTest, RoundTripsGzipAndDeflate) {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "tensor " + std::to_string(i % 17) + ";";
  for (ContentCoding coding : {ContentCoding::kGzip, ContentCoding::kDeflate}) {
    const std::string first = text.substr(0, 1000), second = text.substr(1000);
    const std::span<const std::byte> parts[] = {bytesOf(first), bytesOf(second)};
    auto compressed = compress(coding, parts);
    ASSERT_TRUE(compressed.isOk());
    EXPECT_LT(compressed->size(), text.size() / 4);
    auto decoded = decompress(coding, bytesOf(*compressed), 1 << 20);
    ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
    EXPECT_EQ(decoded->view(), text);
  }
}

TEST(CompressionTest, EnforcesTheDecodedSizeLimitAndRejectsCorruptData) {
  const std::string zeros(1 << 20, '\0');
  const std::span<const std::byte> parts[] = {bytesOf(zeros)};
  auto bomb = compress(ContentCoding::kGzip, parts);
  ASSERT_TRUE(bomb.isOk());
  auto limited = decompress(ContentCoding::kGzip, bytesOf(*bomb), 1000);
  EXPECT_EQ(limited.status().code(), StatusCode::kInvalidArg);
  EXPECT_NE(limited.status().message().find("larger than the limit"), std::string::npos);
  auto corrupt = decompress(ContentCoding::kGzip, bytesOf(std::string("not gzip at all")), 1000);
  EXPECT_EQ(corrupt.status().code(), StatusCode::kInvalidArg);
  auto truncated =
      decompress(ContentCoding::kGzip, bytesOf(bomb->substr(0, bomb->size() / 2)), 2 << 20);
  EXPECT_EQ(truncated.status().code(), StatusCode::kInvalidArg);
}

TEST(CompressionTest, ParsesHeaders) {
  EXPECT_EQ(parseContentEncoding("gzip"), ContentCoding::kGzip);
  EXPECT_EQ(parseContentEncoding(" Deflate "), ContentCoding::kDeflate);
  EXPECT_EQ(parseContentEncoding("identity"), ContentCoding::kIdentity);
  EXPECT_EQ(parseContentEncoding("br"), std::nullopt);
  EXPECT_EQ(chooseResponseCoding("gzip, deflate"), ContentCoding::kGzip);
  EXPECT_EQ(chooseResponseCoding("deflate"), ContentCoding::kDeflate);
  EXPECT_EQ(chooseResponseCoding("gzip;q=0.5, deflate"), ContentCoding::kDeflate);
  EXPECT_EQ(chooseResponseCoding("gzip;q=0"), ContentCoding::kIdentity);
  EXPECT_EQ(chooseResponseCoding("br"), ContentCoding::kIdentity);
  EXPECT_EQ(chooseResponseCoding("*"), ContentCoding::kGzip);
}

// --- a live server -------------------------------------------------------------------------------

class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    timeval timeout{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~Client() { ::close(fd_); }

  void send(const std::string& data) {
    ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()));
  }
  // Reads one response (headers + Content-Length body); "" when the connection closed.
  std::string readResponse() {
    while (true) {
      const size_t end = pending_.find("\r\n\r\n");
      if (end != std::string::npos) {
        const std::string head = pending_.substr(0, end + 4);
        size_t length = 0;
        if (const size_t at = head.find("Content-Length: "); at != std::string::npos) {
          length = std::stoul(head.substr(at + 16));
        }
        if (pending_.size() >= end + 4 + length) {
          std::string response = pending_.substr(0, end + 4 + length);
          pending_.erase(0, end + 4 + length);
          return response;
        }
      }
      char buffer[65536];
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return "";
      pending_.append(buffer, static_cast<size_t>(n));
    }
  }
  void shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_ = -1;
  std::string pending_;
};

// Echoes the decoded body; "/later" answers from another thread.
class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.address = "127.0.0.1";
    options.max_body_bytes = 1 << 16;
    auto server = HttpServer::start(options, [](HttpRequest&& request, HttpResponder responder) {
      HttpResponse response;
      response.content_type = "text/plain";
      response.body = request.method + " " + std::string(request.path()) + " ";
      ByteBuffer echoed = std::move(request.body);
      response.tail.push_back(std::move(echoed));
      if (request.path() == "/later") {
        std::thread([r = std::move(responder), response = std::move(response)]() mutable {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          r.send(std::move(response));
        }).detach();
        return;
      }
      if (request.path() == "/throw") throw std::runtime_error("boom");
      responder.send(std::move(response));
    });
    ASSERT_TRUE(server.isOk()) << server.status().toString();
    server_ = std::move(server).value();
  }
  void TearDown() override { server_->shutdown(std::chrono::steady_clock::now()); }

  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepsTheConnectionAliveAndAnswersInOrder) {
  Client client(server_->port());
  client.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  std::string first = client.readResponse();
  EXPECT_NE(first.find("HTTP/1.1 200 OK"), std::string::npos) << first;
  EXPECT_NE(first.find("Connection: keep-alive"), std::string::npos);
  EXPECT_NE(first.find("POST /a abc"), std::string::npos) << first;
  // Two pipelined requests, the first answered from another thread.
  client.send("POST /later HTTP/1.1\r\nContent-Length: 1\r\n\r\n1GET /b?q=1 HTTP/1.1\r\n\r\n");
  EXPECT_NE(client.readResponse().find("POST /later 1"), std::string::npos);
  EXPECT_NE(client.readResponse().find("GET /b "), std::string::npos);
}

TEST_F(HttpServerTest, HandlesExpectContinueAndChunkedBodies) {
  Client client(server_->port());
  client.send("POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  EXPECT_NE(client.readResponse().find("100 Continue"), std::string::npos);
  client.send("wxyz");
  EXPECT_NE(client.readResponse().find("POST /c wxyz"), std::string::npos);
  client.send(
      "POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_NE(client.readResponse().find("POST /d abcde"), std::string::npos);
}

TEST_F(HttpServerTest, RefusesOversizeBodiesWithA400AndCloses) {
  Client client(server_->port());
  const std::string body(100000, 'x');
  client.send("POST /big HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  std::string response = client.readResponse();
  EXPECT_NE(response.find("HTTP/1.1 400"), std::string::npos) << response;
  EXPECT_NE(response.find("larger than the limit"), std::string::npos) << response;
  EXPECT_NE(response.find("Connection: close"), std::string::npos) << response;
}

TEST_F(HttpServerTest, DecodesGzipBodiesAndEncodesResponses) {
  const std::string text(5000, 'a');
  const std::span<const std::byte> parts[] = {bytesOf(text)};
  auto gzip = compress(ContentCoding::kGzip, parts);
  ASSERT_TRUE(gzip.isOk());
  Client client(server_->port());
  client.send("POST /z HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: " +
              std::to_string(gzip->size()) + "\r\n\r\n" + *gzip);
  std::string plain = client.readResponse();
  EXPECT_NE(plain.find("POST /z " + text), std::string::npos);
  client.send("POST /z HTTP/1.1\r\nAccept-Encoding: gzip\r\nContent-Length: 5000\r\n\r\n" + text);
  std::string encoded = client.readResponse();
  ASSERT_NE(encoded.find("Content-Encoding: gzip"), std::string::npos) << encoded;
  auto decoded = decompress(ContentCoding::kGzip,
                            bytesOf(encoded.substr(encoded.find("\r\n\r\n") + 4)), 1 << 20);
  ASSERT_TRUE(decoded.isOk());
  EXPECT_EQ(decoded->view(), "POST /z " + text);
  client.send("POST /z HTTP/1.1\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_NE(client.readResponse().find("501"), std::string::npos);
}

TEST_F(HttpServerTest, AHandlerExceptionIsA500AndTheServerGoesOn) {
  Client client(server_->port());
  client.send("GET /throw HTTP/1.1\r\n\r\n");
  EXPECT_NE(client.readResponse().find("HTTP/1.1 500"), std::string::npos);
  client.send("GET /ok HTTP/1.1\r\n\r\n");
  EXPECT_NE(client.readResponse().find("GET /ok"), std::string::npos);
}

TEST_F(HttpServerTest, MalformedRequestsAndTruncatedBodiesDoNotHurt) {
  {
    Client client(server_->port());
    client.send("NOT HTTP AT ALL\r\n\r\n");
    EXPECT_NE(client.readResponse().find("400"), std::string::npos);
  }
  {
    Client client(server_->port());
    client.send("POST /t HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort");
    client.shutdownWrite();
    EXPECT_EQ(client.readResponse(), "");  // closed without an answer
  }
  Client client(server_->port());
  client.send("GET /still HTTP/1.1\r\n\r\n");
  EXPECT_NE(client.readResponse().find("GET /still"), std::string::npos);
}

}  // namespace
}  // namespace beamline::net
