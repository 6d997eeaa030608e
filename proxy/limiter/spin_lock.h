#pragma once
// A test-and-test-and-set lock for very short critical sections (one bucket
// lookup). Yields after a short spin so an oversubscribed machine (more
// threads than cores) does not burn the holder's time slice.

#include <atomic>
#include <thread>

namespace sluice::limiter {

class SpinLock {
 public:
  // Blocks until the lock is held by the caller.
  void lock() noexcept {
    for (int spins = 0;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
          pause();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }

  // Releases a lock taken with lock().
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  std::atomic<bool> locked_{false};
};

}  // namespace sluice::limiter
