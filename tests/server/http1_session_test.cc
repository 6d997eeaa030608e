// The HTTP/1 session without sockets: a fake transport carries the client's
// bytes, a FakeClock moves the deadlines, and the worker is never started.
// Only answers the session makes itself are covered (a forwarded request
// would open an upstream socket).

#include "proxy/server/http1_session.h"

#include <errno.h>
#include <event2/event.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "proxy/event/clock.h"
#include "proxy/metrics/metrics.h"
#include "proxy/server/worker.h"
#include "tests/support/runtime_builder.h"

namespace sluice::server {
namespace {

using event::kNanosPerMilli;
using event::kNanosPerSecond;
using event::Nanos;

constexpr Nanos kHeaderTimeout = 2 * kNanosPerSecond;
constexpr Nanos kIdleTimeout = 5 * kNanosPerSecond;

// header_timeout 2s, idle_timeout 5s, max_header_bytes 256 (request line 128),
// max_body_bytes 100. The only route is /api/: everything here is a 404.
constexpr const char* kConfig =
    "server:\n"
    "  workers: 1\n"
    "  header_timeout: 2s\n"
    "  idle_timeout: 5s\n"
    "  max_header_bytes: 256\n"
    "  max_body_bytes: 100\n"
    "upstreams:\n"
    "  api:\n"
    "    targets: [127.0.0.1:9]\n"
    "routes:\n"
    "  - path_prefix: /api/\n"
    "    upstream: api\n";

// The client's end of the fake connection; outlives the transport, which the
// session owns and the worker frees.
struct Wire {
  std::string to_server;  // bytes the client sent that the session has not read
  bool eof = false;       // the client closed its side
  std::string written;    // every byte the session wrote
  std::size_t write_budget = std::numeric_limits<std::size_t>::max();  // then kAgain
  bool reading = false;
  int write_wanted = 0;
  bool closed = false;
  bool destroyed = false;
};

class WireTransport final : public transport::Transport {
 public:
  explicit WireTransport(Wire& wire) : wire_(wire) {}
  ~WireTransport() override { wire_.destroyed = true; }

  ssize_t read(char* buf, std::size_t len) noexcept override {
    if (wire_.to_server.empty()) {
      if (wire_.eof) return 0;
      errno = EAGAIN;
      return -1;
    }
    const std::size_t n = std::min(len, wire_.to_server.size());
    std::memcpy(buf, wire_.to_server.data(), n);
    wire_.to_server.erase(0, n);
    return static_cast<ssize_t>(n);
  }
  transport::IoResult write(transport::Outbox& out) noexcept override {
    while (!out.empty() && wire_.write_budget > 0) {
      const std::size_t n = std::min(out.iov[0].iov_len, wire_.write_budget);
      wire_.written.append(static_cast<const char*>(out.iov[0].iov_base), n);
      wire_.write_budget -= n;
      out.consume(n);
    }
    return out.empty() ? transport::IoResult::kDone : transport::IoResult::kAgain;
  }
  void wantRead(bool on) noexcept override { wire_.reading = on; }
  void wantWrite() noexcept override { ++wire_.write_wanted; }
  void cancelWrite() noexcept override {}
  void quiet() noexcept override { wire_.reading = false; }
  void close() noexcept override {
    wire_.reading = false;
    wire_.closed = true;
  }
  int connectError() noexcept override { return 0; }
  void setUser(transport::TransportUser*) noexcept override {}

 private:
  Wire& wire_;
};

// One response as the client reads it (sluice's own answers all carry
// Content-Length).
struct Answer {
  int status = 0;
  std::string head;  // status line and fields, each line ending in CRLF
  std::string body;
};

// The value of field `name` in `head`, "" when absent.
std::string field(const std::string& head, const std::string& name) {
  const std::string key = "\r\n" + name + ": ";
  const std::size_t at = head.find(key);
  if (at == std::string::npos) return "";
  const std::size_t from = at + key.size();
  return head.substr(from, head.find("\r\n", from) - from);
}

// Splits everything the session wrote into responses; a trailing partial one
// is left out.
std::vector<Answer> answers(const std::string& wire) {
  std::vector<Answer> out;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    const std::size_t end = wire.find("\r\n\r\n", pos);
    if (end == std::string::npos) break;
    Answer a;
    a.head = wire.substr(pos, end + 2 - pos);
    a.status = std::atoi(a.head.substr(9, 3).c_str());
    const std::string length = field(a.head, "Content-Length");
    const std::size_t len = length.empty() ? 0 : std::stoul(length);
    if (end + 4 + len > wire.size()) break;
    a.body = wire.substr(end + 4, len);
    out.push_back(a);
    pos = end + 4 + len;
  }
  return out;
}

bool isHex32(const std::string& s) {
  return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

constexpr const char* kGet = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";

std::string getWithId(const std::string& id) {
  return "GET /nothing HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + id + "\r\n\r\n";
}

class Http1SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rt = testing::buildRuntime(kConfig, registry_);
    ASSERT_NE(rt, nullptr);
    worker_ = std::make_unique<Worker>(0, shared_, std::move(rt));
    session_ = new Http1Session(*worker_, std::make_unique<WireTransport>(wire_),
                                transport::PeerAddress{{}, "192.0.2.10"});
  }

  // The client sends `bytes`; the session hears one readable event.
  void send(const std::string& bytes) {
    wire_.to_server += bytes;
    session_->onTransportReady(true, false);
  }

  // Time moves on by `d` and the worker's tick checks the deadlines.
  void elapse(Nanos d) {
    clock_.advance(d);
    worker_->newEvent();
    session_->checkTimeout(clock_.now());
  }

  // The client got exactly one answer, `status` with Connection: close, and
  // the session closed after it.
  void expectOneClosingAnswer(int status) const {
    const auto answered = got();
    ASSERT_EQ(answered.size(), 1u) << wire_.written;
    EXPECT_EQ(answered[0].status, status);
    EXPECT_EQ(field(answered[0].head, "Connection"), "close");
    EXPECT_NE(answered[0].body.find("\"status\":" + std::to_string(status)), std::string::npos)
        << answered[0].body;
    EXPECT_TRUE(wire_.closed);
    EXPECT_TRUE(session_->dead());
  }

  // Every complete response the client has read so far.
  std::vector<Answer> got() const { return answers(wire_.written); }
  // Their status codes and X-Request-Id values, in order.
  std::vector<int> statuses() const {
    std::vector<int> out;
    for (const Answer& a : got()) out.push_back(a.status);
    return out;
  }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const Answer& a : got()) out.push_back(field(a.head, "X-Request-Id"));
    return out;
  }

  event::FakeClock clock_{1000 * kNanosPerSecond};
  metrics::Registry registry_{1, "test"};
  ServerShared shared_{clock_};
  Wire wire_;
  // Last: freed first, with the sessions it still holds (live or retired).
  std::unique_ptr<Worker> worker_;
  Http1Session* session_ = nullptr;
};

// ---- answers to the request ------------------------------------------------

struct Refusal {
  const char* name;
  std::string bytes;  // what the client sends in one read
  int status;
};

void PrintTo(const Refusal& r, std::ostream* os) { *os << r.name; }

// Requests answered with Connection: close, after which the session closes
// (and answers nothing pipelined behind them).
class ClosingAnswerTest : public Http1SessionTest, public ::testing::WithParamInterface<Refusal> {};

TEST_P(ClosingAnswerTest, IsTheOnlyAnswerAndCloses) {
  send(GetParam().bytes + kGet);
  expectOneClosingAnswer(GetParam().status);
}

INSTANTIATE_TEST_SUITE_P(
    Requests, ClosingAnswerTest,
    ::testing::Values(
        Refusal{"TwoContentLengthsIs400",
                "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400},
        Refusal{"BareLfIs400", "GET /x HTTP/1.1\nHost: x\n\n", 400},
        Refusal{"ObsFoldIs400", "GET /x HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400},
        Refusal{"MissingHostIs400", "GET /x HTTP/1.1\r\n\r\n", 400},
        Refusal{"TransferEncodingNotChunkedIs400",
                "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        Refusal{"ContentLengthOverMaxBodyBytesIs413",
                "POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413},
        Refusal{"RequestLineOverHalfOfMaxHeaderBytesIs414",
                "GET /" + std::string(200, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
        Refusal{"HeadOverMaxHeaderBytesIs431",
                "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(300, 'v') + "\r\n\r\n", 431},
        // llhttp lets "HTTP/2.0" through (the h2 preface); sluice answers it.
        Refusal{"Http20Is505", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        Refusal{"ConnectionCloseIsHonoured",
                "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        Refusal{"Http10WithoutKeepAliveIsClosed", "GET /nothing HTTP/1.0\r\n\r\n", 404}),
    [](const ::testing::TestParamInfo<Refusal>& row) { return std::string(row.param.name); });

TEST_F(Http1SessionTest, NoRouteIs404AndKeepsTheConnection) {
  send(kGet);
  const auto answered = got();
  ASSERT_EQ(answered.size(), 1u) << wire_.written;
  EXPECT_EQ(answered[0].status, 404);
  EXPECT_EQ(field(answered[0].head, "Connection"), "");
  EXPECT_EQ(field(answered[0].head, "Content-Type"), "application/problem+json");
  EXPECT_FALSE(wire_.closed);
  EXPECT_TRUE(wire_.reading);
}

TEST_F(Http1SessionTest, PipelinedRequestsAreAnsweredInOrder) {
  send(getWithId("first") + getWithId("second"));
  EXPECT_EQ(statuses(), (std::vector<int>{404, 404})) << wire_.written;
  EXPECT_EQ(ids(), (std::vector<std::string>{"first", "second"}));
  EXPECT_FALSE(wire_.closed);
}

TEST_F(Http1SessionTest, BodyOf404IsDiscardedAndTheConnectionStaysUsable) {
  send("POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
  ASSERT_EQ(statuses(), std::vector<int>{404}) << wire_.written;
  EXPECT_EQ(field(got()[0].head, "Connection"), "");
  // The rest of the body, then the next request on the same connection.
  send("world" + getWithId("after-body"));
  EXPECT_EQ(statuses(), (std::vector<int>{404, 404})) << wire_.written;
  EXPECT_EQ(ids().back(), "after-body");
  EXPECT_FALSE(wire_.closed);
}

TEST_F(Http1SessionTest, ChunkedBodyOf404IsDiscardedAndTheConnectionStaysUsable) {
  send(
      "POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n" +
      getWithId("after-chunks"));
  EXPECT_EQ(statuses(), (std::vector<int>{404, 404})) << wire_.written;
  EXPECT_EQ(ids().back(), "after-chunks");
  EXPECT_FALSE(wire_.closed);
}

TEST_F(Http1SessionTest, DiscardedBodyArrivingSlowlyIsNotCutAtHeaderTimeout) {
  // SPEC §2: body_timeout (30s here) is the gap allowed between two reads of
  // a body; header_timeout bounds only the head.
  send("POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab");
  elapse(kHeaderTimeout - kNanosPerMilli);
  send("cd");
  elapse(kHeaderTimeout - kNanosPerMilli);
  ASSERT_FALSE(wire_.closed) << "closed while the body was still arriving";
  send("ef" + getWithId("after-slow-body"));
  EXPECT_EQ(statuses(), (std::vector<int>{404, 404})) << wire_.written;
  EXPECT_EQ(ids().back(), "after-slow-body");
}

TEST_F(Http1SessionTest, DiscardedBodyThatStallsPastBodyTimeoutClosesTheConnection) {
  send("POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab");
  ASSERT_EQ(statuses(), std::vector<int>{404}) << wire_.written;
  elapse(30 * kNanosPerSecond - kNanosPerMilli);  // body_timeout: 30s by default
  EXPECT_FALSE(wire_.closed);
  elapse(2 * kNanosPerMilli);
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(statuses(), std::vector<int>{404}) << "nothing more is answered";
}

// ---- X-Request-Id ----------------------------------------------------------

TEST_F(Http1SessionTest, ValidRequestIdIsKept) {
  const std::string id(128, 'z');  // the longest kept
  send(getWithId(id));
  EXPECT_EQ(ids(), std::vector<std::string>{id}) << wire_.written;
}

TEST_F(Http1SessionTest, OverlongRequestIdIsReplaced) {
  send(getWithId(std::string(129, 'z')));
  const auto answered = ids();
  ASSERT_EQ(answered.size(), 1u) << wire_.written;
  EXPECT_TRUE(isHex32(answered[0])) << answered[0];
}

TEST_F(Http1SessionTest, MissingRequestIdIsGeneratedFreshForEachRequest) {
  send(std::string(kGet) + kGet);
  const auto answered = ids();
  ASSERT_EQ(answered.size(), 2u) << wire_.written;
  EXPECT_TRUE(isHex32(answered[0])) << answered[0];
  EXPECT_TRUE(isHex32(answered[1])) << answered[1];
  EXPECT_NE(answered[0], answered[1]);
}

// ---- deadlines -------------------------------------------------------------

TEST_F(Http1SessionTest, HeadStalledPastHeaderTimeoutIs408) {
  send("GET /nothing HTTP/1.1\r\nHost:");
  elapse(kHeaderTimeout - kNanosPerMilli);
  EXPECT_EQ(wire_.written, "") << "not before header_timeout";
  EXPECT_FALSE(wire_.closed);
  elapse(kNanosPerMilli);
  expectOneClosingAnswer(408);
}

TEST_F(Http1SessionTest, SilentNewConnectionClosesAtHeaderTimeoutWithoutAnswer) {
  elapse(kHeaderTimeout);
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(wire_.written, "");
}

TEST_F(Http1SessionTest, IdleKeepAliveConnectionClosesAtIdleTimeout) {
  send(kGet);
  ASSERT_EQ(got().size(), 1u) << wire_.written;
  const std::size_t answered = wire_.written.size();
  elapse(kIdleTimeout - kNanosPerMilli);
  EXPECT_FALSE(wire_.closed) << "not before idle_timeout";
  elapse(kNanosPerMilli);
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(wire_.written.size(), answered) << "closed without a word";
}

TEST_F(Http1SessionTest, NextRequestHeadGetsAFreshHeaderTimeout) {
  send(kGet);
  elapse(kIdleTimeout - kNanosPerMilli);  // idle almost to the end
  send("GET /nothing HTTP/1.1\r\n");
  elapse(kHeaderTimeout - kNanosPerMilli);  // past idle_timeout, within header_timeout
  EXPECT_FALSE(wire_.closed);
  EXPECT_EQ(got().size(), 1u);
}

// ---- writes, end of stream, drain ------------------------------------------

TEST_F(Http1SessionTest, WriteThatReturnsAgainIsFinishedOnWritable) {
  wire_.write_budget = 10;
  send(kGet);
  EXPECT_EQ(wire_.written.size(), 10u);
  EXPECT_GT(wire_.write_wanted, 0) << "asked for a writable event";
  wire_.write_budget = std::numeric_limits<std::size_t>::max();
  session_->onTransportReady(false, true);
  EXPECT_EQ(statuses(), std::vector<int>{404}) << wire_.written;
  send(kGet);  // the connection goes on
  EXPECT_EQ(statuses(), (std::vector<int>{404, 404})) << wire_.written;
}

TEST_F(Http1SessionTest, PipelinedRequestWaitsForTheBlockedAnswer) {
  wire_.write_budget = 10;
  send(getWithId("first") + getWithId("second"));
  EXPECT_EQ(wire_.written.size(), 10u) << "the second answer does not overtake the first";
  wire_.write_budget = std::numeric_limits<std::size_t>::max();
  session_->onTransportReady(false, true);
  EXPECT_EQ(ids(), (std::vector<std::string>{"first", "second"})) << wire_.written;
}

TEST_F(Http1SessionTest, ClientEndOfStreamClosesTheSession) {
  wire_.eof = true;
  session_->onTransportReady(true, false);
  EXPECT_TRUE(wire_.closed);
  EXPECT_TRUE(session_->dead());
  EXPECT_EQ(wire_.written, "");
}

TEST_F(Http1SessionTest, DrainClosesAnIdleSession) {
  send(kGet);
  ASSERT_FALSE(wire_.closed);
  session_->drain();
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(got().size(), 1u);
}

TEST_F(Http1SessionTest, DrainDuringAHeadAnswersItWithConnectionClose) {
  send("GET /nothing HTTP/1.1\r\n");
  session_->drain();
  EXPECT_FALSE(wire_.closed) << "a request is under way";
  send("Host: x\r\n\r\n");
  expectOneClosingAnswer(404);
}

TEST_F(Http1SessionTest, ClosedSessionIsFreedOnTheReapEvent) {
  send("GET /x HTTP/1.1\r\n\r\n");  // 400: closes
  ASSERT_TRUE(wire_.closed);
  EXPECT_FALSE(wire_.destroyed) << "still inside its own callback";
  event_base_loop(worker_->base(), EVLOOP_NONBLOCK);
  EXPECT_TRUE(wire_.destroyed);
}

}  // namespace
}  // namespace sluice::server
