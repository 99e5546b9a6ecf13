#include "flow_table.hpp"

#include "checksum.hpp"

#include <bit>
#include <new>
#include <stdexcept>

namespace nplb {

FlowTable::FlowTable(uint32_t connections) : capacity_connections_(connections) {
  if (connections == 0 || connections > (1u << 30)) throw std::invalid_argument("flow table capacity out of range");
  entry_count_ = connections * 2 + 1;
  uint64_t buckets = std::bit_ceil(std::max<uint64_t>(2, (uint64_t(entry_count_) * 2 + kSlotsPerBucket - 1) / kSlotsPerBucket));
  bucket_mask_ = static_cast<uint32_t>(buckets - 1);
  buckets_ = PageArray<Bucket>(buckets);
  entries_ = PageArray<FlowEntry>(entry_count_);
  free_stack_ = PageArray<uint32_t>(entry_count_);
  // Hand out low indices first: a small table stays dense in the cache.
  for (uint32_t i = entry_count_ - 1; i >= 1; --i) push_free(i);
}

uint32_t FlowTable::lookup(const FlowKeyV4& key, uint64_t hash) const {
  uint16_t sig = signature_of(hash);
  const Bucket& first = buckets_[first_bucket(hash)];
  if (uint32_t index = find_in(first, sig, key)) return index;
  return first.spilled ? find_in(buckets_[second_bucket(hash)], sig, key) : kNoEntry;
}

namespace {
int free_slot(const uint32_t (&entry)[FlowTable::kSlotsPerBucket]) {
  for (int s = 0; s < FlowTable::kSlotsPerBucket; ++s)
    if (entry[s] == FlowTable::kNoEntry) return s;
  return -1;
}
}  // namespace

bool FlowTable::place(uint32_t index, uint64_t hash) {
  // The first bucket while it has room, else the second, counted as a spill
  // in the first.
  uint32_t first = first_bucket(hash), second = second_bucket(hash);
  auto put = [&](uint32_t b, int slot) {
    buckets_[b].signature[slot] = signature_of(hash);
    buckets_[b].entry[slot] = index;
    if (b != first) ++buckets_[first].spilled;
    return true;
  };
  if (int slot = free_slot(buckets_[first].entry); slot >= 0) return put(first, slot);
  if (int slot = free_slot(buckets_[second].entry); slot >= 0) return put(second, slot);
  // Both full (a few in ten thousand inserts near capacity): one cuckoo step
  // moves a resident of either bucket to its other bucket and takes its slot.
  // Only this worker looks keys up, so a move is never seen half done.
  for (uint32_t b : {first, second}) {
    for (int s = 0; s < kSlotsPerBucket; ++s) {
      uint32_t resident = buckets_[b].entry[s];
      uint64_t resident_hash = hash_of(resident);
      uint32_t its_first = first_bucket(resident_hash), its_second = second_bucket(resident_hash);
      uint32_t other = b == its_first ? its_second : its_first;
      if (other == b) continue;
      int free = free_slot(buckets_[other].entry);
      if (free < 0) continue;
      buckets_[other].signature[free] = buckets_[b].signature[s];
      buckets_[other].entry[free] = resident;
      if (other == its_second) ++buckets_[its_first].spilled; else --buckets_[its_first].spilled;
      return put(b, s);
    }
  }
  return false;
}

void FlowTable::unplace(uint32_t index) {
  uint64_t hash = hash_of(index);
  Bucket& first = buckets_[first_bucket(hash)];
  for (Bucket* bucket : {&first, &buckets_[second_bucket(hash)]})
    for (int s = 0; s < kSlotsPerBucket; ++s)
      if (bucket->entry[s] == index) {
        bucket->entry[s] = kNoEntry;
        bucket->signature[s] = 0;
        if (bucket != &first) --first.spilled;
        return;
      }
}

void FlowTable::write_entry(uint32_t index, const FlowEntry& from, FlowState state, uint64_t now,
                            FlowDirection direction, uint32_t partner) {
  FlowEntry& e = entries_[index];
  uint32_t v = e.version.load(std::memory_order_relaxed);
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

uint32_t FlowTable::insert_connection(const FlowEntry& original, uint64_t original_hash, const FlowEntry& reply,
                                      uint64_t reply_hash, FlowState state, uint64_t now) {
  if (free_top_ < 2) return kNoEntry;
  uint32_t o = pop_free();
  uint32_t r = pop_free();
  // Direction and partner are part of what a reader must see consistently:
  // written under the sequence counter with the rest.
  write_entry(o, original, state, now, FlowDirection::original, r);
  write_entry(r, reply, state, now, FlowDirection::reply, o);
  auto give_back = [&] {
    entries_[o].state.store(FlowState::free, std::memory_order_relaxed);
    entries_[r].state.store(FlowState::free, std::memory_order_relaxed);
    push_free(r);
    push_free(o);
    return kNoEntry;
  };
  if (!place(o, original_hash)) return give_back();
  if (!place(r, reply_hash)) {
    unplace(o);
    return give_back();
  }
  live_connections_.store(live_connections_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return o;
}

void FlowTable::remove_connection(uint32_t index) {
  uint32_t o = original_of(index);
  uint32_t r = entries_[o].partner;
  for (uint32_t i : {o, r}) {
    unplace(i);
    FlowEntry& e = entries_[i];
    uint32_t v = e.version.load(std::memory_order_relaxed);
    e.version.store(v + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    e.state.store(FlowState::free, std::memory_order_relaxed);
    e.direction = FlowDirection::original;
    e.version.store(v + 2, std::memory_order_release);
  }
  push_free(r);
  push_free(o);
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
