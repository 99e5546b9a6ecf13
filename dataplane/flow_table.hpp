// The per-worker connection table.
//
// One worker reads and writes it; the control thread may copy entries out at
// any time (read(), for listings) without stopping the worker.
//
// Layout, for a table far larger than the caches: a bucket is 16 bytes, 7
// 16-bit signatures and a spill count, so the buckets of 1M connections take
// 8 MiB and stay in the last-level cache; a bucket's slots own 7 fixed
// entries, so the signature that matches names the entry's line directly
// (no index to load). An entry is one cache line holding the key and the
// whole rewrite, checksum differences included. An established packet thus
// costs a bucket read that mostly hits the cache and one entry line from
// memory, both requested a burst ahead (BurstPipeline).
//
// Placement: a key's first bucket while it has a free slot, else its second,
// counted as a spill in the first; a lookup reads the second bucket only
// when its first has spills (a few percent of keys at full capacity). When
// both are full, one cuckoo step moves a resident to its other bucket,
// moving its entry and fixing its partner's link. So key lookups (lookup,
// candidate) belong to the worker's thread alone; other threads read entries
// by index, under the entry's sequence counter.
//
// Each connection owns two entries: the original direction (client ->
// frontend) and the reply direction (backend -> SNAT address); each records
// the other as its partner and the translation to apply. Each direction
// keeps its own last_seen and a mirror of the TCP state, so a packet touches
// only its own entry; expiry looks at the partner only for a connection its
// own direction says is idle.
//
// Expiry is incremental: expire_step() looks at a few entries per call from a
// moving cursor, never the whole table at once.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "huge_pages.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace nplb {

// IPv4 5-tuple in network byte order, as it sits in the packet. An IPv6 table
// is the same template over a 16-byte address type (not instantiated yet).
struct FlowKeyV4 {
  uint32_t src_be = 0;
  uint32_t dst_be = 0;
  uint16_t src_port_be = 0;
  uint16_t dst_port_be = 0;
  uint8_t protocol = 0;
  uint8_t pad[3] = {0, 0, 0};

  bool operator==(const FlowKeyV4& o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};
static_assert(sizeof(FlowKeyV4) == 16);

// The key's bytes as two little-endian words: (src | dst << 32) and
// (sport | dport << 16 | protocol << 32). The fast path builds them in
// registers from the packet, so hashing never reloads a key just stored
// field by field (a store-forwarding stall of ~15 cycles).
inline uint64_t flow_hash_words(uint64_t w0, uint64_t w1) {
  // Local to this worker's table, so speed matters more than cross-machine
  // stability.
#if defined(__SSE4_2__)
  // Two CRC-32C of the key, its words in opposite orders (two different
  // linear maps of its bits, as rte_hash's CRC hash is one): the low half
  // picks the first bucket, the high half the signature and second bucket.
  // Four crc32 instructions where the rounds below take three multiplies.
  uint64_t low = _mm_crc32_u64(_mm_crc32_u64(0x9e3779b9u, w0), w1);
  uint64_t high = _mm_crc32_u64(_mm_crc32_u64(0x85ebca6bu, w1), w0);
  return low | high << 32;
#else
  // Two multiply-xorshift rounds.
  uint64_t h = w0 * 0x9e3779b97f4a7c15ull ^ std::rotl(w1 * 0xc2b2ae3d27d4eb4full, 31);
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h;
#endif
}
inline uint64_t flow_key_hash(const FlowKeyV4& key) {
  uint64_t w0, w1;
  std::memcpy(&w0, &key, 8);
  std::memcpy(&w1, reinterpret_cast<const uint8_t*>(&key) + 8, 8);
  return flow_hash_words(w0, w1);
}

enum class FlowState : uint8_t {
  free = 0,
  syn_sent,     // TCP: client SYN forwarded, no reply yet (embryonic)
  established,  // TCP: the backend answered; UDP/SCTP: any flow in use
  closing,      // TCP: FIN or RST seen
};

enum class FlowDirection : uint8_t { original = 0, reply = 1 };

struct alignas(64) FlowEntry {
  std::atomic<uint64_t> last_seen{0};  // TSC of this direction's last packet
  std::atomic<uint32_t> version{0};    // even: stable; odd: being written (FlowTable::next_version)
  FlowKeyV4 key;
  // The rewrite for packets matching `key`: new source and destination.
  uint32_t new_src_be = 0;
  uint32_t new_dst_be = 0;
  uint16_t new_src_port_be = 0;
  uint16_t new_dst_port_be = 0;
  uint32_t partner = 0;      // entry index of the other direction
  uint32_t backend_id = 0;   // stable id of the backend (counters)
  uint32_t next_hop_be = 0;  // IPv4 next hop for this direction
  uint16_t service_id = 0;   // stable id of the service port (counters; < kMaxServicePorts)
  uint16_t snat_pool = 0;    // SNAT pool the port came from
  // RFC 1624 differences (~m + m', folded) of the rewrite, from `key` to the
  // new fields: the IPv4 header's (addresses and the TTL decrement) and the
  // TCP/UDP checksum's (addresses in the pseudo header, ports). Filled by
  // the table when the entry is written.
  uint16_t ip_checksum_delta = 0;
  uint16_t l4_checksum_delta = 0;
  uint8_t tx_port = 0;       // egress port for this direction
  std::atomic<FlowState> state{FlowState::free};  // the connection's; the same in both entries
  FlowDirection direction = FlowDirection::original;
};
static_assert(sizeof(FlowEntry) == 64, "a flow entry is one cache line");

struct FlowTimeoutsTsc {
  uint64_t tcp_established = 0;
  uint64_t tcp_transitory = 0;
  uint64_t udp = 0;
  uint64_t tcp_embryonic_flood = 0;  // SYN sent, while the worker sees a new-flow flood
  // One expiry pass over the whole table takes this long (expire_due paces
  // itself by the clock); 0: a fixed kExpiryStep entries per call.
  uint64_t sweep = 0;
};

// The pass an appliance uses: a quarter of the shortest timeout, between
// 100 ms and 10 s. An idle connection goes within its timeout plus this;
// a 1M-connection table (3.7M entries) at the default timeouts is read at
// 1.5M entries/s, where 64 entries per poll read 20M/s at 10 Mpps.
inline uint64_t expiry_sweep_tsc(const FlowTimeoutsTsc& t, uint64_t tsc_hz) {
  uint64_t shortest = UINT64_MAX;
  for (uint64_t timeout : {t.tcp_established, t.tcp_transitory, t.udp})
    if (timeout) shortest = std::min(shortest, timeout);
  uint64_t sweep = shortest == UINT64_MAX ? 10 * tsc_hz : shortest / 4;
  return std::clamp<uint64_t>(sweep, tsc_hz / 10, 10 * tsc_hz);
}

// What a flow looked like, for listing and for the expiry callback.
struct FlowView {
  FlowKeyV4 key;
  uint32_t new_src_be, new_dst_be;
  uint16_t new_src_port_be, new_dst_port_be;
  uint32_t service_id, backend_id, snat_pool;
  FlowState state;
  FlowDirection direction;
  uint64_t last_seen;
};

class FlowTable {
 public:
  static constexpr uint32_t kNoEntry = 0;  // entry 0 is never used, so 0 means "none"
  static constexpr int kSlotsPerBucket = 7;
  static constexpr uint32_t kOriginalGone = UINT32_MAX;

  // Room for `connections` connections (2 entries each), in buckets for
  // about 4 entries each of their 7 slots.
  // `numa_node` >= 0: the node the table's pages should come from (the
  // worker's socket).
  explicit FlowTable(uint32_t connections, int numa_node = -1);
  // The memory a table for `connections` takes (buckets and entries).
  static uint64_t bytes_for(uint32_t connections) {
    uint64_t buckets = bucket_count_for(connections);
    return buckets * sizeof(Bucket) + (buckets * kSlotsPerBucket + 1) * sizeof(FlowEntry);
  }
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Requests the key's first bucket: where all but the spilled entries are.
  void prefetch(uint64_t hash) const { __builtin_prefetch(&buckets_[first_bucket(hash)]); }

  // The entry matching `key`, or kNoEntry. The worker's thread only.
  uint32_t lookup(const FlowKeyV4& key, uint64_t hash) const;

  // The first entry whose signature matches, from the buckets alone (the
  // entry is not touched, so a burst can prefetch it first); kNoEntry means
  // the key is certainly absent. Confirm with entry(i).key == key.
  uint32_t candidate(uint64_t hash) const {
    uint16_t sig = signature_of(hash);
    uint32_t first = first_bucket(hash);
    if (uint32_t m = buckets_[first].matches(sig)) return entry_index(first, std::countr_zero(m) / 2);
    if (buckets_[first].spilled == 0) return kNoEntry;
    uint32_t second = second_bucket(hash);
    if (uint32_t m = buckets_[second].matches(sig)) return entry_index(second, std::countr_zero(m) / 2);
    return kNoEntry;
  }

  // Where a new key would go if its first bucket has room (the line
  // insert_connection() writes: worth requesting early); kNoEntry if full.
  uint32_t free_candidate(uint64_t hash) const {
    uint32_t first = first_bucket(hash);
    int slot = buckets_[first].free_slot();
    return slot < 0 ? kNoEntry : entry_index(first, slot);
  }

  // Inserts the two entries of a connection. Returns the original entry's
  // index, or kNoEntry when the table is full (nothing is changed then).
  // `original` and `reply` describe each direction; state and last_seen are set.
  uint32_t insert_connection(const FlowEntry& original, uint64_t original_hash, const FlowEntry& reply,
                             uint64_t reply_hash, FlowState state, uint64_t now);

  // The same in two steps, so the reply's bucket (unknown until the SNAT
  // port is chosen) can load while other packets are worked on. Between
  // them the connection counts and its original entry forwards; its partner
  // is kNoEntry, which eviction respects. insert_reply finds the original by
  // its key (a cuckoo step may have moved it) and returns where it is now;
  // if the reply finds no room it removes the original too: kNoEntry; if
  // the original was removed meanwhile (its remover returned its SNAT
  // port): kOriginalGone, and nothing is inserted.
  uint32_t insert_original(const FlowEntry& original, uint64_t original_hash, FlowState state, uint64_t now);
  uint32_t insert_reply(uint32_t original_index, const FlowKeyV4& original_key, uint64_t original_hash,
                    const FlowEntry& reply, uint64_t reply_hash, uint64_t now);

  // Removes a connection given either of its entries.
  void remove_connection(uint32_t index);

  FlowEntry& entry(uint32_t index) { return entries_[index]; }
  FlowEntry* entry_array() { return entries_.data(); }
  // Entries moved by cuckoo steps so far: a walk over the table that saw
  // one may have missed the entry moved behind it.
  uint64_t moves() const { return moves_; }
  const FlowEntry& entry(uint32_t index) const { return entries_[index]; }

  // The original entry of a connection, given either of its entries.
  uint32_t original_of(uint32_t index) const {
    return entries_[index].direction == FlowDirection::original ? index : entries_[index].partner;
  }

  uint64_t timeout_for(FlowState state, uint8_t protocol) const;
  void set_timeouts(const FlowTimeoutsTsc& t) { timeouts_ = t; }
  // Under a new-flow flood, embryonic connections (SYN sent, no answer)
  // get tcp_embryonic_flood instead of tcp_transitory.
  void set_flood(bool flood) { flood_ = flood; }
  bool flood() const { return flood_; }

  // Looks at up to `budget` entries from the expiry cursor; connections idle
  // beyond their timeout are removed and passed to `on_expired` first.
  // Returns how many connections expired.
  template <typename OnExpired>
  uint32_t expire_step(uint64_t now, uint32_t budget, OnExpired&& on_expired);

  // expire_step paced by the clock: the share of one sweep (timeouts.sweep)
  // the time since the last call has earned, at most kExpiryMaxStep entries
  // so a stalled worker never catches up in one long pause. Under a flood
  // the pass is no longer than the embryonic flood timeout.
  static constexpr uint32_t kExpiryStep = 64;
  static constexpr uint32_t kExpiryMaxStep = 512;
  static constexpr uint32_t kExpiryPrefetch = 64;  // lines requested for the next call, at most
  template <typename OnExpired>
  uint32_t expire_due(uint64_t now, OnExpired&& on_expired);

  // Removes the first embryonic (syn_sent) connection found among the next
  // `budget` entries from a moving cursor; true if one was evicted. Used when the table is full:
  // established connections are never evicted for new ones.
  template <typename OnEvicted>
  bool evict_embryonic(uint32_t budget, OnEvicted&& on_evicted);

  // The first and second bucket a key with this hash may occupy (for tests
  // that need keys crowding the same buckets).
  std::pair<uint32_t, uint32_t> buckets_of(uint64_t hash) const { return {first_bucket(hash), second_bucket(hash)}; }

  uint32_t connections() const { return live_connections_.load(std::memory_order_relaxed); }
  uint32_t capacity() const { return capacity_connections_; }

  // Consistent copy of an entry for readers on other threads; false if the
  // entry is free or changed while being read.
  bool read(uint32_t index, FlowView& out) const;
  uint32_t entry_count() const { return entry_count_; }
  // Where the entries live (huge_pages.hpp): reported at start and by the bench.
  PageBacking page_backing() const { return entries_.backing(); }

 private:
  // Written and read by the worker only.
  struct alignas(16) Bucket {
    uint16_t signature[kSlotsPerBucket] = {};  // 0: free slot
    uint16_t spilled = 0;  // entries whose first bucket this is, placed in their second
    // Two bits per slot whose signature is `sig`.
    uint32_t matches(uint16_t sig) const {
#if defined(__SSE2__)
      __m128i sigs = _mm_load_si128(reinterpret_cast<const __m128i*>(signature));
      uint32_t m = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi16(sigs, _mm_set1_epi16(static_cast<short>(sig)))));
      return m & 0x3fff;  // the eighth lane is the spill count
#else
      uint32_t m = 0;
      for (int s = 0; s < kSlotsPerBucket; ++s)
        if (signature[s] == sig) m |= 3u << (2 * s);
      return m;
#endif
    }
    int free_slot() const {
      for (int s = 0; s < kSlotsPerBucket; ++s)
        if (signature[s] == 0) return s;
      return -1;
    }
  };
  static_assert(sizeof(Bucket) == 16, "four buckets to a cache line");

  // Two entries per connection, about 4 per 7-slot bucket: a few percent of
  // keys spill to their second bucket at full capacity, and a full pair of
  // buckets (a cuckoo step) is rare. A whole number of 64-byte lines.
  static uint64_t bucket_count_for(uint32_t connections) {
    uint64_t buckets = (uint64_t(connections) * 2 + 3) / 4;
    return (buckets + 3) / 4 * 4;
  }
  static uint16_t signature_of(uint64_t hash) { return static_cast<uint16_t>(hash >> 48) | 1u; }
  // Lemire's multiply-shift range reduction: any bucket count, no modulo.
  uint32_t first_bucket(uint64_t hash) const {
    return static_cast<uint32_t>((uint64_t(static_cast<uint32_t>(hash)) * bucket_count_) >> 32);
  }
  uint32_t second_bucket(uint64_t hash) const {
    return static_cast<uint32_t>((uint64_t(static_cast<uint32_t>((hash >> 32) * 0x9e3779b1u)) * bucket_count_) >> 32);
  }
  // The entry after `index` in a sweep over the table (entry 0 is never used).
  uint32_t next_entry(uint32_t index) const { return index + 1 == entry_count_ ? 1 : index + 1; }
  static uint32_t entry_index(uint32_t bucket, int slot) { return bucket * kSlotsPerBucket + static_cast<uint32_t>(slot) + 1; }
  static uint32_t bucket_of(uint32_t index) { return (index - 1) / kSlotsPerBucket; }
  static int slot_of(uint32_t index) { return static_cast<int>((index - 1) % kSlotsPerBucket); }
  uint32_t find_in(uint32_t bucket, uint16_t sig, const FlowKeyV4& key) const {
    for (uint32_t m = buckets_[bucket].matches(sig); m; m &= m - 1) {
      uint32_t index = entry_index(bucket, std::countr_zero(m) / 2);
      m &= m - 1;  // each slot has two bits
      if (entries_[index].key == key) return index;
    }
    return kNoEntry;
  }
  // A slot for `hash` (its signature set), or kNoEntry; may move one resident.
  uint32_t place(uint64_t hash);
  void unplace(uint32_t index);
  void move_entry(uint32_t from, uint32_t to);
  uint64_t moves_ = 0;
  void write_entry(uint32_t index, const FlowEntry& from, FlowState state, uint64_t now, FlowDirection direction,
                   uint32_t partner);
  void free_entry(uint32_t index);
  uint64_t hash_of(uint32_t index) const { return flow_key_hash(entries_[index].key); }
  // Versions come from one table-wide counter, not from the entry: a write
  // never has to read a line it is about to overwrite (for a new entry, a
  // line not in any cache). Every write takes a larger even value than the
  // last, so an entry's version still changes whenever it is written.
  uint32_t next_version() {
    version_counter_ += 2;
    return version_counter_;
  }

  uint32_t capacity_connections_;
  uint32_t bucket_count_;
  uint32_t entry_count_;  // bucket_count_ * kSlotsPerBucket + the unused entry 0
  PageArray<Bucket> buckets_;
  PageArray<FlowEntry> entries_;
  uint32_t version_counter_ = 0;
  uint32_t expiry_cursor_ = 1;
  uint64_t expiry_clock_ = 0;  // the time expire_due has accounted for
  uint64_t paced_sweep_ = 0;    // the sweep tsc_per_entry_ was computed for
  uint64_t tsc_per_entry_ = 0;  // until this long after expiry_clock_, no entry is due
  uint32_t evict_cursor_ = 1;
  std::atomic<uint32_t> live_connections_{0};
  FlowTimeoutsTsc timeouts_;
  bool flood_ = false;
};

template <typename OnExpired>
uint32_t FlowTable::expire_step(uint64_t now, uint32_t budget, OnExpired&& on_expired) {
  uint32_t expired = 0;
  for (uint32_t i = 0; i < budget; ++i) {
    uint32_t index = expiry_cursor_;
    expiry_cursor_ = next_entry(expiry_cursor_);
    FlowEntry& e = entries_[index];
    FlowState state = e.state.load(std::memory_order_relaxed);
    if (state == FlowState::free || e.direction != FlowDirection::original) continue;
    uint64_t timeout = timeout_for(state, e.key.protocol);
    if (now - e.last_seen.load(std::memory_order_relaxed) <= timeout) continue;
    // Idle this way; the connection is idle only if the reply side is too.
    if (now - entries_[e.partner].last_seen.load(std::memory_order_relaxed) <= timeout) continue;
    on_expired(e);
    remove_connection(index);
    ++expired;
  }
  // The scan is sequential and paced by the clock, so the next call reads
  // about as many entries from where this one stopped: request them now,
  // a burst ahead, or each one is a stall on memory (at 10M connections
  // the expiry scan otherwise cost ~20 cycles per forwarded packet).
  uint32_t ahead = std::min(budget, kExpiryPrefetch);
  for (uint32_t i = 0, at = expiry_cursor_; i < ahead; ++i, at = next_entry(at))
    __builtin_prefetch(&entries_[at]);
  return expired;
}

template <typename OnExpired>
uint32_t FlowTable::expire_due(uint64_t now, OnExpired&& on_expired) {
  uint64_t sweep = timeouts_.sweep;
  if (flood_ && timeouts_.tcp_embryonic_flood) sweep = std::min(sweep, timeouts_.tcp_embryonic_flood);
  if (sweep == 0) return expire_step(now, kExpiryStep, on_expired);
  if (expiry_clock_ == 0 || now < expiry_clock_) {
    expiry_clock_ = now;
    return 0;
  }
  // Most polls come before the next entry is due (a 64Ki-connection table
  // at the default timeouts: one entry every ~30 us, a poll every ~1 us
  // under load): they stop here, without the divisions below.
  if (sweep != paced_sweep_) {
    paced_sweep_ = sweep;
    tsc_per_entry_ = (sweep + entry_count_ - 1) / entry_count_;
  }
  if (now - expiry_clock_ < tsc_per_entry_) return 0;
  uint64_t elapsed = std::min(now - expiry_clock_, sweep);
  uint64_t due = static_cast<uint64_t>((unsigned __int128)elapsed * entry_count_ / sweep);
  if (due == 0) return 0;  // the time accumulates until an entry is due
  if (due >= kExpiryMaxStep || elapsed == sweep) {
    due = std::min<uint64_t>(due, kExpiryMaxStep);
    expiry_clock_ = now;
  } else {
    expiry_clock_ += static_cast<uint64_t>((unsigned __int128)due * sweep / entry_count_);
  }
  return expire_step(now, static_cast<uint32_t>(due), on_expired);
}

template <typename OnEvicted>
bool FlowTable::evict_embryonic(uint32_t budget, OnEvicted&& on_evicted) {
  for (uint32_t i = 0; i < budget; ++i) {
    uint32_t index = evict_cursor_;
    evict_cursor_ = next_entry(evict_cursor_);
    FlowEntry& e = entries_[index];
    if (e.direction == FlowDirection::original && e.state.load(std::memory_order_relaxed) == FlowState::syn_sent &&
        e.partner != kNoEntry) {  // not a connection between insert_original and insert_reply
      on_evicted(e);
      remove_connection(index);
      return true;
    }
  }
  return false;
}

}  // namespace nplb
