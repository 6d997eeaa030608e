// The forwarding path end to end (SPEC §5): the real sluice binary in front of
// the real demo upstream on loopback. Bodies, keep-alive, pipelining, bodiless
// responses, re-framing, hop-by-hop and X-Forwarded-* headers, request bodies,
// and the admin listener's health endpoints.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

std::string lowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
  return out;
}

// The header fields of the request head /__echo sent back: what the upstream
// actually received from sluice.
Headers echoedFields(std::string_view echo) {
  Headers out;
  size_t end = echo.find("\r\n\r\n");
  std::string_view head = echo.substr(0, end);
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return out;
  head.remove_prefix(eol + 2);  // the request line
  while (!head.empty()) {
    size_t next = head.find("\r\n");
    std::string_view line = head.substr(0, next);
    head = next == std::string_view::npos ? std::string_view() : head.substr(next + 2);
    size_t colon = line.find(':');
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    out.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return out;
}

std::vector<std::string> fieldValues(const Headers& fields, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : fields) {
    if (lowerCase(n) == lowerCase(name)) out.push_back(v);
  }
  return out;
}

class DataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start());
    ConfigOptions options;
    options.server = "workers: 2\n";
    ASSERT_TRUE(sluice_.start(minimalConfig(upstream_.port(), options)));
  }

  // Sends `request` on a fresh connection from `source_ip` and returns what
  // /__echo says the upstream received.
  Response echo(const std::string& request, std::string_view source_ip = {}) {
    HttpConn conn(sluice_.port(), source_ip);
    EXPECT_TRUE(conn.connected()) << conn.error();
    EXPECT_TRUE(conn.send(request));
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    EXPECT_TRUE(r) << conn.error();
    if (!r) return {};
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->complete) << r->error;
    return *r;
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

TEST_F(DataPathTest, GetIsForwardedWithBodyIntact) {
  auto r = httpGet(sluice_.port(), "/?size=1000000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_EQ(r->header("Content-Length"), "1000000");
  ASSERT_EQ(r->body.size(), 1000000u);
  EXPECT_TRUE(isDemoBodyPattern(r->body));
}

TEST_F(DataPathTest, KeepAliveServesSeveralRequestsOnOneClientConnection) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << "request " << i << ": " << conn.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "hello from upstream\n");
    EXPECT_NE(lowerCase(r->header("Connection")), "close");
  }
  EXPECT_FALSE(conn.isClosedByPeer(deadlineIn(milliseconds(100))));
}

TEST_F(DataPathTest, UpstreamConnectionIsReusedAcrossRequests) {
  ASSERT_TRUE(upstream_.reset());
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << conn.error();
    EXPECT_EQ(r->status, 200);
  }
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 3);
  EXPECT_EQ(stats->connections, 1);
}

TEST_F(DataPathTest, PipelinedRequestsAreAnsweredInOrder) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  // The first answer is the slowest: a proxy answering out of order would
  // deliver 12..15 before 11.
  std::string requests = requestText("GET", "/?delay=300&size=11", sluice_.port());
  for (int size = 12; size <= 15; ++size) {
    requests += requestText("GET", "/?size=" + std::to_string(size), sluice_.port());
  }
  ASSERT_TRUE(conn.send(requests));
  for (int size = 11; size <= 15; ++size) {
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << "response for size " << size << ": " << conn.error();
    EXPECT_EQ(r->status, 200);
    ASSERT_TRUE(r->complete) << r->error;
    EXPECT_EQ(r->body.size(), static_cast<size_t>(size)) << "answered out of order";
  }
  EXPECT_EQ(conn.buffered(), 0u);
}

TEST_F(DataPathTest, PipelinedBurstLargerThanTheBufferIsForwardedInOrder) {
  // The first request is slow, so the rest pile up: the buffer fills, reading
  // stops, and it must resume for the bytes still in the socket although
  // nothing new arrives.
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  const Headers padding = {{"X-Padding", std::string(300, 'p')}};
  std::string burst = requestText("GET", "/?delay=200&size=1", sluice_.port(), padding);
  constexpr int kRequests = 300;
  for (int i = 2; i <= kRequests; ++i) {
    burst += requestText("GET", "/?size=" + std::to_string(i), sluice_.port(), padding);
  }
  ASSERT_GT(burst.size(), 3u * (16 * 1024 + 16 * 1024));
  ASSERT_TRUE(conn.send(burst));
  for (int size = 1; size <= kRequests; ++size) {
    auto r = conn.readResponse(deadlineIn(seconds(10)));
    ASSERT_TRUE(r) << "response for size " << size << ": " << conn.error();
    EXPECT_EQ(r->status, 200);
    ASSERT_TRUE(r->complete) << r->error;
    ASSERT_EQ(r->body.size(), static_cast<size_t>(size)) << "answered out of order";
  }
  EXPECT_EQ(conn.buffered(), 0u);
}

TEST_F(DataPathTest, HeadResponseHasNoBody) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("HEAD", "/?size=1000", sluice_.port())));
  auto head = conn.readResponse(deadlineIn(seconds(5)), /*head_request=*/true);
  ASSERT_TRUE(head) << conn.error();
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("Content-Length"), "1000");
  // No body bytes follow the head: the next response starts right after it.
  ASSERT_TRUE(conn.send(requestText("GET", "/?size=7", sluice_.port())));
  auto get = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(get) << conn.error();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "abcdefg");
}

TEST_F(DataPathTest, NoContentAndNotModifiedHaveNoBodyAndKeepTheConnection) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int status : {204, 304}) {
    ASSERT_TRUE(
        conn.send(requestText("GET", "/?status=" + std::to_string(status), sluice_.port())));
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << status << ": " << conn.error();
    EXPECT_EQ(r->status, status);
    EXPECT_FALSE(r->hasHeader("Transfer-Encoding")) << status;
    EXPECT_NE(lowerCase(r->header("Connection")), "close") << status;
  }
  EXPECT_EQ(conn.buffered(), 0u);
  ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello from upstream\n");
}

TEST_F(DataPathTest, ChunkedUpstreamResponseArrivesIntact) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/?size=700000&chunked=1", sluice_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(10)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_TRUE(r->chunked);
  ASSERT_EQ(r->body.size(), 700000u);
  EXPECT_TRUE(isDemoBodyPattern(r->body));
  // The connection is still in step for the next request.
  ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
  auto next = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(next) << conn.error();
  EXPECT_EQ(next->body, "hello from upstream\n");
}

TEST_F(DataPathTest, ContentLengthRequestBodyReachesTheUpstream) {
  std::string body(100000, 'b');
  auto r = httpRequest(sluice_.port(), "POST", "/upload", {}, body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "received 100000 bytes\n");
}

TEST_F(DataPathTest, ExpectContinueIsRelayedThenTheFinalResponseFollows) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  auto interim = conn.readResponse(deadlineIn(seconds(5)), /*head_request=*/true);
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(conn.send("hello"));
  auto final_response = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(final_response);
  EXPECT_EQ(final_response->status, 200);
  EXPECT_EQ(final_response->body, "received 5 bytes\n");
  // The connection stays usable after an interim response.
  ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
  auto next = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(DataPathTest, ChunkedRequestBodyReachesTheUpstream) {
  std::string chunked;
  size_t total = 0;
  for (size_t size : {1u, 4096u, 70000u, 3u}) {
    char hex[16];
    int n = std::snprintf(hex, sizeof hex, "%zx", size);
    chunked.append(hex, static_cast<size_t>(n)).append("\r\n");
    chunked.append(size, 'c').append("\r\n");
    total += size;
  }
  chunked += "0\r\n\r\n";
  auto r =
      httpRequest(sluice_.port(), "POST", "/upload", {{"Transfer-Encoding", "chunked"}}, chunked);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "received " + std::to_string(total) + " bytes\n");
}

TEST_F(DataPathTest, ChunkedRequestIsReframedWithOneTransferEncoding) {
  Response r = echo(requestText("POST", "/__echo", sluice_.port(),
                                {{"Transfer-Encoding", "chunked"}}, "5\r\nhello\r\n0\r\n\r\n"));
  Headers fields = echoedFields(r.body);
  EXPECT_THAT(fieldValues(fields, "Transfer-Encoding"), ::testing::ElementsAre("chunked"))
      << r.body;
  EXPECT_TRUE(fieldValues(fields, "Content-Length").empty()) << r.body;
  EXPECT_THAT(r.body, HasSubstr("received 5 bytes\n"));
}

TEST_F(DataPathTest, HopByHopHeadersAreNotForwarded) {
  Response r = echo(requestText("GET", "/__echo", sluice_.port(),
                                {{"Connection", "keep-alive, X-Hop-Named"},
                                 {"X-Hop-Named", "secret"},
                                 {"Keep-Alive", "timeout=5"},
                                 {"Proxy-Connection", "keep-alive"},
                                 {"TE", "trailers"},
                                 {"Trailer", "X-Checksum"},
                                 {"Upgrade", "websocket"},
                                 {"Proxy-Authorization", "Basic dXNlcjpwYXNz"},
                                 {"X-End-To-End", "kept"}}));
  Headers fields = echoedFields(r.body);
  for (std::string_view hop : {"X-Hop-Named", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                               "Upgrade", "Proxy-Authorization"}) {
    EXPECT_TRUE(fieldValues(fields, hop).empty()) << hop << " was forwarded:\n" << r.body;
  }
  // sluice may send its own Connection field, never the client's.
  for (const std::string& v : fieldValues(fields, "Connection")) {
    EXPECT_THAT(lowerCase(v), ::testing::Not(HasSubstr("x-hop-named"))) << r.body;
  }
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("dXNlcjpwYXNz")));
  EXPECT_THAT(fieldValues(fields, "X-End-To-End"), ::testing::ElementsAre("kept")) << r.body;
}

TEST_F(DataPathTest, XForwardedForGetsThePeerAppended) {
  Response r = echo(requestText("GET", "/__echo", sluice_.port(),
                                {{"X-Forwarded-For", "203.0.113.7, 198.51.100.2"}}),
                    "127.0.0.5");
  EXPECT_THAT(fieldValues(echoedFields(r.body), "X-Forwarded-For"),
              ::testing::ElementsAre("203.0.113.7, 198.51.100.2, 127.0.0.5"))
      << r.body;
}

TEST_F(DataPathTest, XForwardedForIsThePeerWhenAbsent) {
  Response r = echo(requestText("GET", "/__echo", sluice_.port()), "127.0.0.6");
  EXPECT_THAT(fieldValues(echoedFields(r.body), "X-Forwarded-For"),
              ::testing::ElementsAre("127.0.0.6"))
      << r.body;
}

TEST_F(DataPathTest, XForwardedProtoAndHostAreSetAndHostIsPassedAsSent) {
  Response r = echo(requestText("GET", "/__echo", sluice_.port(),
                                {{"Host", "Example.test:8443"}, {"X-Forwarded-Proto", "https"}}));
  Headers fields = echoedFields(r.body);
  EXPECT_THAT(fieldValues(fields, "Host"), ::testing::ElementsAre("Example.test:8443")) << r.body;
  EXPECT_THAT(fieldValues(fields, "X-Forwarded-Host"), ::testing::ElementsAre("Example.test:8443"))
      << r.body;
  EXPECT_THAT(fieldValues(fields, "X-Forwarded-Proto"), ::testing::ElementsAre("http")) << r.body;
}

// ---- Close-delimited upstream responses ---------------------------------------------

// A one-trick origin: answers every request with `response` and then closes
// the connection, so the body is delimited by the close (RFC 9112 §6.3 item 8),
// which the demo upstream never does.
class CloseDelimitedOrigin {
 public:
  explicit CloseDelimitedOrigin(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        listen(fd_, 16) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
        pipe2(stop_, O_CLOEXEC) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~CloseDelimitedOrigin() {
    if (thread_.joinable()) {
      char b = 1;
      ssize_t ignored = write(stop_[1], &b, 1);
      static_cast<void>(ignored);
      thread_.join();
    }
    for (int fd : {fd_, stop_[0], stop_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  CloseDelimitedOrigin(const CloseDelimitedOrigin&) = delete;
  CloseDelimitedOrigin& operator=(const CloseDelimitedOrigin&) = delete;

  int port() const { return port_; }
  int served() const { return served_.load(); }

 private:
  // Waits for `fd` to become ready for `events` or the stop pipe; false on stop.
  bool waitFor(int fd, short events) {
    pollfd p[2] = {{fd, events, 0}, {stop_[0], POLLIN, 0}};
    for (;;) {
      int r = poll(p, 2, 10'000);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && p[1].revents == 0;
    }
  }

  void serve() {
    for (;;) {
      if (!waitFor(fd_, POLLIN)) return;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos && waitFor(c, POLLIN)) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      std::string_view out = response_;
      while (!out.empty() && waitFor(c, POLLOUT)) {
        ssize_t n = ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        out.remove_prefix(static_cast<size_t>(n));
      }
      ::close(c);
      served_.fetch_add(1);
    }
  }

  std::string response_;
  int fd_ = -1;
  int stop_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<int> served_{0};
  std::thread thread_;
};

std::string patternBody(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = kDemoBodyPattern[i % kDemoBodyPattern.size()];
  return out;
}

class CloseDelimitedTest : public ::testing::Test {
 protected:
  static constexpr size_t kBodySize = 200000;
  void SetUp() override {
    ASSERT_GT(origin_.port(), 0);
    ConfigOptions options;
    options.server = "workers: 1\n";
    ASSERT_TRUE(sluice_.start(minimalConfig(origin_.port(), options)));
  }
  CloseDelimitedOrigin origin_{
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
      "Connection: close\r\n\r\n" +
      patternBody(kBodySize)};
  Sluice sluice_;
};

TEST_F(CloseDelimitedTest, BodyIsRechunkedAndClientConnectionKeptAlive) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
    auto r = conn.readResponse(deadlineIn(seconds(10)));
    ASSERT_TRUE(r) << "request " << i << ": " << conn.error();
    EXPECT_EQ(r->status, 200);
    ASSERT_TRUE(r->complete) << r->error;
    EXPECT_TRUE(r->chunked);
    ASSERT_EQ(r->body.size(), kBodySize);
    EXPECT_TRUE(isDemoBodyPattern(r->body));
    EXPECT_NE(lowerCase(r->header("Connection")), "close");
  }
  EXPECT_EQ(origin_.served(), 2);
}

TEST_F(CloseDelimitedTest, Http10ClientGetsTheBodyUntilClose) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send("GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
  auto r = conn.readResponse(deadlineIn(seconds(10)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_FALSE(r->chunked);
  ASSERT_EQ(r->body.size(), kBodySize);
  EXPECT_TRUE(isDemoBodyPattern(r->body));
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));
}

// ---- Admin listener ------------------------------------------------------------------

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST_F(DataPathTest, HealthzAnswersOk) {
  auto r = httpGet(sluice_.adminPort(), "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(trimmed(r->body), "ok");
}

TEST_F(DataPathTest, ReadyzAnswersReadyOnceListening) {
  auto r = httpGet(sluice_.adminPort(), "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(trimmed(r->body), "ready");
}

}  // namespace
}  // namespace sluice::testing
