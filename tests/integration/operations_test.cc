// Operating sluice through the real binary: /metrics (SPEC §8), SIGHUP reload
// and SIGTERM drain (§6), the admin endpoints (§7).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// One GET on a fresh connection bound to `source_ip` (empty: 127.0.0.1).
std::optional<Response> getFrom(int port, std::string_view path, std::string_view source_ip = {},
                                const Headers& headers = {}) {
  Deadline deadline = deadlineIn(seconds(10));
  HttpConn conn(port, source_ip, "127.0.0.1", deadline);
  if (!conn.connected() || !conn.send(requestText("GET", path, port, headers), deadline)) {
    return std::nullopt;
  }
  return conn.readResponse(deadline);
}

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(upstream_.start()); }

  // The whole config: two workers, upstream `demo`, then `rest` (limits:,
  // routes:, clients:, limiter:).
  std::string config(std::string_view rest) const {
    return twoWorkerConfig(upstream_.port(), rest);
  }

  // A route `/` to demo with per_ip (rate 1/m, `burst`); answers carry the
  // rate-limit fields.
  std::string perIpConfig(int burst) const {
    return config(
        "limiter:\n"
        "  response_headers: true\n"
        "limits:\n"
        "  per_ip: {per: ip, rate: 1/m, burst: " +
        std::to_string(burst) +
        "}\n"
        "routes:\n"
        "  - path_prefix: /\n"
        "    upstream: demo\n"
        "    limits: [per_ip]\n");
  }

  int status(std::string_view path, std::string_view source_ip = {}, const Headers& headers = {}) {
    auto r = getFrom(sluice_.port(), path, source_ip, headers);
    return r ? r->status : 0;
  }

  std::vector<int> statuses(int n, std::string_view path, std::string_view source_ip = {},
                            const Headers& headers = {}) {
    std::vector<int> out;
    for (int i = 0; i < n; ++i) out.push_back(status(path, source_ip, headers));
    return out;
  }

  // One sample of /metrics; -1 when the scrape failed or the sample is absent.
  double metric(std::string_view name, const Headers& labels = {}) {
    return scrapeValue(sluice_.adminPort(), name, labels).value_or(-1);
  }
  double reloads(std::string_view result) {
    return metric("sluice_config_reloads_total", {{"result", std::string(result)}});
  }
  double lastReloadTimestamp() {
    return metric("sluice_config_last_reload_success_timestamp_seconds");
  }

  // Sends SIGHUP and waits until the reload was counted with `result`, the
  // counter reaching `expected`.
  ::testing::AssertionResult reload(std::string_view result, double expected) {
    if (!sluice_.process().signal(SIGHUP)) return ::testing::AssertionFailure() << "SIGHUP failed";
    if (!waitUntil([&] { return reloads(result) == expected; }, deadlineIn(seconds(5)))) {
      return ::testing::AssertionFailure() << "sluice_config_reloads_total{result=\"" << result
                                           << "\"} is " << reloads(result) << ", want " << expected;
    }
    return ::testing::AssertionSuccess();
  }

  // minimalConfig() with two workers and no limits.
  std::string twoWorkers() const {
    ConfigOptions options;
    options.server = "workers: 2\n";
    return minimalConfig(upstream_.port(), options);
  }

  // GET /readyz on the admin listener: its status, 0 without an answer.
  int readyz() {
    auto r = httpGet(sluice_.adminPort(), "/readyz", {}, deadlineIn(seconds(2)));
    return r ? r->status : 0;
  }

  // A request to the demo upstream's /__hang through sluice, in flight until
  // the returned connection closes.
  HttpConn hangingRequest() {
    HttpConn conn(sluice_.port());
    EXPECT_TRUE(conn.connected()) << conn.error();
    EXPECT_TRUE(conn.send(requestText("GET", "/__hang", sluice_.port())));
    EXPECT_TRUE(waitUntil(
        [&] {
          auto s = upstream_.stats();
          return s && s->in_flight == 1;
        },
        deadlineIn(seconds(5))));
    return conn;
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

// ---- Metrics (SPEC §8) ----------------------------------------------------------------

TEST_F(OperationsTest, RequestCountersMatchWhatWasAnswered) {
  ASSERT_TRUE(
      sluice_.start(config("limits:\n"
                           "  per_ip: {per: ip, rate: 1/m, burst: 3}\n"
                           "routes:\n"
                           "  - name: api\n"
                           "    path_prefix: /\n"
                           "    upstream: demo\n"
                           "    limits: [per_ip]\n")));
  constexpr int kSent = 8;
  constexpr int kDenied = 5;
  EXPECT_THAT(statuses(kSent, "/"), ElementsAre(200, 200, 200, 429, 429, 429, 429, 429));
  auto ok = [&] { return metric("sluice_requests_total", {{"route", "api"}, {"code", "200"}}); };
  auto denied = [&] {
    return metric("sluice_requests_total", {{"route", "api"}, {"code", "429"}});
  };
  // A request is counted when its answer is finished, a moment after the client has it.
  ASSERT_TRUE(waitUntil([&] { return ok() + denied() >= kSent; }, deadlineIn(seconds(5))))
      << "200: " << ok() << ", 429: " << denied();
  EXPECT_EQ(ok(), kSent - kDenied);
  EXPECT_EQ(denied(), kDenied);
  EXPECT_EQ(
      metric("sluice_ratelimit_decisions_total", {{"limit", "per_ip"}, {"decision", "denied"}}),
      kDenied);
  EXPECT_EQ(
      metric("sluice_ratelimit_decisions_total", {{"limit", "per_ip"}, {"decision", "allowed"}}),
      kSent - kDenied);
  EXPECT_EQ(metric("sluice_upstream_requests_total", {{"upstream", "demo"}, {"code", "200"}}),
            kSent - kDenied);
}

TEST_F(OperationsTest, RateLimitKeysRiseWithClientsAndFallAfterSweeping) {
  // 1/s: a bucket is full (sweepable) again 1 s after its request, long
  // enough to see all five before the sweeper takes them.
  ASSERT_TRUE(
      sluice_.start(config("limiter:\n"
                           "  sweep_interval: 1s\n"
                           "limits:\n"
                           "  per_ip: {per: ip, rate: 1/s, burst: 1}\n"
                           "routes:\n"
                           "  - path_prefix: /\n"
                           "    upstream: demo\n"
                           "    limits: [per_ip]\n")));
  auto keys = [&] { return metric("sluice_ratelimit_keys", {{"limit", "per_ip"}}); };
  EXPECT_EQ(keys(), 0);
  const auto first = Clock::now();
  for (std::string ip : {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}) {
    EXPECT_EQ(status("/", ip), 200) << ip;
  }
  double held = keys();
  ASSERT_LT(Clock::now() - first, milliseconds(900)) << "too slow to see the buckets unswept";
  EXPECT_EQ(held, 5);
  EXPECT_TRUE(waitUntil([&] { return keys() == 0; }, deadlineIn(seconds(5)), milliseconds(50)))
      << "sluice_ratelimit_keys is still " << keys();
  EXPECT_EQ(metric("sluice_ratelimit_swept_total", {{"limit", "per_ip"}}), 5);
}

TEST_F(OperationsTest, BuildInfoCarriesTheVersion) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  ChildProcess version(Sluice::binaryPath(), {"--version"});
  ASSERT_TRUE(version.started()) << version.error();
  auto m =
      version.waitForOutput(Stream::kStdout, std::regex("sluice (\\S+)\n"), deadlineIn(seconds(5)));
  ASSERT_TRUE(m);
  EXPECT_EQ(metric("sluice_build_info", {{"version", m->groups.at(0)}}), 1);
}

TEST_F(OperationsTest, MetricsUseTheTextExpositionContentType) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  auto r = scrapeMetrics(sluice_.adminPort());
  ASSERT_TRUE(r);
  EXPECT_THAT(r->header("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(r->body, HasSubstr("# TYPE sluice_requests_total counter"));
}

TEST_F(OperationsTest, LabelsNeverHoldClientAddressesOrApiKeys) {
  ASSERT_TRUE(
      sluice_.start(config("clients:\n"
                           "  trusted_proxies: [127.0.0.2/32]\n"
                           "limits:\n"
                           "  per_ip: {per: ip, rate: 1/m, burst: 1}\n"
                           "  per_key: {per: api_key, rate: 1/m, burst: 1}\n"
                           "routes:\n"
                           "  - path_prefix: /\n"
                           "    upstream: demo\n"
                           "    limits: [per_ip, per_key]\n")));
  const std::string key = "zq-secret-key-7f3a9c";
  EXPECT_THAT(statuses(2, "/", "127.0.0.3", {{"X-API-Key", key}}), ElementsAre(200, 429));
  EXPECT_THAT(statuses(2, "/", "127.0.0.2", {{"X-Forwarded-For", "198.51.100.77"}}),
              ElementsAre(200, 429));
  std::optional<Response> r;
  ASSERT_TRUE(waitUntil(
      [&] {
        r = scrapeMetrics(sluice_.adminPort());
        return r && promValue(r->body, "sluice_ratelimit_decisions_total",
                              {{"limit", "per_ip"}, {"decision", "denied"}}) == 2;
      },
      deadlineIn(seconds(5))));
  for (std::string_view secret :
       {std::string_view(key), std::string_view("7f3a9c"), std::string_view("127.0.0.3"),
        std::string_view("127.0.0.2"), std::string_view("198.51.100.77")}) {
    EXPECT_THAT(r->body, Not(HasSubstr(secret)));
  }
}

// ---- Reload (SPEC §6, SIGHUP) ---------------------------------------------------------

TEST_F(OperationsTest, InvalidReloadKeepsServingAndCountsAFailure) {
  ASSERT_TRUE(sluice_.start(perIpConfig(5)));
  const double loaded_at = lastReloadTimestamp();
  ASSERT_TRUE(
      sluice_.writeConfig(config("limits:\n"
                                 "  per_ip: {per: ip, rate: 0/s}\n"
                                 "routes:\n"
                                 "  - path_prefix: /\n"
                                 "    upstream: demo\n"
                                 "    limits: [per_ip]\n")));
  ASSERT_TRUE(reload("failure", 1));
  EXPECT_EQ(reloads("success"), 0);
  EXPECT_EQ(lastReloadTimestamp(), loaded_at);
  EXPECT_TRUE(sluice_.process().running());
  auto r = getFrom(sluice_.port(), "/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("RateLimit-Policy"), "\"per_ip\";q=5;w=300") << "the old config serves";
  // The error is logged as FILE:LINE:COLUMN: message (the rate is on line 9).
  std::string path =
      std::regex_replace(sluice_.configPath(), std::regex("[.^$|()\\[\\]{}*+?\\\\]"), "\\$&");
  EXPECT_TRUE(sluice_.process().waitForOutput(
      Stream::kStderr, std::regex(path + ":9:\\d+: [^\n]*rate"), deadlineIn(seconds(2))))
      << "no FILE:LINE:COLUMN error for the rate of zero";
}

TEST_F(OperationsTest, ReloadLoweringBurstAppliesToTheNextRequest) {
  ASSERT_TRUE(sluice_.start(perIpConfig(5)));
  EXPECT_THAT(statuses(2, "/"), ElementsAre(200, 200));  // 3 tokens left
  ASSERT_TRUE(sluice_.writeConfig(perIpConfig(2)));
  ASSERT_TRUE(reload("success", 1));
  auto r = getFrom(sluice_.port(), "/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("RateLimit-Policy"), "\"per_ip\";q=2;w=120");
  EXPECT_THAT(r->header("RateLimit"), StartsWith("\"per_ip\";r=1;")) << "3 tokens clamped to 2";
  EXPECT_THAT(statuses(2, "/"), ElementsAre(200, 429));
}

TEST_F(OperationsTest, ReloadNeverRefillsABucket) {
  ASSERT_TRUE(sluice_.start(perIpConfig(2)));
  EXPECT_THAT(statuses(3, "/"), ElementsAre(200, 200, 429));
  ASSERT_TRUE(sluice_.writeConfig(perIpConfig(10)));
  ASSERT_TRUE(reload("success", 1));
  auto r = getFrom(sluice_.port(), "/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << "the reload refilled the empty bucket";
  EXPECT_EQ(r->header("RateLimit-Policy"), "\"per_ip\";q=10;w=600");
}

TEST_F(OperationsTest, SuccessfulReloadIsCountedAndTimestamped) {
  ASSERT_TRUE(sluice_.start(perIpConfig(5)));
  const double loaded_at = lastReloadTimestamp();
  EXPECT_GT(loaded_at, 1.6e9) << "the initial load sets the timestamp (README)";
  EXPECT_EQ(reloads("success"), 0) << "the initial load is not a reload (README)";
  ASSERT_TRUE(sluice_.writeConfig(perIpConfig(6)));
  ASSERT_TRUE(reload("success", 1));
  EXPECT_GT(lastReloadTimestamp(), loaded_at);
  EXPECT_EQ(reloads("failure"), 0);
}

// Sends GET / in a loop on its own thread until stop(), over one keep-alive
// connection or a new connection per request, and counts what came back.
class ClientLoop {
 public:
  ClientLoop(int port, bool keep_alive)
      : port_(port), keep_alive_(keep_alive), thread_([this] { run(); }) {}
  ~ClientLoop() { stop(); }
  ClientLoop(const ClientLoop&) = delete;
  ClientLoop& operator=(const ClientLoop&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int ok() const { return ok_; }
  int failures() const { return failures_; }
  int reconnects() const { return reconnects_; }
  std::string firstFailure() const {
    std::lock_guard lock(mu_);
    return first_failure_;
  }

 private:
  void fail(const std::string& what) {
    ++failures_;
    std::lock_guard lock(mu_);
    if (first_failure_.empty()) first_failure_ = what;
  }

  void run() {
    std::optional<HttpConn> conn;
    const Headers headers = keep_alive_ ? Headers{} : Headers{{"Connection", "close"}};
    while (!stop_) {
      Deadline deadline = deadlineIn(seconds(5));
      if (!conn) {
        conn.emplace(port_, std::string_view(), "127.0.0.1", deadline);
        if (!conn->connected()) {
          fail("connect: " + conn->error());
          conn.reset();
          continue;
        }
      }
      if (!conn->send(requestText("GET", "/", port_, headers), deadline)) {
        fail("send: " + conn->error());
        conn.reset();
        continue;
      }
      auto r = conn->readResponse(deadline);
      if (!r) {
        fail("no response: " + conn->error());
        conn.reset();
        continue;
      }
      if (r->status != 200 || !r->complete) {
        fail("status " + std::to_string(r->status) + (r->complete ? "" : " cut: " + r->error));
      } else {
        ++ok_;
      }
      if (!keep_alive_) {
        conn.reset();
      } else if (r->header("Connection") == "close") {
        ++reconnects_;
        conn.reset();
      }
    }
  }

  const int port_;
  const bool keep_alive_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::atomic<int> failures_{0};
  std::atomic<int> reconnects_{0};
  mutable std::mutex mu_;
  std::string first_failure_;
  std::thread thread_;  // last: started once the members it uses exist
};

TEST_F(OperationsTest, ReloadsUnderLoadLoseNoRequest) {
  auto variant = [&](int burst) {
    return config(
        "limits:\n"
        "  per_ip: {per: ip, rate: 100000/s, burst: " +
        std::to_string(burst) +
        "}\n"
        "routes:\n"
        "  - path_prefix: /\n"
        "    upstream: demo\n"
        "    limits: [per_ip]\n");
  };
  ASSERT_TRUE(sluice_.start(variant(100000)));
  double last_timestamp = lastReloadTimestamp();
  constexpr int kReloads = 10;
  const auto begin = Clock::now();
  {
    ClientLoop keep_alive(sluice_.port(), true);
    ClientLoop fresh(sluice_.port(), false);
    for (int i = 1; i <= kReloads; ++i) {
      const auto at = begin + milliseconds(500 * i - 250);
      waitUntil([&] { return Clock::now() >= at; }, at + milliseconds(50));
      ASSERT_TRUE(sluice_.writeConfig(variant(i % 2 == 1 ? 200000 : 100000)));
      // Waiting for each reload to be counted keeps two SIGHUPs from merging.
      ASSERT_TRUE(reload("success", i));
      double timestamp = lastReloadTimestamp();
      EXPECT_GT(timestamp, last_timestamp) << "reload " << i;
      last_timestamp = timestamp;
    }
    const auto end = begin + seconds(5);
    waitUntil([&] { return Clock::now() >= end; }, end + milliseconds(50));
    keep_alive.stop();
    fresh.stop();
    EXPECT_EQ(keep_alive.failures(), 0) << keep_alive.firstFailure();
    EXPECT_EQ(fresh.failures(), 0) << fresh.firstFailure();
    EXPECT_GT(keep_alive.ok(), 0);
    EXPECT_GT(fresh.ok(), 0);
    EXPECT_EQ(keep_alive.reconnects(), 0) << "a reload closed a keep-alive connection";
    std::cout << "[ info ] keep-alive requests: " << keep_alive.ok()
              << ", new-connection requests: " << fresh.ok() << std::endl;
  }
  EXPECT_EQ(reloads("success"), kReloads);
  EXPECT_EQ(reloads("failure"), 0);
}

// ---- Drain (SPEC §6, SIGTERM) ---------------------------------------------------------

TEST_F(OperationsTest, InFlightRequestsCompleteAfterSigterm) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  ASSERT_TRUE(upstream_.reset());
  constexpr int kInFlight = 50;
  std::vector<HttpConn> conns;
  conns.reserve(kInFlight);
  for (int i = 0; i < kInFlight; ++i) {
    conns.emplace_back(sluice_.port());
    ASSERT_TRUE(conns.back().connected()) << conns.back().error();
    ASSERT_TRUE(conns.back().send(requestText("GET", "/?delay=1000", sluice_.port())));
  }
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->requests == kInFlight;
      },
      deadlineIn(seconds(5))));
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  int ok = 0;
  for (auto& c : conns) {
    auto r = c.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << c.error();
    EXPECT_TRUE(r->complete) << r->error;
    if (r->status == 200 && r->complete) ++ok;
  }
  EXPECT_EQ(ok, kInFlight);
  EXPECT_EQ(sluice_.process().waitExit(deadlineIn(seconds(5))), 0);
}

TEST_F(OperationsTest, ReadyzIs503WhileDraining) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  auto ready = httpGet(sluice_.adminPort(), "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_THAT(ready->body, HasSubstr("ready"));
  HttpConn in_flight = hangingRequest();
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  EXPECT_TRUE(waitUntil([&] { return readyz() == 503; }, deadlineIn(seconds(2))));
  EXPECT_TRUE(sluice_.process().running()) << "still draining the request in flight";
  in_flight.close();
  EXPECT_EQ(sluice_.process().waitExit(deadlineIn(seconds(5))), 0);
}

TEST_F(OperationsTest, NewConnectionAfterSigtermGetsNoResponse) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  HttpConn in_flight = hangingRequest();
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  ASSERT_TRUE(waitUntil([&] { return readyz() == 503; }, deadlineIn(seconds(2))));
  HttpConn late(sluice_.port(), {}, "127.0.0.1", deadlineIn(seconds(2)));
  if (late.connected()) {  // refused, or accepted by the kernel and then closed
    late.send(requestText("GET", "/", sluice_.port()), deadlineIn(seconds(2)));
    EXPECT_FALSE(late.readResponse(deadlineIn(seconds(2)))) << "a request after SIGTERM was served";
    EXPECT_TRUE(late.isClosedByPeer(deadlineIn(seconds(2))));
  } else {
    // Refused once the listener is closed; reset when the SYN reached the
    // backlog just before it closed. Neither is served.
    EXPECT_THAT(late.error(), AnyOf(HasSubstr("refused"), HasSubstr("reset")));
  }
  EXPECT_TRUE(sluice_.process().running());
  in_flight.close();
  EXPECT_EQ(sluice_.process().waitExit(deadlineIn(seconds(5))), 0);
}

TEST_F(OperationsTest, IdleKeepAliveConnectionsAreClosedOnSigterm) {
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  HttpConn idle(sluice_.port());
  ASSERT_TRUE(idle.connected()) << idle.error();
  ASSERT_TRUE(idle.send(requestText("GET", "/", sluice_.port())));
  auto r = idle.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->header("Connection"), "close");
  HttpConn in_flight = hangingRequest();
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  EXPECT_TRUE(idle.isClosedByPeer(deadlineIn(seconds(2))));
  EXPECT_EQ(idle.buffered(), 0u);
  EXPECT_TRUE(sluice_.process().running()) << "closed by the drain, not by the exit";
  in_flight.close();
  EXPECT_EQ(sluice_.process().waitExit(deadlineIn(seconds(5))), 0);
}

TEST_F(OperationsTest, SecondSigtermExitsAtOnce) {
  // shutdown_grace stays at its 20 s default: only the second signal can end it quickly.
  ASSERT_TRUE(sluice_.start(twoWorkers()));
  HttpConn in_flight = hangingRequest();
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  // The first signal must be handled before the second is sent, or they merge.
  ASSERT_TRUE(waitUntil([&] { return readyz() == 503; }, deadlineIn(seconds(2))));
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  const auto second = Clock::now();
  auto code = sluice_.process().waitExit(second + seconds(1));
  ASSERT_TRUE(code) << "still running 1 s after the second SIGTERM";
  EXPECT_GE(*code, 0) << "killed by a signal instead of exiting";
}

}  // namespace
}  // namespace sluice::testing
