#pragma once
// Data queued for one peer: up to four slices that point into buffers the
// producer keeps alive until they are written (write-through, no copies).

#include <sys/uio.h>

#include <array>
#include <cstddef>

namespace sluice::transport {

enum class IoResult { kDone, kAgain, kError };

struct Outbox {
  std::array<iovec, 4> iov{};
  int count = 0;
  void add(const void* p, std::size_t n) {
    if (n == 0) return;
    iov[static_cast<std::size_t>(count++)] = iovec{const_cast<void*>(p), n};
  }
  bool empty() const { return count == 0; }
  std::size_t bytes() const;
  // Drops the first `n` bytes (they were written).
  void consume(std::size_t n);
};

}  // namespace sluice::transport
