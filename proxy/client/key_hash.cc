#include "proxy/client/key_hash.h"

#include <bit>
#include <cstring>

namespace sluice::client {
namespace {

constexpr std::uint64_t kMulA = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio
constexpr std::uint64_t kMulB = 0xd6e8feb86659fd93ULL;
constexpr std::uint64_t kMulC = 0xa0761d6478bd642fULL;

// A bijective 64-bit finaliser (xorshift-multiply); every output bit depends on every input bit.
constexpr std::uint64_t scramble(std::uint64_t x) {
  x ^= x >> 32;
  x *= kMulB;
  x ^= x >> 29;
  x *= kMulC;
  x ^= x >> 32;
  return x;
}

std::uint64_t loadLittle(const char* p, std::size_t n) {
  std::uint64_t word = 0;
  std::memcpy(&word, p, n);
  if constexpr (std::endian::native == std::endian::big) word = __builtin_bswap64(word);
  return word;
}

std::uint64_t loadBig(const std::uint8_t* p) {
  std::uint64_t word = 0;
  for (int i = 0; i < 8; ++i) word = (word << 8) | p[i];
  return word;
}

void storeBig(std::uint64_t word, std::uint8_t* p) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(word);
    word >>= 8;
  }
}

// Scope tags: API keys and IP keys go through different functions with
// different constants, so equal bytes in the two scopes give unrelated keys.
constexpr std::uint64_t kApiKeySeed = 0x61706b65795f7631ULL;  // "apkey_v1"
constexpr std::uint64_t kIpTagHi = 0x69706b65795f7631ULL;     // "ipkey_v1"
constexpr std::uint64_t kIpTagLo = 0x5f7363616d626c65ULL;

// Round function of the 4-round Feistel network used for IP keys.
constexpr std::uint64_t feistel(std::uint64_t half, std::uint64_t round) {
  return scramble(half + round * kMulA);
}

}  // namespace

KeyHash hashBytes(std::string_view bytes, std::uint64_t seed) {
  // Two lanes with different update functions, each a bijection of its state
  // for a fixed input word, so inputs of equal length that differ in one word
  // always differ in both lanes; the length seeds lane b.
  const std::uint64_t len = bytes.size();
  std::uint64_t a = seed ^ kMulC;
  std::uint64_t b = std::rotl(seed, 32) ^ (len * kMulA) ^ kMulB;
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left >= 8) {
    const std::uint64_t w = loadLittle(p, 8);
    a = (a ^ w) * kMulA;
    a ^= a >> 31;
    b = std::rotl(b + w, 27) * kMulB;
    p += 8;
    left -= 8;
  }
  if (left > 0) {
    const std::uint64_t w = loadLittle(p, left);
    a = (a ^ w) * kMulA;
    a ^= a >> 31;
    b = std::rotl(b + w, 27) * kMulB;
  }
  a += b;
  b += a;
  a = scramble(a);
  b = scramble(b ^ kMulA);
  a += b;
  b += a;
  return {a, b};
}

KeyHash hashApiKey(std::string_view api_key) { return hashBytes(api_key, kApiKeySeed); }

KeyHash hashIpKey(const IpAddr& masked) {
  std::uint64_t x = loadBig(masked.data()) ^ kIpTagHi;
  std::uint64_t y = loadBig(masked.data() + 8) ^ kIpTagLo;
  y ^= feistel(x, 1);
  x ^= feistel(y, 2);
  y ^= feistel(x, 3);
  x ^= feistel(y, 4);
  return {x, y};
}

IpAddr ipFromKey(const KeyHash& key) {
  std::uint64_t x = key.hi;
  std::uint64_t y = key.lo;
  x ^= feistel(y, 4);
  y ^= feistel(x, 3);
  x ^= feistel(y, 2);
  y ^= feistel(x, 1);
  IpAddr ip{};
  storeBig(x ^ kIpTagHi, ip.data());
  storeBig(y ^ kIpTagLo, ip.data() + 8);
  return ip;
}

std::string fingerprint(const KeyHash& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(8, '0');
  auto top = static_cast<std::uint32_t>(key.hi >> 32);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kHex[top & 0xf];
    top >>= 4;
  }
  return out;
}

std::string fingerprint(std::string_view api_key) { return fingerprint(hashApiKey(api_key)); }

}  // namespace sluice::client
