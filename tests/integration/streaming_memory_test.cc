// Bodies are streamed, never buffered whole (SPEC §5): 256 MiB in each
// direction through sluice while its peak resident set stays far below that.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;

constexpr std::uint64_t kBodySize = 256ull << 20;
constexpr long kMaxPeakKb = 64 * 1024;

class StreamingMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start());
    ConfigOptions options;
    options.server = "workers: 2\nmax_body_bytes: 1GiB\n";
    ASSERT_TRUE(sluice_.start(minimalConfig(upstream_.port(), options)));
  }
  DemoUpstream upstream_;
  Sluice sluice_;
};

TEST_F(StreamingMemoryTest, Download256MiBKeepsPeakRssUnder64MiB) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/?size=" + std::to_string(kBodySize), sluice_.port())));
  auto r = conn.readResponseDiscardBody(deadlineIn(seconds(20)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_EQ(r->body_bytes, kBodySize);
  auto rss = readRssKb(sluice_.pid());
  ASSERT_TRUE(rss);
  EXPECT_LT(rss->hwm_kb, kMaxPeakKb) << "sluice buffered the response body";
}

TEST_F(StreamingMemoryTest, Upload256MiBKeepsPeakRssUnder64MiB) {
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  auto deadline = deadlineIn(seconds(20));
  ASSERT_TRUE(conn.send(requestText("POST", "/upload", sluice_.port(),
                                    {{"Content-Length", std::to_string(kBodySize)}}),
                        deadline));
  const std::string piece(1 << 20, 'u');
  for (std::uint64_t sent = 0; sent < kBodySize; sent += piece.size()) {
    ASSERT_TRUE(conn.send(piece, deadline)) << "after " << sent << " bytes: " << conn.error();
  }
  auto r = conn.readResponse(deadline);
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "received " + std::to_string(kBodySize) + " bytes\n");
  auto rss = readRssKb(sluice_.pid());
  ASSERT_TRUE(rss);
  EXPECT_LT(rss->hwm_kb, kMaxPeakKb) << "sluice buffered the request body";
}

}  // namespace
}  // namespace sluice::testing
