// Next-hop MAC addresses (IPv4 ARP; an IPv6 ND table will sit beside it).
//
// The control thread is the only writer: it applies static neighbours from the
// config and what workers learned from ARP (RFC 826's merge: a request or
// reply from a known sender updates it; one addressed to us inserts it).
// Workers read it lock-free on every forwarded packet: an entry's address is
// written once and published with a release store, and its MAC is a single
// 64-bit atomic word, so a reader sees the old or the new MAC, never half.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "net_types.hpp"

namespace nplb {

class NeighborTable {
 public:
  explicit NeighborTable(uint32_t capacity = 4096);

  // Fast path: the MAC for `ip_be` as a word, byte b at bits 8b (so a
  // little-endian 4-byte and 2-byte store write it out); false if unknown.
  bool lookup_word(uint32_t ip_be, uint64_t& mac_word) const;
  // lookup_word over a copy of the table's fields, for loops that also
  // store through byte pointers (which may alias the table object and would
  // make every probe reload them).
  class Reader;
  Reader reader() const;
  bool lookup(uint32_t ip_be, MacAddr& mac) const {
    uint64_t word;
    if (!lookup_word(ip_be, word)) return false;
    for (int b = 0; b < 6; ++b) mac.bytes[b] = static_cast<uint8_t>(word >> (8 * b));
    return true;
  }

  // Control thread only. `is_static` entries are never overwritten by learning.
  // Returns false when the table is full.
  bool update(uint32_t ip_be, const MacAddr& mac, bool is_static);
  bool contains(uint32_t ip_be) const;
  bool is_static(uint32_t ip_be) const;
  uint32_t size() const { return used_; }

  template <typename F>
  void for_each(F&& f) const {
    for (uint32_t i = 0; i <= mask_; ++i) {
      uint32_t key = slots_[i].ip_be.load(std::memory_order_acquire);
      if (!key) continue;
      uint64_t word = slots_[i].mac_word.load(std::memory_order_relaxed);
      MacAddr mac;
      for (int b = 0; b < 6; ++b) mac.bytes[b] = static_cast<uint8_t>(word >> (8 * b));
      f(key, mac, (word & kStatic) != 0);
    }
  }

 private:
  static constexpr uint64_t kValid = 1ull << 48;
  static constexpr uint64_t kStatic = 1ull << 49;
  struct Slot {
    std::atomic<uint32_t> ip_be{0};  // 0.0.0.0 is never a next hop: it marks an empty slot
    std::atomic<uint64_t> mac_word{0};
  };
  // The high half of a 64-bit product: every octet of the address counts
  // (nodes differing in the last octet must not share a probe chain).
  uint32_t slot_of(uint32_t ip_be) const { return slot_of(ip_be, mask_); }
  static uint32_t slot_of(uint32_t ip_be, uint32_t mask) {
    return static_cast<uint32_t>((uint64_t(ip_be) * 0x9e3779b97f4a7c15ull) >> 32) & mask;
  }
  int find(uint32_t ip_be) const;

  uint32_t mask_;
  uint32_t used_ = 0;
  std::unique_ptr<Slot[]> slots_;
  friend class Reader;
};

class NeighborTable::Reader {
 public:
  explicit Reader(const NeighborTable& t) : slots_(t.slots_.get()), mask_(t.mask_) {}
  // Locals: the slots' atomics would otherwise make the compiler reload
  // the table's fields on every probe.
  bool lookup_word(uint32_t ip_be, uint64_t& mac_word) const {
    for (uint32_t i = slot_of(ip_be, mask_), probes = 0;; i = (i + 1) & mask_) {
      uint32_t key = slots_[i].ip_be.load(std::memory_order_acquire);
      if (key == ip_be) {
        mac_word = slots_[i].mac_word.load(std::memory_order_relaxed);
        return (mac_word & kValid) != 0;
      }
      if (key == 0 || probes++ == mask_) return false;
    }
  }

 private:
  const Slot* slots_;
  uint32_t mask_;
};
inline NeighborTable::Reader NeighborTable::reader() const { return Reader(*this); }
inline bool NeighborTable::lookup_word(uint32_t ip_be, uint64_t& mac_word) const {
  return reader().lookup_word(ip_be, mac_word);
}

}  // namespace nplb
