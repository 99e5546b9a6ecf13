#include "flow_table.hpp"

#include <bit>
#include <new>
#include <stdexcept>

namespace nplb {

uint64_t flow_key_hash(const FlowKeyV4& key) {
  // Two multiply-xorshift rounds over the key's two 64-bit words: local to
  // this worker's table, so speed matters more than cross-machine stability.
  uint64_t w0, w1;
  std::memcpy(&w0, &key, 8);
  std::memcpy(&w1, reinterpret_cast<const uint8_t*>(&key) + 8, 8);
  uint64_t h = w0 * 0x9e3779b97f4a7c15ull ^ std::rotl(w1 * 0xc2b2ae3d27d4eb4full, 31);
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h;
}

FlowTable::FlowTable(uint32_t connections) : capacity_connections_(connections) {
  if (connections == 0 || connections > (1u << 30)) throw std::invalid_argument("flow table capacity out of range");
  entry_count_ = connections * 2 + 1;
  uint64_t buckets = std::bit_ceil(std::max<uint64_t>(2, (uint64_t(entry_count_) * 2 + kSlotsPerBucket - 1) / kSlotsPerBucket));
  bucket_mask_ = static_cast<uint32_t>(buckets - 1);
  buckets_.reset(new Bucket[buckets]);
  entries_.reset(new FlowEntry[entry_count_]);
  free_stack_.reset(new uint32_t[entry_count_]);
  for (uint64_t b = 0; b < buckets; ++b)
    for (int s = 0; s < kSlotsPerBucket; ++s) {
      buckets_[b].signature[s].store(0, std::memory_order_relaxed);
      buckets_[b].entry[s].store(kNoEntry, std::memory_order_relaxed);
    }
  // Hand out low indices first: a small table stays dense in the cache.
  for (uint32_t i = entry_count_ - 1; i >= 1; --i) push_free(i);
}

uint32_t FlowTable::lookup(const FlowKeyV4& key, uint64_t hash) const {
  uint32_t sig = signature_of(hash);
  for (uint32_t b : {first_bucket(hash), second_bucket(hash)}) {
    const Bucket& bucket = buckets_[b];
    for (int s = 0; s < kSlotsPerBucket; ++s) {
      if (bucket.signature[s].load(std::memory_order_relaxed) != sig) continue;
      uint32_t index = bucket.entry[s].load(std::memory_order_acquire);
      if (index != kNoEntry && entries_[index].key == key) return index;
    }
  }
  return kNoEntry;
}

bool FlowTable::place(uint32_t index, uint64_t hash) {
  // Two choices, no displacement: the emptier bucket takes it. Without
  // cuckoo moves an entry never changes bucket, so readers never miss it.
  Bucket* candidates[2] = {&buckets_[first_bucket(hash)], &buckets_[second_bucket(hash)]};
  int best_slot[2] = {-1, -1};
  int free_slots[2] = {0, 0};
  for (int c = 0; c < 2; ++c)
    for (int s = 0; s < kSlotsPerBucket; ++s)
      if (candidates[c]->entry[s].load(std::memory_order_relaxed) == kNoEntry) {
        if (best_slot[c] < 0) best_slot[c] = s;
        ++free_slots[c];
      }
  int c = free_slots[1] > free_slots[0] ? 1 : 0;
  if (best_slot[c] < 0) return false;
  candidates[c]->signature[best_slot[c]].store(signature_of(hash), std::memory_order_relaxed);
  candidates[c]->entry[best_slot[c]].store(index, std::memory_order_release);
  return true;
}

void FlowTable::unplace(uint32_t index) {
  uint64_t hash = hash_of(index);
  for (uint32_t b : {first_bucket(hash), second_bucket(hash)}) {
    Bucket& bucket = buckets_[b];
    for (int s = 0; s < kSlotsPerBucket; ++s)
      if (bucket.entry[s].load(std::memory_order_relaxed) == index) {
        bucket.entry[s].store(kNoEntry, std::memory_order_release);
        bucket.signature[s].store(0, std::memory_order_relaxed);
        return;
      }
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
