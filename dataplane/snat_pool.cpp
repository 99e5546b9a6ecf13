#include "snat_pool.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>

namespace nplb {
namespace {

uint32_t pool_key_hash(const SnatPoolKey& k) {
  uint64_t a, b;
  std::memcpy(&a, &k, 8);
  uint32_t tail;
  std::memcpy(&tail, reinterpret_cast<const uint8_t*>(&k) + 8, 4);
  b = tail;
  uint64_t h = (a ^ b * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;  // fold the high half down: the index mask keeps only low bits
  h *= 0x94d049bb133111ebull;
  return static_cast<uint32_t>(h >> 32);
}

}  // namespace

void snat_slice(uint16_t first, uint16_t last, uint32_t worker, uint32_t workers, uint16_t& slice_first,
                uint16_t& slice_last) {
  uint32_t size = uint32_t(last) - first + 1;
  uint32_t per = size / workers;
  slice_first = static_cast<uint16_t>(first + per * worker);
  slice_last = static_cast<uint16_t>(worker + 1 == workers ? last : slice_first + per - 1);
}

SnatPorts::SnatPorts(uint16_t first, uint16_t last, uint32_t max_pools)
    : first_(first), slice_size_(uint32_t(last) - first + 1), max_pools_(max_pools) {
  if (last < first || max_pools == 0) throw std::invalid_argument("empty SNAT port slice or pool table");
  if (max_pools > 65535) throw std::invalid_argument("more than 65535 SNAT pools (flow entries hold 16-bit pool ids)");
  uint32_t index_size = std::bit_ceil(max_pools * 2);
  index_mask_ = index_size - 1;
  pools_.reset(new Pool[max_pools]);
  index_.reset(new uint32_t[index_size]());
  bits_.reset(new uint64_t[uint64_t(max_pools) * words_per_pool()]());
}

uint32_t SnatPorts::pool_for(const SnatPoolKey& key) {
  for (uint32_t i = pool_key_hash(key) & index_mask_;; i = (i + 1) & index_mask_) {
    uint32_t slot = index_[i];
    if (slot == 0) {
      if (used_pools_ == max_pools_) return kNoPool;
      uint32_t pool = used_pools_++;
      pools_[pool].key = key;
      pools_[pool].live = true;
      index_[i] = pool + 1;
      // Ports past the slice's end in the last word are never handed out.
      uint64_t* words = bitmap(pool);
      uint32_t tail = slice_size_ % 64;
      if (tail) words[words_per_pool() - 1] = ~0ull << tail;
      return pool;
    }
    if (pools_[slot - 1].key == key) return slot - 1;
  }
}

uint16_t SnatPorts::acquire(uint32_t pool) {
  Pool& p = pools_[pool];
  if (p.in_use == slice_size_) return 0;
  uint64_t* words = bitmap(pool);
  uint32_t n = words_per_pool();
  for (uint32_t step = 0; step < n; ++step) {
    uint32_t w = (p.cursor + step) % n;
    if (words[w] == ~0ull) continue;
    int bit = std::countr_one(words[w]);
    words[w] |= 1ull << bit;
    p.cursor = w;
    ++p.in_use;
    return static_cast<uint16_t>(first_ + w * 64 + bit);
  }
  return 0;
}

void SnatPorts::release(uint32_t pool, uint16_t port) {
  if (pool >= used_pools_ || port < first_ || uint32_t(port - first_) >= slice_size_) return;
  uint32_t offset = port - first_;
  uint64_t& word = bitmap(pool)[offset / 64];
  uint64_t mask = 1ull << (offset % 64);
  if (word & mask) {
    word &= ~mask;
    --pools_[pool].in_use;
  }
}

uint32_t SnatPorts::in_use(uint32_t pool) const { return pools_[pool].in_use; }

}  // namespace nplb
