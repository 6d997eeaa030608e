#pragma once
// Counters bumped on every decision by every worker: each thread adds to its
// own cache line (one of kStripes), readers sum the stripes. Avoids a shared
// atomic bouncing between cores on the hot path.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::limiter {

// The calling thread's stripe number (assigned round-robin on first use).
inline std::size_t threadStripe() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

template <std::size_t N>
class StripedCounters {
 public:
  // Adds `n` to counter `which` (< N).
  void add(std::size_t which, std::uint64_t n = 1) noexcept {
    cells_[threadStripe() % kStripes].value[which].fetch_add(n, std::memory_order_relaxed);
  }

  // The total of counter `which` over all threads (monotonic, maybe a little stale).
  std::uint64_t sum(std::size_t which) const noexcept {
    std::uint64_t total = 0;
    for (const Cell& cell : cells_) total += cell.value[which].load(std::memory_order_relaxed);
    return total;
  }

 private:
  static constexpr std::size_t kStripes = 16;
  struct alignas(64) Cell {
    std::array<std::atomic<std::uint64_t>, N> value{};
  };
  std::array<Cell, kStripes> cells_{};
};

}  // namespace sluice::limiter
