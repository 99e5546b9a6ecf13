// A single-producer single-consumer ring of small records, for messages from a
// worker to the control thread (ARP learned, next hop wanted). Producer and
// consumer indices live on separate cache lines (Seastar's smp queue). The
// producer never blocks: a full ring is the caller's counted drop.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace nplb {

template <typename T, size_t N>
class SpscRing {
  static_assert((N & (N - 1)) == 0, "N must be a power of two");

 public:
  bool push(const T& item) {
    uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - cached_tail_ == N) {
      cached_tail_ = tail_.load(std::memory_order_acquire);
      if (head - cached_tail_ == N) return false;
    }
    items_[head & (N - 1)] = item;
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  bool pop(T& item) {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return false;
    item = items_[tail & (N - 1)];
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

 private:
  alignas(64) std::atomic<uint64_t> head_{0};
  uint64_t cached_tail_ = 0;
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) T items_[N];
};

}  // namespace nplb
