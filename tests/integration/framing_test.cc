// Strict request framing and the size and time limits of the request head and
// body (SPEC §4): every smuggling-shaped request is refused with 400 and a
// closed connection before anything reaches the upstream.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string lowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
  return out;
}

constexpr size_t kMaxHeader = 4096;  // max_header_bytes: 4KiB
constexpr size_t kMaxBody = 1024;    // max_body_bytes: 1KiB

class FramingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start());
    ConfigOptions options;
    options.server =
        "workers: 1\n"
        "max_header_bytes: 4KiB\n"
        "max_body_bytes: 1KiB\n"
        "header_timeout: 500ms\n";
    ASSERT_TRUE(sluice_.start(minimalConfig(upstream_.port(), options)));
  }

  // Sends `raw` on a fresh connection and checks that sluice answers `status`
  // itself with Connection: close, closes the connection, and that the
  // upstream never saw a request.
  void expectRefused(const std::string& raw, int status) {
    auto before = upstream_.stats();
    ASSERT_TRUE(before);
    HttpConn conn(sluice_.port());
    ASSERT_TRUE(conn.connected()) << conn.error();
    ASSERT_TRUE(conn.send(raw)) << conn.error();
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << "no response; " << conn.error();
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(lowerCase(r->header("Connection")), "close");
    EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
    EXPECT_THAT(r->body, ::testing::HasSubstr("\"status\":" + std::to_string(status)));
    EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5)))) << "connection left open";
    auto after = upstream_.stats();
    ASSERT_TRUE(after);
    EXPECT_EQ(after->requests, before->requests) << "the upstream saw the request";
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

// ---- Smuggling-shaped requests: 400 --------------------------------------------------

struct SmugglingCase {
  const char* name;
  std::string raw;
};

// Failure messages name the case instead of dumping its bytes.
void PrintTo(const SmugglingCase& c, std::ostream* os) { *os << c.name; }

class SmugglingShapedRequestTest : public FramingTest,
                                   public ::testing::WithParamInterface<SmugglingCase> {};

TEST_P(SmugglingShapedRequestTest, IsRefusedWith400AndClosed) {
  expectRefused(GetParam().raw, 400);
}

const std::string kPost = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n";
const std::string kGet = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";

INSTANTIATE_TEST_SUITE_P(
    StrictFraming, SmugglingShapedRequestTest,
    ::testing::Values(
        SmugglingCase{"ContentLengthAndTransferEncoding",
                      kPost + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        SmugglingCase{"TransferEncodingAndContentLength",
                      kPost + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
        SmugglingCase{"TwoDifferingContentLengths",
                      kPost + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
        SmugglingCase{"DifferingContentLengthsInOneField",
                      kPost + "Content-Length: 5, 6\r\n\r\nhello!"},
        SmugglingCase{"ChunkedNotFinal",
                      kPost + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
        SmugglingCase{"XchunkedTransferEncoding",
                      kPost + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
        SmugglingCase{"GzipWithoutChunked", kPost + "Transfer-Encoding: gzip\r\n\r\nhello"},
        SmugglingCase{"BadChunkSize",
                      kPost + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
        SmugglingCase{"BareLfBetweenHeaders", "GET / HTTP/1.1\r\nHost: 127.0.0.1\nX-A: b\r\n\r\n"},
        SmugglingCase{"BareLfAfterRequestLine", "GET / HTTP/1.1\nHost: 127.0.0.1\r\n\r\n"},
        SmugglingCase{"ObsFold", kGet + "X-A: b\r\n c\r\n\r\n"},
        SmugglingCase{"WhitespaceBeforeColon", kGet + "X-A : b\r\n\r\n"},
        SmugglingCase{"WhitespaceBeforeColonInTransferEncoding",
                      kPost + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
        SmugglingCase{"InvalidHeaderNameByte", kGet + "X(A): b\r\n\r\n"},
        SmugglingCase{"ControlByteInHeaderName", kGet + "X\x01"
                                                        "A: b\r\n\r\n"},
        SmugglingCase{"ContentLengthInTrailers",
                      kPost + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                              "Content-Length: 5\r\n\r\n"},
        SmugglingCase{"MissingHostOnHttp11", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n"},
        SmugglingCase{"DuplicateHost", kGet + "Host: other.example\r\n\r\n"}),
    [](const ::testing::TestParamInfo<SmugglingCase>& param) { return param.param.name; });

// ---- Head limits ---------------------------------------------------------------------

TEST_F(FramingTest, HeadLargerThanMaxHeaderBytesIs431) {
  std::string raw = kGet;
  // 50 fields of ~110 bytes: under the field count limit, over 4 KiB.
  for (int i = 0; i < 50; ++i) {
    raw += "X-Filler-" + std::to_string(i) + ": " + std::string(96, 'f') + "\r\n";
  }
  raw += "\r\n";
  ASSERT_GT(raw.size(), kMaxHeader);
  expectRefused(raw, 431);
}

TEST_F(FramingTest, MoreThan100HeaderFieldsIs431) {
  std::string raw = kGet;  // Host is field 1
  for (int i = 0; i < 100; ++i) raw += "X-" + std::to_string(i) + ": v\r\n";
  raw += "\r\n";
  ASSERT_LT(raw.size(), kMaxHeader);
  expectRefused(raw, 431);
}

TEST_F(FramingTest, ExactlyHundredHeaderFieldsAreAccepted) {
  std::string raw = kGet;
  for (int i = 0; i < 99; ++i) raw += "X-" + std::to_string(i) + ": v\r\n";
  raw += "\r\n";
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(raw));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
}

TEST_F(FramingTest, RequestLineLongerThanHalfMaxHeaderBytesIs414) {
  std::string path = "/" + std::string(kMaxHeader / 2 + 100, 'p');
  std::string raw = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_LT(raw.size(), kMaxHeader);
  expectRefused(raw, 414);
}

// ---- Body limits ---------------------------------------------------------------------

TEST_F(FramingTest, ContentLengthAboveMaxBodyBytesIs413BeforeTheUpstream) {
  // The head alone: sluice must decide without waiting for the body.
  expectRefused(kPost + "Content-Length: " + std::to_string(kMaxBody + 1) + "\r\n\r\n", 413);
}

TEST_F(FramingTest, ContentLengthAtMaxBodyBytesIsForwarded) {
  auto r = httpRequest(sluice_.port(), "POST", "/", {}, std::string(kMaxBody, 'x'));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "received " + std::to_string(kMaxBody) + " bytes\n");
}

TEST_F(FramingTest, ChunkedBodyAboveMaxBodyBytesIs413OrClosed) {
  std::string raw = kPost + "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) raw += "258\r\n" + std::string(600, 'c') + "\r\n";  // 4 x 600 bytes
  raw += "0\r\n\r\n";
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(raw));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  if (r) {
    // No response had started (the upstream answers only after the whole
    // body), so this must be sluice's own 413.
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(lowerCase(r->header("Connection")), "close");
  }
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));
}

// ---- Time limit on the head ------------------------------------------------------------

TEST_F(FramingTest, HeadNotCompleteWithinHeaderTimeoutIs408) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  auto start = Clock::now();
  ASSERT_TRUE(conn.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"));  // no blank line
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(lowerCase(r->header("Connection")), "close");
  EXPECT_GE(elapsed, milliseconds(450));
  EXPECT_LT(elapsed, milliseconds(3000));
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));
}

// ---- Routing ---------------------------------------------------------------------------

class NoRouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start());
    std::string yaml =
        "server:\n"
        "  listen: 127.0.0.1:0\n"
        "  admin_listen: 127.0.0.1:0\n"
        "  workers: 1\n"
        "upstreams:\n"
        "  demo:\n"
        "    targets: [127.0.0.1:" +
        std::to_string(upstream_.port()) +
        "]\n"
        "routes:\n"
        "  - path_prefix: /api/\n"
        "    upstream: demo\n";
    ASSERT_TRUE(sluice_.start(yaml));
  }
  DemoUpstream upstream_;
  Sluice sluice_;
};

TEST_F(NoRouteTest, UnmatchedPathIs404WithoutTheUpstream) {
  ASSERT_TRUE(upstream_.reset());
  auto r = httpGet(sluice_.port(), "/other");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 0);
}

TEST_F(NoRouteTest, ConnectionStaysUsableAfter404) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/other", sluice_.port())));
  auto miss = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(miss) << conn.error();
  EXPECT_EQ(miss->status, 404);
  ASSERT_TRUE(conn.send(requestText("GET", "/api/x", sluice_.port())));
  auto hit = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(hit) << conn.error();
  EXPECT_EQ(hit->status, 200);
  EXPECT_EQ(hit->body, "hello from upstream\n");
}

}  // namespace
}  // namespace sluice::testing
