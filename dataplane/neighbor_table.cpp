#include "neighbor_table.hpp"

#include <bit>

namespace nplb {

NeighborTable::NeighborTable(uint32_t capacity)
    : mask_(std::bit_ceil(capacity * 2) - 1), slots_(new Slot[mask_ + 1]) {}

int NeighborTable::find(uint32_t ip_be) const {
  for (uint32_t i = slot_of(ip_be), probes = 0; probes <= mask_; i = (i + 1) & mask_, ++probes) {
    uint32_t key = slots_[i].ip_be.load(std::memory_order_relaxed);
    if (key == ip_be) return static_cast<int>(i);
    if (key == 0) return -1;
  }
  return -1;
}

bool NeighborTable::contains(uint32_t ip_be) const { return find(ip_be) >= 0; }

bool NeighborTable::is_static(uint32_t ip_be) const {
  int i = find(ip_be);
  return i >= 0 && (slots_[i].mac_word.load(std::memory_order_relaxed) & kStatic);
}

bool NeighborTable::update(uint32_t ip_be, const MacAddr& mac, bool is_static) {
  if (ip_be == 0) return false;
  uint64_t word = kValid | (is_static ? kStatic : 0);
  for (int b = 0; b < 6; ++b) word |= uint64_t(mac.bytes[b]) << (8 * b);
  int found = find(ip_be);
  if (found >= 0) {
    Slot& s = slots_[found];
    if ((s.mac_word.load(std::memory_order_relaxed) & kStatic) && !is_static) return true;
    s.mac_word.store(word, std::memory_order_relaxed);
    return true;
  }
  if ((used_ + 1) * 2 > mask_ + 1) return false;  // keep probe chains short
  for (uint32_t i = slot_of(ip_be);; i = (i + 1) & mask_) {
    if (slots_[i].ip_be.load(std::memory_order_relaxed) != 0) continue;
    slots_[i].mac_word.store(word, std::memory_order_relaxed);
    slots_[i].ip_be.store(ip_be, std::memory_order_release);
    ++used_;
    return true;
  }
}

}  // namespace nplb
