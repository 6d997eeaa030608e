#pragma once
// Keyed bucket storage shared by all workers (SPEC §3: sweeping, max_keys).
//
// Layout: 2^k shards (1..64), each behind its own SpinLock, no global lock.
// A shard keeps its entries in a slab of fixed-size chunks (entry addresses
// never move) and finds them through an open-addressing index of 8-byte cells
// (32-bit hash tag + slot), linear probing with backward-shift deletion, load
// factor <= 3/4. Inserting into a full shard evicts an approximately least
// recently used entry by CLOCK (second chance): a use sets the entry's
// referenced bit, on the cache line the decision writes anyway; the shard's
// hand clears set bits and evicts the first clear one. New keys start clear,
// so a flood of one-shot keys evicts itself before clients that come back.
// (Exact LRU relinking cost two extra cache misses per cold-key decision.)
// 48 bytes per entry + 11..21 bytes of index per key.
//
// Bucket state is mutated only under the shard lock: lookup and eviction need the
// lock anyway, and holding it makes the take / roll-back pair of a decision
// safe against the slot being reused for another key in between.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "proxy/client/key_hash.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/spin_lock.h"

namespace sluice::limiter {

// Packed bucket state: the TAT in the high 62 bits, and in the low 2 bits the
// generation tag of the params the TAT is expressed in (see Limit: a reload
// re-expresses buckets under the new rate and burst). TATs are clamped to
// +-2^61 ns (73 years), which bounds `now` to [0, 2^60) ns for exactness.
inline constexpr int kTagBits = 2;
inline constexpr std::uint32_t kTagMask = (1U << kTagBits) - 1;
inline constexpr Nanos kMaxStoredTat = (Nanos{1} << 61) - 1;
inline constexpr Nanos kMinStoredTat = -(Nanos{1} << 61);  // full since forever

// Packs a TAT (clamped) and a generation tag.
constexpr std::int64_t packState(Nanos tat, std::uint32_t tag) {
  const Nanos clamped = std::clamp(tat, kMinStoredTat, kMaxStoredTat);
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(clamped) << kTagBits) |
                                   (tag & kTagMask));
}
// The TAT of a packed state.
constexpr Nanos stateTat(std::int64_t state) { return state >> kTagBits; }
// The generation tag of a packed state.
constexpr std::uint32_t stateTag(std::int64_t state) {
  return static_cast<std::uint32_t>(state) & kTagMask;
}

struct Entry {
  client::KeyHash key;
  std::int64_t state = 0;       // packState(tat, tag)
  std::uint64_t allowed = 0;    // decisions since the entry was created
  std::uint64_t denied = 0;     // (denied and shadow-denied)
  std::uint32_t next_free = 0;  // free-list link while the slot is free
  std::uint8_t live = 0;        // the slot holds a key
  std::uint8_t referenced = 0;  // used since the CLOCK hand last passed
};

class KeyTable {
 public:
  // Up to `max_keys` (>= 1) entries; `seed` randomises placement so crafted
  // keys cannot pile into one probe sequence.
  KeyTable(std::int64_t max_keys, std::uint64_t seed);
  ~KeyTable();
  KeyTable(const KeyTable&) = delete;
  KeyTable& operator=(const KeyTable&) = delete;

  // Calls fn(Entry&) under the key's shard lock, first inserting the key with
  // state `fresh` when absent (evicting a least recently used entry of the
  // shard when it is full), and marks it used. Returns fn's result.
  template <typename Fn>
  decltype(auto) update(const client::KeyHash& key, std::int64_t fresh, Fn&& fn) {
    const std::uint64_t mixed = mix(key);
    Shard& shard = shardOf(mixed);
    std::lock_guard guard(shard.lock);
    return fn(shard.at(shard.findOrInsert(key, static_cast<std::uint32_t>(mixed), fresh)));
  }

  // Calls fn(Entry&) under the lock when the key is present (not marked
  // used); returns whether it was.
  template <typename Fn>
  bool updateExisting(const client::KeyHash& key, Fn&& fn) {
    const std::uint64_t mixed = mix(key);
    Shard& shard = shardOf(mixed);
    std::lock_guard guard(shard.lock);
    const std::uint32_t slot = shard.find(key, static_cast<std::uint32_t>(mixed));
    if (slot == kNil) return false;
    fn(shard.at(slot));
    return true;
  }

  // Calls fn(Entry&) for every entry, holding one shard lock for at most
  // kSliceSlots slots at a time (entries inserted meanwhile may be missed).
  template <typename Fn>
  void forEach(Fn&& fn) {
    for (std::size_t s = 0; s < shard_count_; ++s) {
      Shard& shard = shards_[s];
      for (std::uint32_t start = 0;; start += kSliceSlots) {
        std::lock_guard guard(shard.lock);
        if (start >= shard.slots) break;
        const std::uint32_t end = std::min(shard.slots, start + kSliceSlots);
        for (std::uint32_t slot = start; slot < end; ++slot) {
          Entry& entry = shard.at(slot);
          if (entry.live) fn(entry);
        }
      }
    }
  }

  // Removes entries whose bucket is full at `now`, examining at most
  // `max_slots` slots from where the previous call stopped (wrapping around);
  // returns how many were removed. Never holds a lock over kSliceSlots slots.
  std::size_t sweep(Nanos now, std::size_t max_slots);

  // Changes the key limit; shards above the new one evict down to it now.
  void setMaxKeys(std::int64_t max_keys);

  // Entries held now.
  std::size_t size() const;
  // Entries evicted to make room since the table was created.
  std::uint64_t evicted() const;
  // Entries removed by sweep() since the table was created.
  std::uint64_t swept() const { return swept_.load(std::memory_order_relaxed); }
  // Slots the sweeper cycles through (a full pass examines this many).
  std::size_t slotCount() const;
  // Bytes allocated for entries and index (excludes the fixed shard array).
  std::size_t memoryBytes() const;
  // Number of shards (a power of two in [1, 64]).
  std::size_t shardCount() const { return shard_count_; }

  static constexpr std::uint32_t kSliceSlots = 1024;

 private:
  static constexpr std::uint32_t kNil = 0xffffffffU;
  static constexpr int kChunkBits = 8;  // 256 entries (12 KiB) per slab chunk
  static constexpr std::uint32_t kChunkSize = 1U << kChunkBits;

  struct alignas(64) Shard {
    SpinLock lock;
    std::uint64_t seed = 0;
    std::uint32_t capacity = 1;        // most entries held
    std::uint32_t count = 0;           // entries held
    std::uint32_t slots = 0;           // slots handed out (slab high-water mark)
    std::uint32_t free_head = kNil;    // free slots, linked through Entry::next_free
    std::uint32_t hand = 0;            // CLOCK hand: next slot considered for eviction
    std::vector<std::uint64_t> index;  // (tag << 32) | (slot + 1); 0 = empty
    std::vector<std::unique_ptr<Entry[]>> chunks;
    std::atomic<std::uint32_t> published_count{0};  // count, for lock-free readers
    std::atomic<std::uint64_t> evicted{0};          // written under the lock

    Entry& at(std::uint32_t slot) { return chunks[slot >> kChunkBits][slot & (kChunkSize - 1)]; }
    std::uint32_t find(const client::KeyHash& key, std::uint32_t tag);
    std::uint32_t findOrInsert(const client::KeyHash& key, std::uint32_t tag, std::int64_t fresh);
    void remove(std::uint32_t slot);
    void evictOne();
    void growIndex();
    void insertIndex(std::uint32_t tag, std::uint32_t slot);
    std::uint32_t tagOf(const client::KeyHash& key) const;
  };

  static std::uint64_t mixWith(const client::KeyHash& key, std::uint64_t seed);
  std::uint64_t mix(const client::KeyHash& key) const { return mixWith(key, seed_); }
  Shard& shardOf(std::uint64_t mixed) { return shards_[(mixed >> 58) & (shard_count_ - 1)]; }

  std::uint64_t seed_;
  std::size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
  std::mutex sweep_mutex_;  // guards the sweep cursor
  std::size_t sweep_shard_ = 0;
  std::uint32_t sweep_slot_ = 0;
  std::atomic<std::uint64_t> swept_{0};
};

}  // namespace sluice::limiter
