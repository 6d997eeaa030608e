// One request's exchange without sockets: a fake session (Downstream), a fake
// pool (ConnectionSource) whose connections carry scripted upstream bytes, a
// fake admission decision and a FakeClock for the deadlines.

#include "proxy/exchange/exchange.h"

#include <errno.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/http/head_rewrite.h"
#include "tests/exchange/exchange_fakes.h"
#include "tests/http/parsed_head.h"
#include "tests/support/runtime_builder.h"

namespace sluice::exchange {
namespace {

using event::kNanosPerSecond;
using event::Nanos;
using testing::got;
using testing::adm::AdmissionResult;
using Got = upstream::ConnectionSource::Got;
using ::testing::HasSubstr;

constexpr Nanos kPendingTimeout = 1 * kNanosPerSecond;
constexpr Nanos kConnectTimeout = 2 * kNanosPerSecond;
constexpr Nanos kResponseTimeout = 3 * kNanosPerSecond;
constexpr Nanos kUpstreamIdleTimeout = 4 * kNanosPerSecond;

constexpr const char* kConfig =
    "server:\n"
    "  workers: 1\n"
    "upstreams:\n"
    "  api:\n"
    "    targets: [127.0.0.1:9]\n"
    "    pending_timeout: 1s\n"
    "    connect_timeout: 2s\n"
    "    response_timeout: 3s\n"
    "    idle_timeout: 4s\n"
    "routes:\n"
    "  - path_prefix: /api/\n"
    "    upstream: api\n";

constexpr const char* kGet = "GET /api/items?page=2 HTTP/1.1\r\nHost: example.test\r\n\r\n";
// kGet as sent upstream by peer 192.0.2.10 with request id rid-1.
constexpr const char* kGetUpstream =
    "GET /api/items?page=2 HTTP/1.1\r\n"
    "Host: example.test\r\n"
    "X-Forwarded-For: 192.0.2.10\r\n"
    "X-Forwarded-Proto: http\r\n"
    "X-Forwarded-Host: example.test\r\n"
    "X-Request-Id: rid-1\r\n"
    "\r\n";
constexpr const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
// kOk as the client gets it.
constexpr const char* kOkToClient =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: rid-1\r\n\r\nhello";

class ExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = sluice::testing::buildRuntime(kConfig, registry_);
    ASSERT_NE(rt_, nullptr);
    rt_->admission = admission_;
  }

  // The session hands over request `bytes` (a whole head) read from peer
  // 192.0.2.10 and gave it request id rid-1.
  void start(const std::string& bytes) {
    parsed_ = http::testing::parseHead(bytes);
    ASSERT_EQ(parsed_.event, http::ParseEvent::kHeadComplete) << bytes;
    const http::MessageHead& h = parsed_.head;
    Request r;
    r.rt = rt_.get();
    r.route = &rt_->route_runtime[0];
    r.head = &parsed_.head;
    r.buf = parsed_.bytes.data();
    r.target = std::string_view(parsed_.bytes).substr(h.url.off, h.url.len);
    r.peer_text = "192.0.2.10";
    r.request_id = "rid-1";
    r.start = clock_.now();
    r.has_body = h.chunked || h.content_length > 0;
    r.head_request = h.method == HTTP_HEAD;
    r.http10 = h.version_minor == 0;
    r.idempotent = http::isIdempotent(h.method);
    r.upgrade = upgrade_;
    view_.waiter = &exchange_;
    exchange_.start(r, view_);
  }

  // The pool reserves a slot, the request opens connection 0 and it connects.
  void startOnFreshConnection(const std::string& bytes) {
    source_.script.push_back(got(Got::kSlot));
    start(bytes);
    ASSERT_EQ(source_.connCount(), 1u);
    connects(0);
  }

  // Connection `i` (in the order the source made them) finished its connect.
  void connects(std::size_t i) { source_.conn(i)->onTransportReady(false, true); }
  // The upstream server writes `bytes` on connection `i`; one readable event.
  void upstreamSends(const std::string& bytes, std::size_t i = 0) {
    source_.wire(i).to_proxy += bytes;
    source_.conn(i)->onTransportReady(true, false);
  }
  // The upstream server closes connection `i`; one readable event.
  void upstreamCloses(std::size_t i = 0) {
    source_.wire(i).eof = true;
    source_.conn(i)->onTransportReady(true, false);
  }

  // The request was answered locally with `status`, once, and nothing else.
  void expectLocalAnswer(int status) const {
    ASSERT_EQ(down_.answers.size(), 1u);
    EXPECT_EQ(down_.answers[0].status, status);
    EXPECT_EQ(down_.done, 0);
    EXPECT_EQ(down_.aborted, 0);
    EXPECT_TRUE(down_.received.empty()) << down_.received;
    EXPECT_FALSE(exchange_.active());
  }

  // Connection `i` was released exactly once, reusable or not.
  void expectReleased(std::size_t i, bool reusable) const {
    ASSERT_EQ(source_.releases.size(), i + 1);
    EXPECT_EQ(source_.releases[i].uc, source_.conn(i));
    EXPECT_EQ(source_.releases[i].reusable, reusable);
    EXPECT_EQ(source_.double_releases, 0);
  }

  // The client got `bytes` as the complete response.
  void expectResponse(const std::string& bytes) const {
    EXPECT_EQ(down_.received, bytes);
    EXPECT_EQ(down_.done, 1);
    EXPECT_EQ(down_.aborted, 0);
    EXPECT_TRUE(down_.answers.empty());
    EXPECT_FALSE(exchange_.active());
  }

  event::FakeClock clock_{1000 * kNanosPerSecond};
  metrics::Registry registry_{1, "test"};
  std::shared_ptr<Runtime> rt_;
  std::shared_ptr<testing::FakeAdmission> admission_ = std::make_shared<testing::FakeAdmission>();
  http::testing::ParsedHead parsed_;
  testing::adm::RequestView view_;
  testing::FakeDownstream down_{clock_};
  std::string upgrade_;  // Request::upgrade of the next start()
  testing::FakeSource source_;
  Record record_;
  // Last: destroyed first, while the source still holds released connections.
  Exchange exchange_{down_, source_, record_};
};

// ---- forwarding ----------------------------------------------------------------

TEST_F(ExchangeTest, UpstreamGetsTheRewrittenHead) {
  startOnFreshConnection(
      "GET /api/items HTTP/1.1\r\n"
      "Host: example.test\r\n"
      "X-Forwarded-For: 203.0.113.7\r\n"
      "Connection: keep-alive, X-Secret\r\n"
      "X-Secret: s\r\n"
      "Keep-Alive: timeout=5\r\n"
      "X-Request-Id: client-chosen\r\n"
      "Accept: */*\r\n"
      "\r\n");
  EXPECT_EQ(source_.wire(0).from_proxy,
            "GET /api/items HTTP/1.1\r\n"
            "Host: example.test\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 203.0.113.7, 192.0.2.10\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: example.test\r\n"
            "X-Request-Id: rid-1\r\n"
            "\r\n");
  EXPECT_EQ(down_.forwarding_begun, 1);
  EXPECT_TRUE(source_.wire(0).reading);
}

TEST_F(ExchangeTest, ResponseReachesTheClientByteExactAndTheConnectionIsKept) {
  startOnFreshConnection(kGet);
  EXPECT_EQ(source_.wire(0).from_proxy, kGetUpstream);
  upstreamSends(
      "HTTP/1.1 200 OK\r\n"
      "Content-Length: 5\r\n"
      "Connection: keep-alive\r\n"
      "Keep-Alive: timeout=5\r\n"
      "X-Request-Id: upstream-7\r\n"
      "Cache-Control: no-store\r\n"
      "\r\n"
      "hello");
  expectResponse(
      "HTTP/1.1 200 OK\r\n"
      "Content-Length: 5\r\n"
      "Cache-Control: no-store\r\n"
      "X-Request-Id: rid-1\r\n"
      "\r\n"
      "hello");
  expectReleased(0, true);
  EXPECT_EQ(record_.status, 200);
  EXPECT_EQ(record_.bytes_out, down_.received.size());
  EXPECT_EQ(record_.upstream, &rt_->pools[0]->target(0));
}

TEST_F(ExchangeTest, ConnectionTheUpstreamWillCloseIsNotKept) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  expectResponse(kOkToClient);
  expectReleased(0, false);
  EXPECT_FALSE(down_.close_after);  // the client's connection stays usable
}

TEST_F(ExchangeTest, ResponseSplitAcrossReadsIsRelayedWhole) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Le");
  EXPECT_TRUE(down_.received.empty());
  upstreamSends("ngth: 5\r\n\r\nhel");
  EXPECT_EQ(down_.done, 0);
  upstreamSends("lo");
  expectResponse(kOkToClient);
  expectReleased(0, true);
}

TEST_F(ExchangeTest, ResponseToAnAllowedRequestCarriesTheRateLimitFields) {
  admission_->verdict.allowed_headers = "RateLimit: \"per_ip\";r=39\r\n";
  startOnFreshConnection(kGet);
  upstreamSends(kOk);
  expectResponse(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: rid-1\r\n"
      "RateLimit: \"per_ip\";r=39\r\n\r\nhello");
}

TEST_F(ExchangeTest, RequestBodyFollowsTheHeadAsItArrives) {
  down_.body = "he";
  down_.body_complete = false;
  startOnFreshConnection("PUT /api/doc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
  const std::string& up = source_.wire(0).from_proxy;
  ASSERT_TRUE(up.ends_with("\r\n\r\nhe")) << up;
  down_.body += "llo";
  down_.body_complete = true;
  exchange_.onBodyData();
  EXPECT_TRUE(up.ends_with("\r\n\r\nhello")) << up;
  upstreamSends(kOk);
  expectResponse(kOkToClient);
}

// ---- admission -----------------------------------------------------------------

TEST_F(ExchangeTest, DeniedRequestIsAnswered429AndNeverReachesThePool) {
  admission_->verdict.status = 429;
  admission_->verdict.headers = "Retry-After: 2\r\n";
  admission_->verdict.violated = {"per_ip", "global"};
  start(kGet);
  expectLocalAnswer(429);
  EXPECT_EQ(down_.answers[0].headers, "Retry-After: 2\r\n");
  EXPECT_EQ(down_.answers[0].violated, (std::vector<std::string>{"per_ip", "global"}));
  EXPECT_FALSE(down_.answers[0].close);
  EXPECT_EQ(source_.acquires, 0);
  EXPECT_EQ(down_.forwarding_begun, 0);
}

TEST_F(ExchangeTest, AdmissionAnswering400ClosesTheConnection) {
  admission_->verdict.status = 400;
  start(kGet);
  expectLocalAnswer(400);
  EXPECT_TRUE(down_.answers[0].close);
  EXPECT_EQ(source_.acquires, 0);
}

TEST_F(ExchangeTest, PendingVerdictWaitsThenForwardsOnAdmission) {
  admission_->verdict.status = testing::adm::kAdmissionPending;
  admission_->verdict.ticket = 9;
  source_.script.push_back(got(Got::kSlot));
  start(kGet);
  EXPECT_TRUE(exchange_.awaitingAdmission());
  EXPECT_EQ(source_.acquires, 0);
  EXPECT_EQ(down_.forwarding_begun, 0);
  ASSERT_EQ(admission_->waiter, &exchange_);
  AdmissionResult forward;
  admission_->waiter->onAdmission(forward);
  EXPECT_FALSE(exchange_.awaitingAdmission());
  EXPECT_EQ(source_.opened_targets, std::vector<std::size_t>{0});
  connects(0);
  EXPECT_EQ(source_.wire(0).from_proxy, kGetUpstream);
  upstreamSends(kOk);
  expectResponse(kOkToClient);
}

TEST_F(ExchangeTest, PendingVerdictThatDeniesIsAnswered429) {
  admission_->verdict.status = testing::adm::kAdmissionPending;
  admission_->verdict.ticket = 9;
  start(kGet);
  AdmissionResult denied;
  denied.status = 429;
  denied.headers = "Retry-After: 1\r\n";
  denied.violated = {"per_key"};
  exchange_.onAdmission(denied);
  expectLocalAnswer(429);
  EXPECT_EQ(down_.answers[0].violated, std::vector<std::string>{"per_key"});
  EXPECT_EQ(source_.acquires, 0);
}

TEST_F(ExchangeTest, CancelWhileAdmissionIsPendingCancelsTheDecision) {
  admission_->verdict.status = testing::adm::kAdmissionPending;
  admission_->verdict.ticket = 9;
  start(kGet);
  exchange_.cancel();
  ASSERT_EQ(admission_->cancelled.size(), 1u);
  EXPECT_EQ(admission_->cancelled[0].worker, 0);
  EXPECT_EQ(admission_->cancelled[0].ticket, 9u);
  EXPECT_FALSE(exchange_.active());
  // A verdict arriving anyway is ignored.
  AdmissionResult forward;
  exchange_.onAdmission(forward);
  EXPECT_EQ(source_.acquires, 0);
  EXPECT_TRUE(down_.answers.empty());
}

// ---- the pool ------------------------------------------------------------------

TEST_F(ExchangeTest, IdleConnectionIsUsedAtOnceAndKept) {
  source_.script.push_back(got(Got::kConn, source_.makeConn(rt_->pools[0], 0)));
  start(kGet);
  EXPECT_EQ(source_.wire(0).from_proxy, kGetUpstream);
  EXPECT_TRUE(source_.opened_targets.empty());
  upstreamSends(kOk);
  expectResponse(kOkToClient);
  expectReleased(0, true);
}

TEST_F(ExchangeTest, FullPoolIsAnswered503) {
  start(kGet);  // the source's script is empty: kFull
  expectLocalAnswer(503);
  EXPECT_FALSE(down_.answers[0].close);
  EXPECT_TRUE(source_.opened_targets.empty());
}

TEST_F(ExchangeTest, FullPoolWithTheBodyStillUnreadClosesTheClient) {
  down_.body_complete = false;
  start("POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
  expectLocalAnswer(503);
  EXPECT_TRUE(down_.answers[0].close);
  EXPECT_TRUE(down_.close_after);
}

TEST_F(ExchangeTest, QueuedRequestOpensAConnectionWhenHandedASlot) {
  source_.script.push_back(got(Got::kQueued, nullptr, 42));
  start(kGet);
  EXPECT_TRUE(source_.opened_targets.empty());
  EXPECT_EQ(source_.last_waiter, &exchange_);
  exchange_.onSlot(0);
  EXPECT_EQ(source_.opened_targets, std::vector<std::size_t>{0});
  connects(0);
  EXPECT_EQ(source_.wire(0).from_proxy, kGetUpstream);
  upstreamSends(kOk);
  expectResponse(kOkToClient);
  EXPECT_TRUE(source_.cancelled.empty());
}

TEST_F(ExchangeTest, QueuedRequestTakesAHandedOverIdleConnection) {
  source_.script.push_back(got(Got::kQueued, nullptr, 42));
  start(kGet);
  exchange_.onIdleConn(source_.makeConn(rt_->pools[0], 0));
  EXPECT_EQ(source_.wire(0).from_proxy, kGetUpstream);
  upstreamSends(kOk);
  expectResponse(kOkToClient);
  expectReleased(0, true);
}

TEST_F(ExchangeTest, PendingTimeoutIs503AndLeavesTheQueue) {
  source_.script.push_back(got(Got::kQueued, nullptr, 42));
  start(kGet);
  exchange_.checkTimeout(clock_.now() + kPendingTimeout - 1);
  EXPECT_TRUE(down_.answers.empty());
  exchange_.checkTimeout(clock_.now() + kPendingTimeout);
  expectLocalAnswer(503);
  EXPECT_EQ(source_.cancelled, std::vector<std::uint64_t>{42});
}

TEST_F(ExchangeTest, CancelWhileQueuedLeavesTheQueue) {
  source_.script.push_back(got(Got::kQueued, nullptr, 42));
  start(kGet);
  exchange_.cancel();
  EXPECT_EQ(source_.cancelled, std::vector<std::uint64_t>{42});
  EXPECT_FALSE(exchange_.active());
  // No deadline is left behind.
  exchange_.checkTimeout(clock_.now() + 100 * kNanosPerSecond);
  EXPECT_TRUE(down_.answers.empty());
  EXPECT_EQ(source_.cancelled.size(), 1u);
}

// ---- upstream failures -----------------------------------------------------------

TEST_F(ExchangeTest, ConnectionThatCannotBeOpenedIs502) {
  source_.script.push_back(got(Got::kSlot));
  source_.open_fails = true;
  start(kGet);
  expectLocalAnswer(502);
  EXPECT_EQ(source_.opened_targets, std::vector<std::size_t>{0});
}

TEST_F(ExchangeTest, RefusedConnectIs502AndMarksTheTargetDown) {
  source_.script.push_back(got(Got::kSlot));
  start(kGet);
  source_.wire(0).connect_error = ECONNREFUSED;
  connects(0);
  expectLocalAnswer(502);
  expectReleased(0, false);
  EXPECT_TRUE(source_.wire(0).from_proxy.empty());
  EXPECT_GT(rt_->pools[0]->target(0).down_until.load(), clock_.now());
}

TEST_F(ExchangeTest, ConnectTimeoutIs502) {
  source_.script.push_back(got(Got::kSlot));
  start(kGet);
  exchange_.checkTimeout(clock_.now() + kConnectTimeout - 1);
  EXPECT_TRUE(down_.answers.empty());
  exchange_.checkTimeout(clock_.now() + kConnectTimeout);
  expectLocalAnswer(502);
  expectReleased(0, false);
}

TEST_F(ExchangeTest, UpstreamClosingBeforeTheResponseHeadIs502) {
  startOnFreshConnection(kGet);
  upstreamCloses();
  expectLocalAnswer(502);
  expectReleased(0, false);
  EXPECT_EQ(source_.acquires, 1);  // a fresh connection is not retried
}

TEST_F(ExchangeTest, UpstreamResetBeforeTheResponseHeadIs502) {
  startOnFreshConnection(kGet);
  source_.wire(0).read_errno = ECONNRESET;
  source_.conn(0)->onTransportReady(true, false);
  expectLocalAnswer(502);
  expectReleased(0, false);
}

TEST_F(ExchangeTest, ReusedConnectionClosedBeforeAnsweringIsRetriedOnAFreshOne) {
  source_.script.push_back(got(Got::kConn, source_.makeConn(rt_->pools[0], 0)));
  source_.script.push_back(got(Got::kSlot));
  start(kGet);
  upstreamCloses(0);
  EXPECT_TRUE(down_.answers.empty());
  EXPECT_EQ(source_.acquires, 2);
  ASSERT_EQ(source_.connCount(), 2u);
  connects(1);
  EXPECT_EQ(source_.wire(1).from_proxy, kGetUpstream);
  upstreamSends(kOk, 1);
  expectResponse(kOkToClient);
  ASSERT_EQ(source_.releases.size(), 2u);
  EXPECT_EQ(source_.releases[0].uc, source_.conn(0));
  EXPECT_FALSE(source_.releases[0].reusable);
  EXPECT_EQ(source_.releases[1].uc, source_.conn(1));
  EXPECT_TRUE(source_.releases[1].reusable);
}

TEST_F(ExchangeTest, RetriedRequestFailingAgainIs502) {
  source_.script.push_back(got(Got::kConn, source_.makeConn(rt_->pools[0], 0)));
  source_.script.push_back(got(Got::kConn, source_.makeConn(rt_->pools[0], 0)));
  start(kGet);
  upstreamCloses(0);
  upstreamCloses(1);
  expectLocalAnswer(502);
  EXPECT_EQ(source_.acquires, 2);  // one retry only
  EXPECT_EQ(source_.releases.size(), 2u);
}

TEST_F(ExchangeTest, NonIdempotentRequestOnAReusedConnectionIsNotRetried) {
  source_.script.push_back(got(Got::kConn, source_.makeConn(rt_->pools[0], 0)));
  start("POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  upstreamCloses(0);
  expectLocalAnswer(502);
  EXPECT_EQ(source_.acquires, 1);
}

TEST_F(ExchangeTest, MalformedResponseIs502) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
  expectLocalAnswer(502);
  expectReleased(0, false);
}

TEST_F(ExchangeTest, NoResponseHeadWithinResponseTimeoutIs504) {
  startOnFreshConnection(kGet);
  exchange_.checkTimeout(clock_.now() + kResponseTimeout - 1);
  EXPECT_TRUE(down_.answers.empty());
  exchange_.checkTimeout(clock_.now() + kResponseTimeout);
  expectLocalAnswer(504);
  expectReleased(0, false);
}

TEST_F(ExchangeTest, BodyCutShortByTheUpstreamAbortsTheClient) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
  EXPECT_TRUE(exchange_.responseStarted());
  upstreamCloses();
  EXPECT_EQ(down_.aborted, 1);
  EXPECT_EQ(down_.done, 0);
  EXPECT_TRUE(down_.answers.empty());
  EXPECT_EQ(down_.received,
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Request-Id: rid-1\r\n\r\nhello");
  expectReleased(0, false);
}

TEST_F(ExchangeTest, UpstreamSilentMidBodyPastIdleTimeoutAbortsTheClient) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
  exchange_.checkTimeout(clock_.now() + kUpstreamIdleTimeout - 1);
  EXPECT_EQ(down_.aborted, 0);
  exchange_.checkTimeout(clock_.now() + kUpstreamIdleTimeout);
  EXPECT_EQ(down_.aborted, 1);
  EXPECT_TRUE(down_.answers.empty());
  expectReleased(0, false);
}

// ---- framing toward the client --------------------------------------------------

TEST_F(ExchangeTest, CloseDelimitedBodyIsRechunkedForAnHttp11Client) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc");
  upstreamSends("de");
  upstreamCloses();
  expectResponse(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
      "X-Request-Id: rid-1\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  expectReleased(0, false);
  EXPECT_FALSE(down_.close_after);
}

TEST_F(ExchangeTest, CloseDelimitedBodyGoesAsItIsToAnHttp10ClientWhichIsClosed) {
  startOnFreshConnection("GET /api/x HTTP/1.0\r\nHost: h\r\n\r\n");
  EXPECT_TRUE(source_.wire(0).from_proxy.starts_with("GET /api/x HTTP/1.0\r\n"));
  upstreamSends("HTTP/1.0 200 OK\r\n\r\nabc");
  upstreamCloses();
  expectResponse("HTTP/1.1 200 OK\r\nConnection: close\r\nX-Request-Id: rid-1\r\n\r\nabc");
  EXPECT_TRUE(down_.close_after);
}

TEST_F(ExchangeTest, ResponseToHeadHasNoBody) {
  startOnFreshConnection("HEAD /api/x HTTP/1.1\r\nHost: h\r\n\r\n");
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
  expectResponse("HTTP/1.1 200 OK\r\nContent-Length: 42\r\nX-Request-Id: rid-1\r\n\r\n");
  expectReleased(0, true);
}

TEST_F(ExchangeTest, InterimResponseIsRelayedBeforeTheFinalOne) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + std::string(kOk));
  expectResponse("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + std::string(kOkToClient));
  expectReleased(0, true);
}

// ---- switching protocols (SPEC §10) ----------------------------------------------

TEST_F(ExchangeTest, SwitchingProtocolsHandsBothConnectionsToATunnel) {
  upgrade_ = "websocket";
  startOnFreshConnection(
      "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  EXPECT_THAT(source_.wire(0).from_proxy,
              HasSubstr("Connection: upgrade\r\nUpgrade: websocket\r\n"));
  upstreamSends(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: abc\r\n\r\nFRAME");
  EXPECT_EQ(source_.detached, 1);
  EXPECT_TRUE(source_.releases.empty()) << "a tunnel's connection never goes back to the pool";
  EXPECT_EQ(down_.tunnel_head,
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n"
            "Connection: upgrade\r\nUpgrade: websocket\r\nX-Request-Id: rid-1\r\n\r\n");
  EXPECT_EQ(down_.tunnel_bytes, "FRAME");
  EXPECT_NE(down_.tunnel_upstream, nullptr);
  EXPECT_FALSE(exchange_.active());
  EXPECT_TRUE(down_.answers.empty());
}

TEST_F(ExchangeTest, SwitchingProtocolsNobodyAskedForIs502) {
  startOnFreshConnection(kGet);
  upstreamSends("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
  expectLocalAnswer(502);
  EXPECT_EQ(source_.detached, 0);
}

// ---- a slow client ---------------------------------------------------------------

TEST_F(ExchangeTest, ResponseQueuedForASlowClientFinishesWhenItDrains) {
  startOnFreshConnection(kGet);
  down_.flush_again = 1;
  upstreamSends(kOk);
  EXPECT_EQ(down_.done, 0);
  EXPECT_TRUE(source_.releases.empty());
  EXPECT_FALSE(source_.wire(0).reading);
  down_.clientTakesQueued();
  exchange_.onClientDrained();
  expectResponse(kOkToClient);
  expectReleased(0, true);
}

TEST_F(ExchangeTest, SlowClientPausesUpstreamReadsUntilItDrains) {
  startOnFreshConnection(kGet);
  down_.flush_again = 1;
  upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
  EXPECT_FALSE(source_.wire(0).reading);
  down_.clientTakesQueued();
  exchange_.onClientDrained();
  EXPECT_TRUE(source_.wire(0).reading);
  EXPECT_EQ(down_.done, 0);
  upstreamSends("world");
  expectResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Request-Id: rid-1\r\n\r\nhelloworld");
  expectReleased(0, true);
}

// The connect deadline ends when the connect completes: an upload still
// arriving connect_timeout after the start is bounded by the session's
// body_timeout, not answered 502 kind="connect".
TEST_F(ExchangeTest, SlowRequestBodyOnAFreshConnectionIsNotCutAtConnectTimeout) {
  down_.body = "he";
  down_.body_complete = false;
  startOnFreshConnection("PUT /api/doc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
  exchange_.checkTimeout(clock_.now() + kConnectTimeout);
  EXPECT_TRUE(down_.answers.empty());
  EXPECT_TRUE(exchange_.active());
}

}  // namespace
}  // namespace sluice::exchange
