#include "proxy/limiter/key_table.h"

#include <bit>
#include <cassert>

namespace sluice::limiter {
namespace {

std::uint32_t perShardCapacity(std::int64_t max_keys, std::size_t shards) {
  const std::int64_t per = std::max<std::int64_t>(1, max_keys) / static_cast<std::int64_t>(shards);
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(per, 1, std::int64_t{1} << 30));
}

}  // namespace

KeyTable::KeyTable(std::int64_t max_keys, std::uint64_t seed) : seed_(seed) {
  // Enough shards to spread workers, but at least 256 keys per shard so the
  // per-shard eviction stays close to a global one (small tables: one shard).
  const auto per256 = static_cast<std::uint64_t>(std::max<std::int64_t>(1, max_keys / 256));
  shard_count_ = std::clamp<std::size_t>(std::bit_floor(per256), 1, 64);
  shards_ = std::make_unique<Shard[]>(shard_count_);
  const std::uint32_t capacity = perShardCapacity(max_keys, shard_count_);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    shards_[s].seed = seed;
    shards_[s].capacity = capacity;
  }
}

KeyTable::~KeyTable() = default;

std::uint64_t KeyTable::mixWith(const client::KeyHash& key, std::uint64_t seed) {
  // Keys are already well mixed; the seeded multiply-xorshift makes the shard
  // and home slot unpredictable to whoever chose the key.
  std::uint64_t x = key.lo ^ seed ^ (key.hi * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  return x;
}

std::uint32_t KeyTable::Shard::tagOf(const client::KeyHash& key) const {
  return static_cast<std::uint32_t>(mixWith(key, seed));
}

std::uint32_t KeyTable::Shard::find(const client::KeyHash& key, std::uint32_t tag) {
  if (index.empty()) return kNil;
  const auto mask = static_cast<std::uint32_t>(index.size() - 1);
  for (std::uint32_t i = tag & mask;; i = (i + 1) & mask) {
    const std::uint64_t cell = index[i];
    if (cell == 0) return kNil;
    if (static_cast<std::uint32_t>(cell >> 32) == tag) {
      const auto slot = static_cast<std::uint32_t>(cell) - 1;
      if (at(slot).key == key) return slot;
    }
  }
}

void KeyTable::Shard::insertIndex(std::uint32_t tag, std::uint32_t slot) {
  const auto mask = static_cast<std::uint32_t>(index.size() - 1);
  std::uint32_t i = tag & mask;
  while (index[i] != 0) i = (i + 1) & mask;
  index[i] = (static_cast<std::uint64_t>(tag) << 32) | (static_cast<std::uint64_t>(slot) + 1);
}

void KeyTable::Shard::growIndex() {
  std::vector<std::uint64_t> old = std::move(index);
  index.assign(old.empty() ? 16 : old.size() * 2, 0);
  for (std::uint64_t cell : old) {
    if (cell != 0) {
      insertIndex(static_cast<std::uint32_t>(cell >> 32), static_cast<std::uint32_t>(cell) - 1);
    }
  }
}

void KeyTable::Shard::remove(std::uint32_t slot) {
  Entry& e = at(slot);
  const std::uint32_t tag = tagOf(e.key);
  const auto mask = static_cast<std::uint32_t>(index.size() - 1);
  const std::uint64_t want = static_cast<std::uint64_t>(slot) + 1;
  std::uint32_t hole = tag & mask;
  while ((index[hole] & 0xffffffffULL) != want) hole = (hole + 1) & mask;
  // Backward-shift deletion: pull later cells of the cluster into the hole
  // when their home position does not lie cyclically in (hole, j].
  for (std::uint32_t j = (hole + 1) & mask; index[j] != 0; j = (j + 1) & mask) {
    const std::uint32_t home = static_cast<std::uint32_t>(index[j] >> 32) & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      index[hole] = index[j];
      hole = j;
    }
  }
  index[hole] = 0;
  e.live = 0;
  e.next_free = free_head;
  free_head = slot;
  --count;
  published_count.store(count, std::memory_order_relaxed);
}

void KeyTable::Shard::evictOne() {
  assert(count > 0);
  // Terminates within two turns: the first clears every referenced bit.
  for (;; ++hand) {
    if (hand >= slots) hand = 0;
    Entry& e = at(hand);
    if (!e.live) continue;
    if (e.referenced) {
      e.referenced = 0;
      continue;
    }
    remove(hand++);
    evicted.store(evicted.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
}

std::uint32_t KeyTable::Shard::findOrInsert(const client::KeyHash& key, std::uint32_t tag,
                                            std::int64_t fresh) {
  std::uint32_t slot = find(key, tag);
  if (slot != kNil) {
    Entry& e = at(slot);
    if (!e.referenced) e.referenced = 1;
    return slot;
  }
  while (count >= capacity) evictOne();
  if ((static_cast<std::uint64_t>(count) + 1) * 4 > static_cast<std::uint64_t>(index.size()) * 3) {
    growIndex();
  }
  if (free_head != kNil) {
    slot = free_head;
    free_head = at(slot).next_free;
  } else {
    slot = slots++;
    if ((slot >> kChunkBits) >= chunks.size())
      chunks.push_back(std::make_unique<Entry[]>(kChunkSize));
  }
  Entry& e = at(slot);
  e.key = key;
  e.state = fresh;
  e.allowed = 0;
  e.denied = 0;
  e.live = 1;
  e.referenced = 0;
  insertIndex(tag, slot);
  ++count;
  published_count.store(count, std::memory_order_relaxed);
  return slot;
}

std::size_t KeyTable::sweep(Nanos now, std::size_t max_slots) {
  std::lock_guard cursor_guard(sweep_mutex_);
  std::size_t examined = 0;
  std::size_t removed = 0;
  while (examined < max_slots) {
    Shard& shard = shards_[sweep_shard_];
    bool at_end = false;
    {
      std::lock_guard guard(shard.lock);
      const std::uint32_t budget =
          static_cast<std::uint32_t>(std::min<std::size_t>(kSliceSlots, max_slots - examined));
      const std::uint32_t start = std::min(sweep_slot_, shard.slots);
      const std::uint32_t end = std::min(shard.slots, start + budget);
      for (std::uint32_t slot = start; slot < end; ++slot) {
        const Entry& e = shard.at(slot);
        if (e.live && isFull(stateTat(e.state), now)) {
          shard.remove(slot);
          ++removed;
        }
      }
      examined += end - start;
      sweep_slot_ = end;
      at_end = end >= shard.slots;
    }
    if (at_end) {
      ++examined;  // moving on costs a step, so an empty table ends too
      sweep_shard_ = (sweep_shard_ + 1) % shard_count_;
      sweep_slot_ = 0;
    }
  }
  swept_.fetch_add(removed, std::memory_order_relaxed);
  return removed;
}

void KeyTable::setMaxKeys(std::int64_t max_keys) {
  const std::uint32_t capacity = perShardCapacity(max_keys, shard_count_);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& shard = shards_[s];
    std::lock_guard guard(shard.lock);
    shard.capacity = capacity;
    while (shard.count > shard.capacity) shard.evictOne();
  }
}

std::size_t KeyTable::size() const {
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    total += shards_[s].published_count.load(std::memory_order_relaxed);
  }
  return total;
}

std::uint64_t KeyTable::evicted() const {
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    total += shards_[s].evicted.load(std::memory_order_relaxed);
  }
  return total;
}

std::size_t KeyTable::slotCount() const {
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard guard(shards_[s].lock);
    total += shards_[s].slots;
  }
  return total;
}

std::size_t KeyTable::memoryBytes() const {
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard guard(shards_[s].lock);
    total += shards_[s].index.capacity() * sizeof(std::uint64_t) +
             shards_[s].chunks.size() * (kChunkSize * sizeof(Entry) + sizeof(void*));
  }
  return total;
}

}  // namespace sluice::limiter
