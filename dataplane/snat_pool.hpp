// SNAT source ports, managed per (SNAT address, backend address, backend
// port, protocol): a reply is told apart by its full 5-tuple, so the same
// source port may serve one connection to each backend. Each worker owns the
// ports in its slice of the configured range, so workers never collide and
// need no shared state. A pool is a bitmap over the slice with a next-fit
// cursor; pools are created on first use from a fixed-capacity table sized at
// start (no heap on the fast path).
//
// Sizing: one worker can hold at most slice_size connections to one backend
// per SNAT address. With the default range 1024-65535 and W workers that is
// 64512 / W per (SNAT address, backend); add SNAT addresses to go beyond.
#pragma once

#include <cstdint>
#include <memory>

namespace nplb {

struct SnatPoolKey {
  uint32_t snat_be = 0;
  uint32_t backend_be = 0;
  uint16_t backend_port_be = 0;
  uint8_t protocol = 0;
  uint8_t pad = 0;
  bool operator==(const SnatPoolKey&) const = default;
};

class SnatPorts {
 public:
  static constexpr uint32_t kNoPool = UINT32_MAX;

  // Ports [first, last] of this worker's slice; room for `max_pools` pools.
  SnatPorts(uint16_t first, uint16_t last, uint32_t max_pools);

  // The pool for `key`, created if needed; kNoPool when the pool table is full.
  uint32_t pool_for(const SnatPoolKey& key);

  // A free port (host order) from `pool`, marked used; 0 when the pool is exhausted.
  uint16_t acquire(uint32_t pool);

  // The same, among ports `fits(port)` accepts (RSS steering: about one in
  // `queues`); gives up after `max_tries` candidates, returning 0.
  template <typename Fits>
  uint16_t acquire_if(uint32_t pool, Fits&& fits, uint32_t max_tries);
  void release(uint32_t pool, uint16_t port);

  uint32_t in_use(uint32_t pool) const;
  uint32_t slice_size() const { return slice_size_; }
  uint16_t first_port() const { return first_; }
  uint32_t pools() const { return used_pools_; }

 private:
  struct Pool {
    SnatPoolKey key;
    uint32_t in_use = 0;
    uint32_t cursor = 0;  // word index where the next search starts
    bool live = false;
  };
  uint32_t words_per_pool() const { return (slice_size_ + 63) / 64; }
  uint64_t* bitmap(uint32_t pool) { return &bits_[uint64_t(pool) * words_per_pool()]; }

  uint16_t first_;
  uint32_t slice_size_;
  uint32_t max_pools_;
  uint32_t index_mask_;
  uint32_t used_pools_ = 0;
  std::unique_ptr<Pool[]> pools_;
  std::unique_ptr<uint32_t[]> index_;  // open addressing: key hash -> pool + 1
  std::unique_ptr<uint64_t[]> bits_;
};

template <typename Fits>
uint16_t SnatPorts::acquire_if(uint32_t pool, Fits&& fits, uint32_t max_tries) {
  Pool& p = pools_[pool];
  if (p.in_use == slice_size_) return 0;
  uint64_t* words = bitmap(pool);
  uint32_t n = words_per_pool();
  uint32_t tries = 0;
  for (uint32_t step = 0; step < n && tries < max_tries; ++step) {
    uint32_t w = (p.cursor + step) % n;
    for (uint64_t free_bits = ~words[w]; free_bits && tries < max_tries; free_bits &= free_bits - 1, ++tries) {
      int bit = __builtin_ctzll(free_bits);
      uint16_t port = static_cast<uint16_t>(first_ + w * 64 + bit);
      if (!fits(port)) continue;
      words[w] |= 1ull << bit;
      p.cursor = w;
      ++p.in_use;
      return port;
    }
  }
  return 0;
}

// The slice of [first, last] that worker `worker` of `workers` owns.
void snat_slice(uint16_t first, uint16_t last, uint32_t worker, uint32_t workers, uint16_t& slice_first,
                uint16_t& slice_last);

}  // namespace nplb
