#include "flow_table.hpp"

#include "checksum.hpp"

#include <bit>
#include <new>
#include <stdexcept>

namespace nplb {

FlowTable::FlowTable(uint32_t connections, int numa_node) : capacity_connections_(connections) {
  if (connections == 0 || connections > (1u << 28)) throw std::invalid_argument("flow table capacity out of range");
  uint64_t buckets = bucket_count_for(connections);
  bucket_count_ = static_cast<uint32_t>(buckets);
  entry_count_ = bucket_count_ * kSlotsPerBucket + 1;
  buckets_ = PageArray<Bucket>(buckets, numa_node);
  entries_ = PageArray<FlowEntry>(entry_count_, numa_node);
}

uint32_t FlowTable::lookup(const FlowKeyV4& key, uint64_t hash) const {
  uint16_t sig = signature_of(hash);
  uint32_t first = first_bucket(hash);
  if (uint32_t index = find_in(first, sig, key)) return index;
  return buckets_[first].spilled ? find_in(second_bucket(hash), sig, key) : kNoEntry;
}

uint32_t FlowTable::place(uint64_t hash) {
  uint32_t first = first_bucket(hash), second = second_bucket(hash);
  auto take = [&](uint32_t b, int slot) {
    buckets_[b].signature[slot] = signature_of(hash);
    if (b != first) ++buckets_[first].spilled;
    return entry_index(b, slot);
  };
  if (int slot = buckets_[first].free_slot(); slot >= 0) return take(first, slot);
  if (int slot = buckets_[second].free_slot(); slot >= 0) return take(second, slot);
  // Both full (rare below capacity): one cuckoo step moves a resident of
  // either bucket to its other bucket, entry and all, and takes its slot.
  for (uint32_t b : {first, second}) {
    for (int s = 0; s < kSlotsPerBucket; ++s) {
      uint32_t resident = entry_index(b, s);
      uint64_t resident_hash = hash_of(resident);
      uint32_t its_first = first_bucket(resident_hash), its_second = second_bucket(resident_hash);
      uint32_t other = b == its_first ? its_second : its_first;
      if (other == b) continue;
      int free = buckets_[other].free_slot();
      if (free < 0) continue;
      buckets_[other].signature[free] = buckets_[b].signature[s];
      if (other == its_second) ++buckets_[its_first].spilled; else --buckets_[its_first].spilled;
      move_entry(resident, entry_index(other, free));
      return take(b, s);
    }
  }
  return kNoEntry;
}

void FlowTable::unplace(uint32_t index) {
  uint32_t b = bucket_of(index);
  uint32_t first = first_bucket(hash_of(index));
  buckets_[b].signature[slot_of(index)] = 0;
  if (b != first) --buckets_[first].spilled;
}

// Copies an entry to a free slot's entry and frees the old one; the partner
// follows. Readers on other threads see each entry whole or skip it.
void FlowTable::move_entry(uint32_t from, uint32_t to) {
  ++moves_;
  FlowEntry& e = entries_[from];
  FlowState state = e.state.load(std::memory_order_relaxed);
  uint64_t last_seen = e.last_seen.load(std::memory_order_relaxed);
  write_entry(to, e, state, last_seen, e.direction, e.partner);
  if (e.partner != kNoEntry) entries_[e.partner].partner = to;  // none yet: an original mid-insert
  free_entry(from);
}

void FlowTable::free_entry(uint32_t index) {
  FlowEntry& e = entries_[index];
  uint32_t v = next_version();
  e.version.store(v + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  e.state.store(FlowState::free, std::memory_order_relaxed);
  e.direction = FlowDirection::original;
  e.version.store(v + 2, std::memory_order_release);
}

void FlowTable::write_entry(uint32_t index, const FlowEntry& from, FlowState state, uint64_t now,
                            FlowDirection direction, uint32_t partner) {
  FlowEntry& e = entries_[index];
  uint32_t v = next_version();
  e.version.store(v + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  e.key = from.key;
  e.new_src_be = from.new_src_be;
  e.new_dst_be = from.new_dst_be;
  e.new_src_port_be = from.new_src_port_be;
  e.new_dst_port_be = from.new_dst_port_be;
  e.partner = partner;
  e.service_id = from.service_id;
  e.backend_id = from.backend_id;
  e.direction = direction;
  e.tx_port = from.tx_port;
  e.next_hop_be = from.next_hop_be;
  e.snat_pool = from.snat_pool;
  // The checksum differences of this rewrite (RFC 1624): the packet's
  // fields are the key's, so they are known now, once per flow.
  uint32_t addresses = checksum_diff32(from.key.src_be, from.new_src_be) + checksum_diff32(from.key.dst_be, from.new_dst_be);
  e.ip_checksum_delta = checksum_fold(addresses + kTtlDecrementDiff);
  e.l4_checksum_delta = checksum_fold(addresses + checksum_diff16(from.key.src_port_be, from.new_src_port_be) +
                                      checksum_diff16(from.key.dst_port_be, from.new_dst_port_be));
  e.last_seen.store(now, std::memory_order_relaxed);
  e.state.store(state, std::memory_order_relaxed);
  e.version.store(v + 2, std::memory_order_release);
}

uint32_t FlowTable::insert_original(const FlowEntry& original, uint64_t original_hash, FlowState state,
                                    uint64_t now) {
  if (connections() >= capacity_connections_) return kNoEntry;
  uint32_t o = place(original_hash);
  if (o == kNoEntry) return kNoEntry;
  // Direction and partner are part of what a reader must see consistently:
  // written under the sequence counter with the rest.
  write_entry(o, original, state, now, FlowDirection::original, kNoEntry);
  live_connections_.store(live_connections_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return o;
}

uint32_t FlowTable::insert_reply(uint32_t o, const FlowKeyV4& original_key, uint64_t original_hash, const FlowEntry& reply,
                                 uint64_t reply_hash, uint64_t now) {
  // The original may have moved since it was placed (a cuckoo step of a
  // later insert): find it by its key, before and after placing the reply.
  auto find_original = [&] {
    const FlowEntry& e = entries_[o];
    bool there = e.key == original_key && e.direction == FlowDirection::original && e.partner == kNoEntry &&
                 e.state.load(std::memory_order_relaxed) != FlowState::free;
    if (!there) o = lookup(original_key, original_hash);
    return o != kNoEntry && entries_[o].partner == kNoEntry;
  };
  if (!find_original()) return kOriginalGone;
  uint32_t r = place(reply_hash);
  find_original();
  if (r == kNoEntry) {
    unplace(o);
    free_entry(o);
    live_connections_.store(live_connections_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    return kNoEntry;
  }
  write_entry(r, reply, entries_[o].state.load(std::memory_order_relaxed), now, FlowDirection::reply, o);
  entries_[o].partner = r;
  return o;
}

uint32_t FlowTable::insert_connection(const FlowEntry& original, uint64_t original_hash, const FlowEntry& reply,
                                      uint64_t reply_hash, FlowState state, uint64_t now) {
  uint32_t o = insert_original(original, original_hash, state, now);
  if (o == kNoEntry) return kNoEntry;
  uint32_t placed = insert_reply(o, original.key, original_hash, reply, reply_hash, now);
  return placed == kOriginalGone ? kNoEntry : placed;
}

void FlowTable::remove_connection(uint32_t index) {
  uint32_t o = original_of(index);
  uint32_t r = entries_[o].partner;  // kNoEntry between insert_original and insert_reply
  for (uint32_t i : {o, r}) {
    if (i == kNoEntry) continue;
    unplace(i);
    free_entry(i);
  }
  live_connections_.store(live_connections_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

uint64_t FlowTable::timeout_for(FlowState state, uint8_t protocol) const {
  if (protocol != 6) return timeouts_.udp;  // UDP and SCTP share the datagram timeout for now
  if (state == FlowState::established) return timeouts_.tcp_established;
  if (state == FlowState::syn_sent && flood_ && timeouts_.tcp_embryonic_flood) return timeouts_.tcp_embryonic_flood;
  return timeouts_.tcp_transitory;
}

bool FlowTable::read(uint32_t index, FlowView& out) const {
  if (index == kNoEntry || index >= entry_count_) return false;
  const FlowEntry& e = entries_[index];
  uint32_t before = e.version.load(std::memory_order_acquire);
  if (before & 1) return false;
  out.key = e.key;
  out.new_src_be = e.new_src_be;
  out.new_dst_be = e.new_dst_be;
  out.new_src_port_be = e.new_src_port_be;
  out.new_dst_port_be = e.new_dst_port_be;
  out.service_id = e.service_id;
  out.backend_id = e.backend_id;
  out.snat_pool = e.snat_pool;
  out.direction = e.direction;
  out.state = e.state.load(std::memory_order_relaxed);
  out.last_seen = e.last_seen.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  return e.version.load(std::memory_order_relaxed) == before && out.state != FlowState::free;
}

}  // namespace nplb
