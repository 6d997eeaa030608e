#pragma once
// Helpers shared by the libFuzzer targets: a failing check that aborts (so
// libFuzzer records a crash even in builds without assert), and the split
// schedule that decides how many bytes each simulated socket read delivers.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace sluice::fuzz {

[[noreturn]] inline void checkFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, expr);
  std::abort();
}

// Like assert, but active in every build type: an invariant the fuzzer must
// never break.
#define FUZZ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::sluice::fuzz::checkFailed(#cond, __FILE__, __LINE__))

// Input layout of the stream targets: a 4-byte prefix that drives the run,
// then the bytes of the stream.
//   byte 0   flags for the target (e.g. "this response answers a HEAD")
//   byte 1   largest read size; 0 delivers everything in one read
//   byte 2-3 seed of the read sizes
struct StreamInput {
  std::uint8_t flags = 0;
  std::string_view bytes;
  std::uint32_t max_read = 0;
  std::uint32_t seed = 0;

  static StreamInput from(const std::uint8_t* data, std::size_t size) {
    StreamInput in;
    if (size < 4) return in;
    in.flags = data[0];
    in.max_read = data[1];
    in.seed = static_cast<std::uint32_t>(data[2]) | (static_cast<std::uint32_t>(data[3]) << 8);
    in.bytes = std::string_view(reinterpret_cast<const char*>(data) + 4, size - 4);
    return in;
  }
};

// Sizes of successive reads, each in [1, max_read], from a small LCG: the
// fuzzer steers the cut points through the seed and the bound.
class ReadSchedule {
 public:
  ReadSchedule(std::uint32_t max_read, std::uint32_t seed) : max_(max_read), state_(seed) {}

  // Bytes the next read delivers, at most `left`.
  std::uint32_t next(std::uint32_t left) {
    if (max_ == 0) return left;
    state_ = state_ * 1103515245u + 12345u;
    const std::uint32_t n = 1 + (state_ >> 16) % max_;
    return n < left ? n : left;
  }

  // A pseudo-random bit, for per-message choices.
  bool bit() {
    state_ = state_ * 1103515245u + 12345u;
    return ((state_ >> 20) & 1u) != 0;
  }

 private:
  std::uint32_t max_;
  std::uint32_t state_;
};

}  // namespace sluice::fuzz
