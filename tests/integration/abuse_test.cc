// Key-cardinality abuse against the real binary (SPEC §3, "memory per limit
// stays bounded whatever the client population"): floods of distinct API keys
// and of distinct X-Forwarded-For addresses past limiter.max_keys. The keys
// gauge stays capped, the evictions are counted, RSS plateaus, and a
// legitimate client is still limited exactly. (Header count and request-line
// length abuse, 431 and 414, are in framing_test.cc.)

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Sends `total` requests over `connections` keep-alive connections, each
// pipelining `batch` requests per write and then reading as many responses.
// Request i carries the header `header: value(i)`: every request is a new key.
class PipelinedFlood {
 public:
  struct Result {
    std::int64_t answered = 0;
    std::int64_t ok = 0;     // 200
    std::int64_t other = 0;  // anything else
    std::string error;       // first connection failure, if any
  };

  PipelinedFlood(int port, std::string header, std::function<std::string(std::int64_t)> value,
                 std::int64_t total)
      : port_(port), header_(std::move(header)), value_(std::move(value)), total_(total) {}
  ~PipelinedFlood() {
    for (auto& t : threads_) t.join();
  }
  PipelinedFlood(const PipelinedFlood&) = delete;
  PipelinedFlood& operator=(const PipelinedFlood&) = delete;

  // Starts the sender threads; they stop at `total` or at `deadline`.
  void start(int connections, int batch, Deadline deadline) {
    for (int c = 0; c < connections; ++c) {
      threads_.emplace_back([this, batch, deadline] { run(batch, deadline); });
    }
  }
  // Requests answered so far.
  std::int64_t answered() const { return answered_.load(std::memory_order_relaxed); }
  Result join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::lock_guard lock(mu_);
    Result r = result_;
    r.answered = answered();
    return r;
  }

 private:
  void run(int batch, Deadline deadline) {
    HttpConn conn(port_);
    std::int64_t ok = 0;
    std::int64_t other = 0;
    std::string error;
    if (!conn.connected()) error = conn.error();
    std::string text;
    while (error.empty() && Clock::now() < deadline) {
      std::int64_t first = next_.fetch_add(batch, std::memory_order_relaxed);
      if (first >= total_) break;
      std::int64_t n = std::min<std::int64_t>(batch, total_ - first);
      text.clear();
      for (std::int64_t i = first; i < first + n; ++i) {
        text += "GET / HTTP/1.1\r\nHost: flood\r\n";
        text += header_;
        text += ": ";
        text += value_(i);
        text += "\r\n\r\n";
      }
      if (!conn.send(text, deadline)) {
        error = "send: " + conn.error();
        break;
      }
      for (std::int64_t i = 0; i < n; ++i) {
        auto r = conn.readResponseDiscardBody(deadline);
        if (!r || !r->complete) {
          error = "response " + std::to_string(first + i) + ": " +
                  (r                      ? r->error
                   : conn.error().empty() ? "none"
                                          : conn.error());
          break;
        }
        (r->status == 200 ? ok : other) += 1;
        answered_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    std::lock_guard lock(mu_);
    result_.ok += ok;
    result_.other += other;
    if (result_.error.empty()) result_.error = error;
  }

  int port_;
  std::string header_;
  std::function<std::string(std::int64_t)> value_;
  std::int64_t total_;
  std::atomic<std::int64_t> next_{0};
  std::atomic<std::int64_t> answered_{0};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  Result result_;
};

// What the watcher saw while a flood ran.
struct Watch {
  long rss_before_kb = 0;   // VmRSS before the flood (filled in by the test)
  long rss_at_mark_kb = 0;  // VmRSS at the first sample past `mark` requests
  long rss_max_after_mark_kb = 0;
  long rss_end_kb = 0;
  double max_keys = 0;  // highest sluice_ratelimit_keys{limit=...} scraped
  int scrapes = 0;
};

// Samples sluice's RSS and keys gauge every 100 ms until the flood is done.
Watch watchFlood(PipelinedFlood& flood, const Sluice& sluice, const std::string& limit,
                 std::int64_t mark, std::int64_t total, Deadline deadline) {
  Watch w;
  waitUntil(
      [&] {
        std::int64_t answered = flood.answered();
        if (auto rss = readRssKb(sluice.pid())) {
          if (answered >= mark) {
            if (w.rss_at_mark_kb == 0) w.rss_at_mark_kb = rss->rss_kb;
            w.rss_max_after_mark_kb = std::max(w.rss_max_after_mark_kb, rss->rss_kb);
          }
        }
        if (auto keys =
                scrapeValue(sluice.adminPort(), "sluice_ratelimit_keys", {{"limit", limit}})) {
          w.max_keys = std::max(w.max_keys, *keys);
          ++w.scrapes;
        }
        return answered >= total;
      },
      deadline, milliseconds(100));
  return w;
}

// After the flood: `burst` requests with `headers` pass, the next one is 429.
void expectBurstThen429(int port, const Headers& headers, int burst) {
  HttpConn conn(port);
  ASSERT_TRUE(conn.connected()) << conn.error();
  std::string text;
  for (int i = 0; i <= burst; ++i) text += requestText("GET", "/", port, headers);
  ASSERT_TRUE(conn.send(text));
  for (int i = 0; i <= burst; ++i) {
    auto r = conn.readResponse(deadlineIn(seconds(10)));
    ASSERT_TRUE(r) << "request " << i << ": " << conn.error();
    if (i < burst) {
      EXPECT_EQ(r->status, 200) << "request " << i << " of the burst";
    } else {
      EXPECT_EQ(r->status, 429) << "request " << i << " is past the burst";
      EXPECT_FALSE(r->header("Retry-After").empty());
    }
  }
}

std::string config(int upstream_port, const std::string& rest) {
  return "server:\n"
         "  listen: 127.0.0.1:0\n"
         "  admin_listen: 127.0.0.1:0\n"
         "  workers: 2\n"
         "upstreams:\n"
         "  demo:\n"
         "    targets: [127.0.0.1:" +
         std::to_string(upstream_port) +
         "]\n"
         "routes:\n"
         "  - path_prefix: /\n"
         "    upstream: demo\n" +
         rest;
}

constexpr int kConnections = 8;
constexpr int kBatch = 100;
constexpr int kBurst = 5;

// ---- 5. A million distinct API keys ------------------------------------------------------

TEST(KeyFloodTest, MillionApiKeysStayWithinMaxKeysAndRssPlateaus) {
  constexpr std::int64_t kKeys = 1'000'000;
  constexpr std::int64_t kMaxKeys = 100'000;
  constexpr std::int64_t kMark = 300'000;
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  Sluice sluice;
  // A flood key is used once, so its rate never matters; the slow refill
  // keeps the legitimate client's burst exact. No sweeping during the test:
  // every key beyond max_keys must leave by eviction.
  ASSERT_TRUE(sluice.start(config(upstream.port(),
                                  "    limits: [per_key]\n"
                                  "limits:\n"
                                  "  per_key:\n"
                                  "    per: api_key\n"
                                  "    rate: 1/m\n"
                                  "    burst: 5\n"
                                  "limiter:\n"
                                  "  max_keys: 100000\n"
                                  "  sweep_interval: 1h\n")));
  auto start = Clock::now();
  PipelinedFlood flood(
      sluice.port(), "X-API-Key", [](std::int64_t i) { return "flood-key-" + std::to_string(i); },
      kKeys);
  auto before = readRssKb(sluice.pid());
  ASSERT_TRUE(before);
  Deadline deadline = deadlineIn(seconds(75));
  flood.start(kConnections, kBatch, deadline);
  Watch w = watchFlood(flood, sluice, "per_key", kMark, kKeys, deadline);
  w.rss_before_kb = before->rss_kb;
  auto result = flood.join();
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (auto rss = readRssKb(sluice.pid())) w.rss_end_kb = rss->rss_kb;
  w.rss_max_after_mark_kb = std::max(w.rss_max_after_mark_kb, w.rss_end_kb);

  auto text = scrapeMetrics(sluice.adminPort());
  ASSERT_TRUE(text);
  auto keys = promValue(text->body, "sluice_ratelimit_keys", {{"limit", "per_key"}});
  auto evicted = promValue(text->body, "sluice_ratelimit_evicted_total", {{"limit", "per_key"}});
  std::cout << "[ keys ] " << result.answered << " requests in " << elapsed.count() << " ms; RSS "
            << w.rss_before_kb << " kB before, " << w.rss_at_mark_kb << " kB at " << kMark
            << " keys, max " << w.rss_max_after_mark_kb << " kB after; keys max " << w.max_keys
            << " (" << w.scrapes << " scrapes), final " << keys.value_or(-1) << "; evicted "
            << evicted.value_or(-1) << "\n";

  ASSERT_EQ(result.answered, kKeys) << "flood incomplete: " << result.error;
  EXPECT_EQ(result.ok, kKeys) << "a one-shot key was denied or failed";
  EXPECT_GT(w.scrapes, 0);
  EXPECT_LE(w.max_keys, kMaxKeys);
  ASSERT_TRUE(keys);
  EXPECT_LE(*keys, kMaxKeys);
  EXPECT_GE(*keys, kMaxKeys / 2) << "the table holds far fewer keys than max_keys";
  ASSERT_TRUE(evicted);
  EXPECT_GE(*evicted, static_cast<double>(kKeys - kMaxKeys - 1000));
  EXPECT_LE(*evicted, static_cast<double>(kKeys));
  ASSERT_GT(w.rss_at_mark_kb, 0);
  EXPECT_LT(w.rss_max_after_mark_kb, w.rss_at_mark_kb * 115 / 100)
      << "RSS grew more than 15% after the key table was full";

  expectBurstThen429(sluice.port(), {{"X-API-Key", "legitimate-client"}}, kBurst);
}

// ---- 6. Distinct X-Forwarded-For addresses from a trusted proxy --------------------------

TEST(KeyFloodTest, ForwardedForAddressesFromTrustedProxyStayWithinMaxKeys) {
  constexpr std::int64_t kAddresses = 300'000;
  constexpr std::int64_t kMaxKeys = 50'000;
  constexpr std::int64_t kMark = 100'000;
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  Sluice sluice;
  ASSERT_TRUE(sluice.start(config(upstream.port(),
                                  "    limits: [per_ip]\n"
                                  "clients:\n"
                                  "  trusted_proxies: [127.0.0.1/32]\n"
                                  "limits:\n"
                                  "  per_ip:\n"
                                  "    per: ip\n"
                                  "    rate: 1/m\n"
                                  "    burst: 5\n"
                                  "limiter:\n"
                                  "  max_keys: 50000\n"
                                  "  sweep_interval: 1h\n")));
  auto start = Clock::now();
  // 10.0.0.0/8 host addresses: header text only, never contacted.
  PipelinedFlood flood(
      sluice.port(), "X-Forwarded-For",
      [](std::int64_t i) {
        std::int64_t host = i + 1;
        return "10." + std::to_string((host >> 16) & 255) + "." +
               std::to_string((host >> 8) & 255) + "." + std::to_string(host & 255);
      },
      kAddresses);
  auto before = readRssKb(sluice.pid());
  ASSERT_TRUE(before);
  Deadline deadline = deadlineIn(seconds(40));
  flood.start(kConnections, kBatch, deadline);
  Watch w = watchFlood(flood, sluice, "per_ip", kMark, kAddresses, deadline);
  w.rss_before_kb = before->rss_kb;
  auto result = flood.join();
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (auto rss = readRssKb(sluice.pid())) w.rss_end_kb = rss->rss_kb;
  w.rss_max_after_mark_kb = std::max(w.rss_max_after_mark_kb, w.rss_end_kb);

  auto text = scrapeMetrics(sluice.adminPort());
  ASSERT_TRUE(text);
  auto keys = promValue(text->body, "sluice_ratelimit_keys", {{"limit", "per_ip"}});
  auto evicted = promValue(text->body, "sluice_ratelimit_evicted_total", {{"limit", "per_ip"}});
  std::cout << "[ xff ] " << result.answered << " requests in " << elapsed.count() << " ms; RSS "
            << w.rss_before_kb << " kB before, " << w.rss_at_mark_kb << " kB at " << kMark
            << " addresses, max " << w.rss_max_after_mark_kb << " kB after; keys max " << w.max_keys
            << " (" << w.scrapes << " scrapes), final " << keys.value_or(-1) << "; evicted "
            << evicted.value_or(-1) << "\n";

  ASSERT_EQ(result.answered, kAddresses) << "flood incomplete: " << result.error;
  EXPECT_EQ(result.ok, kAddresses) << "a one-shot address was denied or failed";
  EXPECT_GT(w.scrapes, 0);
  EXPECT_LE(w.max_keys, kMaxKeys);
  ASSERT_TRUE(keys);
  EXPECT_LE(*keys, kMaxKeys);
  EXPECT_GE(*keys, kMaxKeys / 2) << "the table holds far fewer keys than max_keys";
  ASSERT_TRUE(evicted);
  EXPECT_GE(*evicted, static_cast<double>(kAddresses - kMaxKeys - 1000));
  EXPECT_LE(*evicted, static_cast<double>(kAddresses));
  ASSERT_GT(w.rss_at_mark_kb, 0);
  EXPECT_LT(w.rss_max_after_mark_kb, w.rss_at_mark_kb * 115 / 100)
      << "RSS grew more than 15% after the key table was full";

  // The forwarded address is the client: its own bucket, exact burst.
  expectBurstThen429(sluice.port(), {{"X-Forwarded-For", "192.0.2.77"}}, kBurst);
}

}  // namespace
}  // namespace sluice::testing
