// The per-packet work of a worker, on plain bytes: classify, look up, NAT,
// choose the egress port and MACs. It runs without EAL, so packet fixtures,
// fuzzers and the bench drive exactly the code the workers run.
//
// Fast-path rules: no locks, no heap, no system calls, no exceptions, no
// logging. Everything a worker writes lives in its own WorkerState.
#pragma once

#include <cstdint>
#include <memory>

#include "affinity_table.hpp"
#include "counters.hpp"
#include "flow_table.hpp"
#include "neighbor_table.hpp"
#include "packet.hpp"
#include "rss_steering.hpp"
#include "snapshot.hpp"
#include "snat_pool.hpp"
#include "spsc_ring.hpp"

namespace nplb {

// Messages from a worker to the control thread.
struct WorkerEvent {
  enum class Kind : uint8_t { arp_learned, next_hop_wanted } kind = Kind::arp_learned;
  uint16_t port = 0;
  uint32_t ip_be = 0;
  MacAddr mac;
};
using WorkerEventRing = SpscRing<WorkerEvent, 1024>;

// Counters a worker writes and the control thread reads (relaxed loads: a
// figure may be a burst behind, never torn on 64-bit x86/ARM).
struct alignas(64) WorkerCounters {
  uint64_t drops[kDropReasonCount] = {};
  uint64_t flows_created = 0;
  uint64_t flows_expired = 0;
  uint64_t flows_evicted = 0;  // embryonic flows evicted to make room
  uint64_t flows_rolled_back = 0;  // opened, but the reply entry found no room: removed again (its answer will find no flow)
  uint64_t arp_replies = 0;
  uint64_t arp_learned = 0;
  uint64_t icmp_echo_replies = 0;
  uint64_t forwarded = 0;
  uint64_t flows_moved = 0;          // UDP flows whose backend left, moved to a live one
  uint64_t rejects_sent = 0;         // TCP RST / ICMP port unreachable for refused connections
  uint64_t rejects_rate_limited = 0; // refusals beyond the rate: dropped without an answer
  uint64_t to_kernel = 0;            // frames passed to the kernel (exception path)
  uint64_t flood_windows = 0;        // 100 ms windows spent in flood mode
  uint64_t port_rx[kMaxPorts] = {};
  uint64_t port_tx[kMaxPorts] = {};
  uint64_t port_dropped[kMaxPorts] = {};
};

struct WorkerConfig {
  uint32_t id = 0;
  uint32_t flow_capacity = 65536;
  int numa_node = -1;  // where the flow table's pages should come from (the worker's socket); -1: anywhere
  uint16_t snat_first = 1024;  // this worker's slice of the SNAT port range
  uint16_t snat_last = 65535;
  uint32_t snat_pools = 4096;
  uint32_t affinity_sets = 16384;  // x4 clients remembered per worker
  uint32_t rejects_per_second = 1000;
  // Above this many new connections per second, the worker is under a
  // new-flow flood: embryonic connections get the short flood timeout.
  uint32_t flood_new_flows_per_second = 200000;
  RssSteering rss;  // enabled with several RSS queues: SNAT ports chosen so replies come back here
};

struct alignas(64) WorkerState {
  explicit WorkerState(const WorkerConfig& config);

  uint32_t id;
  FlowTable flows;
  SnatPorts snat;
  WorkerCounters counters;
  std::unique_ptr<uint64_t[]> service_packets;  // by stable service-port id
  std::unique_ptr<uint64_t[]> backend_packets;  // by stable backend id
  AffinityTable affinity;
  RssSteering rss;

  // MACs of on-link clients, gleaned from the frame that opened their
  // connection. A client whose kernel already knows the VIP's MAC sends no
  // ARP, and its SYN-ACK must not wait a second for resolution. Written and
  // read by this worker only; the shared table (ARP, static) wins.
  struct GleanedNeighbor {
    uint32_t ip_be = 0;
    MacAddr mac;
  };
  static constexpr uint32_t kGleanedSlots = 4096;
  std::unique_ptr<GleanedNeighbor[]> gleaned{new GleanedNeighbor[kGleanedSlots]};
  static uint32_t gleaned_slot(uint32_t ip_be) {
    return static_cast<uint32_t>((uint64_t(ip_be) * 0x9e3779b97f4a7c15ull) >> 32) & (kGleanedSlots - 1);
  }
  WorkerEventRing events;

  // Connections opened in the current burst whose reply entry is not in the
  // table yet (FlowTable::insert_original / insert_reply): the reply's
  // bucket was requested when its SNAT port was chosen, and is read at the
  // end of the burst, when it has had the rest of the burst to arrive.
  struct PendingReply {
    uint32_t original = 0;
    FlowKeyV4 original_key;
    uint64_t original_hash = 0;
    uint64_t reply_hash = 0;
    uint32_t pool = 0;
    uint16_t snat_port = 0;  // host order
    FlowEntry reply;
  };
  std::unique_ptr<PendingReply[]> pending_replies{new PendingReply[kPendingReplies]};
  static constexpr uint32_t kPendingReplies = 64;
  uint32_t pending_reply_count = 0;
  // Inserts the pending replies; a connection whose reply finds no room is
  // rolled back (original removed, SNAT port returned; counted).
  void insert_pending_replies(uint64_t now);
  bool flows_changed_in_burst = false;  // a connection was opened during the current burst

  // Refusals (RST, ICMP unreachable) are rate-limited per worker: a token
  // bucket refilled at rejects_per_second, at most one second's worth saved.
  uint32_t rejects_per_second;
  uint64_t reject_tokens = 0;
  uint64_t reject_refill_tsc = 0;

  void drop(DropReason r) { ++counters.drops[static_cast<size_t>(r)]; }
  // Gives back the SNAT port of a connection, given its original entry.
  void release_snat(const FlowEntry& original) {
    snat.release(original.snat_pool, __builtin_bswap16(original.new_src_port_be));
  }
  // Expires idle connections and gives their SNAT ports back, paced by the
  // clock (FlowTable::expire_due).
  uint32_t expire(uint64_t now);
  // Packets of known connections skip the address checks (the fast lane,
  // processor.cpp) while every connection in the table has passed them
  // under the snapshot's address epoch (Snapshot::address_epoch); 0: not
  // trusted. Earned when the table is empty, kept while each new connection
  // passes, lost to one that does not, and earned again after the
  // addresses change by a walk over the table (revalidate_addresses).
  uint64_t trusted_address_epoch = 0;
  struct AddressWalk {
    uint64_t epoch = 0;       // what the walk in progress checks against
    uint32_t cursor = 1;      // next entry (entry 0 is never used)
    bool failed = false;      // an entry failed, or a failing connection was opened meanwhile
    uint64_t not_before = 0;  // TSC: after a failed pass, the next waits kAddressWalkPause
    uint64_t moves_at_start = 0;  // FlowTable::moves() when the pass began
  } address_walk;
  // A pass reads every entry: about one line per packet while it runs, and
  // a connection that keeps failing (to a VIP removed while it was open)
  // fails every pass until it expires, so failed passes are ten seconds apart.
  static constexpr uint32_t kAddressWalkStep = 32;  // entries per call
  static constexpr uint32_t kAddressWalkPauseSeconds = 10;
  // Looks at up to kAddressWalkStep entries; trusts the snapshot's epoch
  // after a pass in which every connection passed. Nothing to do while trusted.
  void revalidate_addresses(const Snapshot& snapshot, uint64_t now);
  // Measures the new-flow rate in 100 ms windows and switches flood mode.
  void watch_flood(uint64_t now, uint64_t tsc_hz);
  uint32_t flood_threshold;  // new flows per 100 ms window
  uint64_t flood_window_start = 0;
  uint64_t flood_window_flows = 0;  // flows_created at the window's start
};

enum class Action : uint8_t {
  drop,      // counted under its reason
  forward,   // translated; send on tx_port
  reply,     // answered in place (ARP, ICMP echo); send on tx_port (the input port)
  reject,    // refused and answered in place (TCP RST, ICMP unreachable); counted as a drop too
  consumed,  // learned from (ARP reply to us); nothing to send
  to_kernel, // for the kernel's address on the input port: handed to the control thread's tap
};

struct Outcome {
  Action action = Action::drop;
  uint16_t tx_port = 0;
};

// Processes one frame in place. `len` may shrink (Ethernet padding trimmed)
// or grow up to `capacity` (an ICMP error quoting the packet); capacity 0
// means `len`. `now` is the TSC of the burst.
Outcome process_frame(WorkerState& worker, const Snapshot& snapshot, const NeighborTable& neighbors, uint8_t* frame,
                      uint32_t& len, uint16_t in_port, uint64_t now, ParseOptions options = {}, uint32_t capacity = 0);

// A burst: classify every packet and prefetch its flow bucket, look every one
// up and prefetch its entry, then complete each. Same verdicts as calling
// process_frame on each packet in order.
inline constexpr uint16_t kMaxBurst = 64;
struct BurstPacket {
  uint8_t* frame = nullptr;
  uint32_t len = 0;  // in: frame length; out: may shrink (padding trimmed) or grow (ICMP error)
  uint32_t capacity = 0;  // bytes writable from `frame`; 0: len
  ParseOptions options;
  Outcome outcome;
};
void process_burst(WorkerState& worker, const Snapshot& snapshot, const NeighborTable& neighbors, BurstPacket* packets,
                   uint16_t count, uint16_t in_port, uint64_t now);
// The same for a worker whose flow table fits its core's caches: no line of
// the table is requested ahead (the same verdicts, fewer instructions).
void process_burst_cache_resident(WorkerState& worker, const Snapshot& snapshot, const NeighborTable& neighbors,
                                  BurstPacket* packets, uint16_t count, uint16_t in_port, uint64_t now);

// A packet between the stages of a burst: classified, then looked up in the
// flow table, then completed, so the table's cache lines for the whole burst
// are in flight before the first packet needs them.
struct PacketWork {
  ParsedFrame parsed;  // not filled in the fast lane
  FlowKeyV4 key;
  uint64_t hash = 0;
  uint32_t index = FlowTable::kNoEntry;
  bool to_snat = false;
  bool needs_flow = false;  // false: `outcome` is final
  // The fast lane: a plain TCP or UDP datagram whose address checks wait
  // for its connection (complete_fast); with its TCP flags and its length
  // without Ethernet padding.
  bool fast = false;
  uint8_t tcp_flags = 0;
  uint32_t frame_len = 0;
  Outcome outcome;
};

// process_burst's stages stretched across bursts, as a worker under load
// runs them: each step completes the oldest burst in flight, looks the next
// one up in the flow table (requesting its entries), and classifies the
// newest (requesting its buckets). A flow table line so has a whole burst's
// work to arrive in, where within one burst the first entries and the last
// buckets get almost none (at 1M flows, most of what a packet costs above
// the in-cache figure; see docs/benchmarks.md).
//
// Bursts come out in the order they went in, each packet with the verdict
// process_burst would give it (the same stages in the same order: a burst's
// lookup runs after the previous burst completed). A packet waits for at
// most two more bursts; when no burst arrives the caller drains the
// pipeline at once, so at low rates nothing waits.
//
// A table whose connections all fit in the core's caches gains nothing from
// the wait: push() then runs each burst through all three stages at once,
// after draining what is in flight (16 connections over memif: 2-4% more
// packets a second; in-process at 1Ki connections 62.9 -> 60.2 cycles a
// packet). Beyond the cache the wait is what pays: at 1Mi, 77 cycles a
// packet against 93 for the same bursts one at a time (docs/benchmarks.md).
//
// A burst is judged wholly by the snapshot it was classified under, as if
// it had gone through at once before a reload: a burst keeps a pointer to
// it, so the caller must keep that snapshot alive until the burst is out
// (the worker drains the pipeline when it sees a new one, and the control
// thread frees a snapshot only after two grace periods: run_worker).
class BurstPipeline {
 public:
  static constexpr int kDepth = 3;
  // Up to this many connections (two 64-byte entries each: 1 MiB, a core's
  // L2 on current x86) a worker's table stays in cache.
  static constexpr uint32_t kCacheResidentConnections = 8192;
  explicit BurstPipeline(uint32_t pipeline_above_connections = kCacheResidentConnections)
      : pipeline_above_(pipeline_above_connections) {}
  // Tests switch modes with it while bursts are in flight.
  void set_pipeline_above(uint32_t connections) { pipeline_above_ = connections; }
  struct Burst {
    BurstPacket pkts[kMaxBurst];
    void* user[kMaxBurst];  // the caller's handle of each packet (an mbuf)
    uint16_t n = 0;
    uint16_t in_port = 0;
    const Snapshot* snapshot = nullptr;  // classified under it; completed under it
    PacketWork work[kMaxBurst];
  };

  // Where the next burst goes: fill pkts, user, n and in_port, then step(filled = true).
  Burst& next() { return bursts_[free_index()]; }
  // Advances every burst in flight one stage, taking in next() if `filled`
  // (classified under `snapshot`; the others finish under their own).
  // Returns the burst completed now (valid until the next call), or nullptr.
  Burst* step(WorkerState& worker, const Snapshot& snapshot, const NeighborTable& neighbors, bool filled,
              uint64_t now);
  bool empty() const { return classified_ < 0 && looked_up_ < 0; }
  // Whether a burst in flight was classified under another snapshot.
  bool holds_other_than(const Snapshot& snapshot) const {
    return (classified_ >= 0 && bursts_[classified_].snapshot != &snapshot) ||
           (looked_up_ >= 0 && bursts_[looked_up_].snapshot != &snapshot);
  }
  // Takes in next(): through the pipeline (step), or, while the worker's
  // table is cache-resident, through all stages at once. Calls on_done(Burst&)
  // for every burst completed, in the order they went in.
  template <typename OnDone>
  void push(WorkerState& worker, const Snapshot& snapshot, const NeighborTable& neighbors, uint64_t now,
            OnDone&& on_done) {
    if (worker.flows.connections() > pipeline_above_) {
      if (Burst* done = step(worker, snapshot, neighbors, true, now)) on_done(*done);
      return;
    }
    Burst& b = next();
    drain(worker, neighbors, now, on_done);
    if (b.n > kMaxBurst) b.n = kMaxBurst;
    b.snapshot = &snapshot;
    process_burst_cache_resident(worker, snapshot, neighbors, b.pkts, b.n, b.in_port, now);
    on_done(b);
  }
  // Completes every burst in flight, each under its own snapshot.
  template <typename OnDone>
  void drain(WorkerState& worker, const NeighborTable& neighbors, uint64_t now, OnDone&& on_done) {
    while (!empty())
      if (Burst* done = advance(worker, neighbors, nullptr, now)) on_done(*done);
  }
  // Which of the kDepth bursts `b` is (callers keep per-burst buffers).
  int index_of(const Burst& b) const { return static_cast<int>(&b - bursts_); }

 private:
  int free_index() const;
  // step(), with the snapshot the burst taken in is classified under, or
  // nullptr when none is taken in.
  Burst* advance(WorkerState& worker, const NeighborTable& neighbors, const Snapshot* filled_under, uint64_t now);
  uint32_t pipeline_above_;
  Burst bursts_[kDepth];
  int classified_ = -1;  // classified, buckets requested
  int looked_up_ = -1;   // candidates found, entries requested
};

// The flow hash Maglev picks a backend by: seeded, platform independent, so
// appliances with the same seed and services agree on every flow.
uint64_t maglev_flow_hash(const FlowKeyV4& key, uint64_t seed);

}  // namespace nplb
