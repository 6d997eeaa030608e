#include "proxy/client/key_hash.h"

#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <set>
#include <string>

namespace sluice::client {
namespace {

TEST(KeyHash, FingerprintIsStableAcrossRuns) {
  // Pinned: /limits output and logs must not change between releases.
  EXPECT_EQ(fingerprint("partner-123"), fingerprint(hashApiKey("partner-123")));
  EXPECT_EQ(fingerprint("partner-123").size(), 8U);
  EXPECT_EQ(fingerprint("partner-123"), "254949b1");
}

TEST(KeyHash, FingerprintIsLowercaseHex) {
  for (const char* key : {"", "a", "partner-123", "another key"}) {
    std::string fp = fingerprint(key);
    ASSERT_EQ(fp.size(), 8U);
    for (char c : fp) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << fp;
  }
}

TEST(KeyHash, DistinctKeysDoNotCollide) {
  std::set<KeyHash> seen;
  std::size_t n = 0;
  // Every string of length 0..2, then many similar ones.
  seen.insert(hashApiKey(""));
  ++n;
  for (int a = 0; a < 256; ++a) {
    std::string one(1, static_cast<char>(a));
    seen.insert(hashApiKey(one));
    ++n;
    for (int b = 0; b < 256; ++b) {
      seen.insert(hashApiKey(one + static_cast<char>(b)));
      ++n;
    }
  }
  for (int i = 0; i < 100000; ++i) {
    seen.insert(hashApiKey("key-" + std::to_string(i)));
    const std::string padding(static_cast<std::size_t>(i % 300), 'x');
    seen.insert(hashApiKey("k:" + padding + std::to_string(i)));
    n += 2;
  }
  EXPECT_EQ(seen.size(), n);
}

TEST(KeyHash, TrailingZeroBytesChangeTheHash) {
  using namespace std::string_literals;
  EXPECT_NE(hashApiKey(""), hashApiKey("\0"s));
  EXPECT_NE(hashApiKey("a"), hashApiKey("a\0"s));
  EXPECT_NE(hashApiKey("abcdefgh"), hashApiKey("abcdefgh\0"s));
}

TEST(KeyHash, OneBitFlipChangesAboutHalfTheOutput) {
  std::mt19937_64 rng(7);
  int total = 0;
  int trials = 0;
  for (int t = 0; t < 200; ++t) {
    std::string key(1 + rng() % 40, '\0');
    for (char& c : key) c = static_cast<char>(rng());
    const KeyHash base = hashApiKey(key);
    std::string flipped = key;
    const std::size_t bit = rng() % (key.size() * 8);
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    const KeyHash other = hashApiKey(flipped);
    const int diff = std::popcount(base.hi ^ other.hi) + std::popcount(base.lo ^ other.lo);
    EXPECT_GT(diff, 30);
    EXPECT_LT(diff, 98);
    total += diff;
    ++trials;
  }
  EXPECT_NEAR(static_cast<double>(total) / trials, 64.0, 4.0);
}

TEST(KeyHash, IpKeysInvertAndNeverEqualApiKeysOfTheSameBytes) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 1000; ++i) {
    IpAddr ip{};
    for (auto& byte : ip) byte = static_cast<std::uint8_t>(rng());
    const KeyHash key = hashIpKey(ip);
    EXPECT_EQ(ipFromKey(key), ip);
    const std::string bytes(reinterpret_cast<const char*>(ip.data()), ip.size());
    EXPECT_NE(key, hashApiKey(bytes));
  }
}

TEST(KeyHash, NeighbouringIpsSpreadOut) {
  std::set<std::uint64_t> low_bits;
  IpAddr ip{};
  ip[10] = 0xff;
  ip[11] = 0xff;
  for (int i = 0; i < 4096; ++i) {
    ip[14] = static_cast<std::uint8_t>(i >> 8);
    ip[15] = static_cast<std::uint8_t>(i);
    low_bits.insert(hashIpKey(ip).lo & 0xffff);
  }
  EXPECT_GT(low_bits.size(), 3800U);  // ~3969 expected for random 16-bit values
}

}  // namespace
}  // namespace sluice::client
