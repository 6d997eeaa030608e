#pragma once
// Time source. Only clock.cc reads the real clock; everything else takes a
// Clock& or a Nanos value so tests can move time by hand.

#include <atomic>
#include <cstdint>

namespace sluice::event {

using Nanos = std::int64_t;
inline constexpr Nanos kNanosPerSecond = 1000000000LL;
inline constexpr Nanos kNanosPerMilli = 1000000LL;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time in nanoseconds since an arbitrary origin.
  virtual Nanos now() const = 0;
  // Wall-clock seconds since the epoch, for log timestamps and metrics.
  virtual double wallSeconds() const = 0;
};

// CLOCK_MONOTONIC; the only real time source of the proxy.
class SteadyClock final : public Clock {
 public:
  Nanos now() const override;
  double wallSeconds() const override;
};

// A clock tests move by hand; thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(Nanos start = 0) : now_(start) {}
  Nanos now() const override { return now_.load(std::memory_order_acquire); }
  // Wall time moves with now(), from a fixed origin (2023-11-14T22:13:20Z).
  double wallSeconds() const override { return 1.7e9 + static_cast<double>(now()) / 1e9; }
  void advance(Nanos d) { now_.fetch_add(d, std::memory_order_acq_rel); }
  void set(Nanos t) { now_.store(t, std::memory_order_release); }

 private:
  std::atomic<Nanos> now_;
};

}  // namespace sluice::event
