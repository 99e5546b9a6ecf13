#include "processor.hpp"

#include <cstring>

#include "checksum.hpp"

namespace nplb {

WorkerState::WorkerState(const WorkerConfig& config)
    : id(config.id),
      flows(config.flow_capacity, config.numa_node),
      snat(config.snat_first, config.snat_last, config.snat_pools),
      service_packets(new uint64_t[kMaxServicePorts]()),
      backend_packets(new uint64_t[kMaxBackends]()),
      affinity(config.affinity_sets),
      rss(config.rss),
      rejects_per_second(config.rejects_per_second),
      flood_threshold(config.flood_new_flows_per_second / 10) {}

void WorkerState::watch_flood(uint64_t now, uint64_t tsc_hz) {
  if (tsc_hz == 0) return;
  if (flood_window_start == 0) {
    flood_window_start = now;
    flood_window_flows = counters.flows_created;
    return;
  }
  if (now - flood_window_start < tsc_hz / 10) return;
  uint64_t opened = counters.flows_created - flood_window_flows;
  bool flood = opened > flood_threshold;
  if (flood) ++counters.flood_windows;
  flows.set_flood(flood);
  flood_window_start = now;
  flood_window_flows = counters.flows_created;
}

uint32_t WorkerState::expire(uint64_t now) {
  uint32_t n = flows.expire_due(now, [this](const FlowEntry& e) { release_snat(e); });
  counters.flows_expired += n;
  return n;
}

void WorkerState::insert_pending_replies(uint64_t now) {
  // Their buckets were requested when the SNAT ports were chosen; now the
  // entry lines they will take, then the inserts.
  for (uint32_t i = 0; i < pending_reply_count; ++i)
    if (uint32_t line = flows.free_candidate(pending_replies[i].reply_hash)) __builtin_prefetch(&flows.entry(line), 1);
  for (uint32_t i = 0; i < pending_reply_count; ++i) {
    const PendingReply& p = pending_replies[i];
    uint32_t placed = flows.insert_reply(p.original, p.original_key, p.original_hash, p.reply, p.reply_hash, now);
    if (placed == FlowTable::kNoEntry) {
      snat.release(p.pool, p.snat_port);
      ++counters.flows_rolled_back;
    }  // kOriginalGone: removed meanwhile, its port already returned
  }
  pending_reply_count = 0;
}

uint64_t maglev_flow_hash(const FlowKeyV4& key, uint64_t seed) { return hash_bytes(&key, 13, seed); }

namespace {

// The per-packet steps are inlined into the burst loops; what only some
// packets need (new connections, refusals, ARP, ICMP) stays out of line so
// the loops stay small.
#define NPLB_HOT inline __attribute__((always_inline))
#define NPLB_COLD __attribute__((noinline, cold))

// Offsets inside an IPv4 header, and inside TCP/UDP headers.
constexpr size_t kIpTtl = 8, kIpChecksum = 10, kIpSrc = 12, kIpDst = 16;
constexpr size_t kTcpChecksum = 16, kUdpChecksum = 6;

struct Frame {
  uint8_t* bytes;
  const ParsedFrame& parsed;
  uint32_t& len;
  uint32_t capacity;
  uint16_t in_port;
  uint8_t* ip() const { return bytes + parsed.l3_offset; }
  uint8_t* l4() const { return bytes + parsed.l4_offset; }
};

uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// RFC 1122 3.2.1.3 / RFC 1812 5.3.7: a router must not forward packets from
// these sources.
bool is_martian_source(uint32_t src_be) {
  uint32_t src = __builtin_bswap32(src_be);
  return src == 0 || src == 0xffffffff || (src >> 24) == 127 || (src >> 28) == 0xe;
}

// Whether packets between these addresses get past every address check of
// classify_ipv4 on any port: to a frontend or SNAT address that is no
// port's kernel address, from a source that is neither martian nor ours.
// What a connection must satisfy for its packets to skip those checks.
bool addresses_admit(const Snapshot& s, uint32_t src_be, uint32_t dst_be) {
  if (!(s.roles_of(dst_be) & (Snapshot::kFrontend | Snapshot::kSnat))) return false;
  for (const PortView& port : s.ports)
    if (port.kernel_be == dst_be) return false;
  return !is_martian_source(src_be) && !(s.roles_of(src_be) & Snapshot::kLocal);
}

// Rewrites addresses and ports, decrements TTL, and updates both checksums
// by the flow's precomputed RFC 1624 differences: a checksum that arrived
// bad leaves bad.
NPLB_HOT void translate_at(uint8_t* ip, uint8_t* l4, bool udp, const FlowEntry& e) {
  ip[kIpTtl] -= 1;
  store16(ip + kIpChecksum, checksum_apply(load16(ip + kIpChecksum), e.ip_checksum_delta));
  store32(ip + kIpSrc, e.new_src_be);
  store32(ip + kIpDst, e.new_dst_be);

  uint8_t* l4_sum_at = l4 + (udp ? kUdpChecksum : kTcpChecksum);
  uint16_t l4_sum = load16(l4_sum_at);
  // RFC 768: a UDP checksum of zero over IPv4 means "none"; it stays zero.
  if (!(udp && l4_sum == 0)) {
    l4_sum = checksum_apply(l4_sum, e.l4_checksum_delta);
    // RFC 768: a computed zero is sent as all ones.
    if (udp && l4_sum == 0) l4_sum = 0xffff;
    store16(l4_sum_at, l4_sum);
  }
  store16(l4, e.new_src_port_be);
  store16(l4 + 2, e.new_dst_port_be);
}
NPLB_HOT void translate(uint8_t* bytes, const ParsedFrame& p, const FlowEntry& e) {
  translate_at(bytes + p.l3_offset, bytes + p.l4_offset, p.protocol == static_cast<uint8_t>(L4Protocol::udp), e);
}

static_assert(std::endian::native == std::endian::little, "MAC words are stored little-endian");

NPLB_HOT bool set_macs(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, uint8_t* frame, uint16_t tx_port,
              uint32_t next_hop_be) {
  uint64_t dst;
  if (!neighbors.lookup_word(next_hop_be, dst)) {
    const WorkerState::GleanedNeighbor& g = w.gleaned[WorkerState::gleaned_slot(next_hop_be)];
    if (g.ip_be != next_hop_be) {
      w.drop(DropReason::neighbor_unresolved);
      w.events.push(WorkerEvent{WorkerEvent::Kind::next_hop_wanted, tx_port, next_hop_be, {}});
      return false;
    }
    std::memcpy(frame, g.mac.bytes.data(), 6);
  } else {
    // Whole words from a register: byte-wise copies here stall the next load.
    store32(frame, static_cast<uint32_t>(dst));
    store16(frame + 4, static_cast<uint16_t>(dst >> 32));
  }
  std::memcpy(frame + 6, s.ports[tx_port].mac.bytes.data(), 6);
  return true;
}

// TCP state of a connection, moved by what each direction sends. Both
// entries carry it, so a packet reads only its own; a change writes both.
NPLB_HOT void track_tcp(FlowTable& flows, FlowEntry& e, uint8_t flags) {
  FlowState state = e.state.load(std::memory_order_relaxed);
  // Nearly every segment: an established connection's data or ACK. Decided
  // without looking at the direction, which alternates unpredictably.
  if (state == FlowState::established && !(flags & (kTcpSyn | kTcpFin | kTcpRst))) return;
  FlowDirection direction = e.direction;
  FlowState next = state;
  if (flags & (kTcpRst | kTcpFin)) {
    next = FlowState::closing;
  } else if (direction == FlowDirection::reply && state == FlowState::syn_sent && (flags & kTcpAck)) {
    next = FlowState::established;  // the backend answered the SYN
  } else if (direction == FlowDirection::original && (flags & kTcpSyn) && state == FlowState::closing) {
    next = FlowState::syn_sent;  // the client reuses its port for a new connection
  }
  if (next != state) {
    e.state.store(next, std::memory_order_relaxed);
    if (e.partner != FlowTable::kNoEntry)  // none yet: insert_reply copies the state
      flows.entry(e.partner).state.store(next, std::memory_order_relaxed);
  }
}

// RFC 9293 3.1 allows any flag mix on the wire, but these never occur in a
// real connection and are scanner or attack signatures: no state for them.
bool is_illegal_tcp_flags(uint8_t flags) {
  constexpr uint8_t kCore = kTcpSyn | kTcpFin | kTcpRst | kTcpAck;
  if ((flags & (kTcpSyn | kTcpFin)) == (kTcpSyn | kTcpFin)) return true;
  if ((flags & (kTcpSyn | kTcpRst)) == (kTcpSyn | kTcpRst)) return true;
  return (flags & (kCore | kTcpPsh | kTcpUrg)) == 0;  // null scan
}

Outcome dropped(WorkerState& w, DropReason r) {
  w.drop(r);
  return Outcome{Action::drop, 0};
}

// Applies a flow entry's translation and addresses the frame to its next hop.
// The frame as bytes and parse (no Frame: building one per packet cost
// stores the hot path never reads).
NPLB_HOT Outcome forward_by(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, uint8_t* bytes,
                            const ParsedFrame& p, const FlowEntry& e) {
  if (!set_macs(w, s, neighbors, bytes, e.tx_port, e.next_hop_be)) return Outcome{Action::drop, 0};
  translate(bytes, p, e);
  ++w.service_packets[e.service_id];
  ++w.backend_packets[e.backend_id];
  ++w.counters.forwarded;
  return Outcome{Action::forward, e.tx_port};
}

bool take_reject_token(WorkerState& w, const Snapshot& s, uint64_t now) {
  if (s.tsc_hz == 0) return true;  // no clock (fixtures): unlimited
  uint64_t per_token = s.tsc_hz / std::max<uint32_t>(1, w.rejects_per_second);
  if (w.reject_refill_tsc == 0) {
    w.reject_refill_tsc = now;
    w.reject_tokens = w.rejects_per_second;
  }
  uint64_t earned = (now - w.reject_refill_tsc) / std::max<uint64_t>(1, per_token);
  if (earned) {
    w.reject_tokens = std::min<uint64_t>(w.rejects_per_second, w.reject_tokens + earned);
    w.reject_refill_tsc += earned * per_token;
  }
  if (w.reject_tokens == 0) return false;
  --w.reject_tokens;
  return true;
}

// Rewrites the frame into an IPv4 header from `src_be` to `dst_be` back to
// the sender: Ethernet addresses swapped (the sender's MAC is the way back).
void address_back(const Snapshot& s, const Frame& f, uint32_t src_be, uint32_t dst_be, uint8_t protocol,
                  uint16_t total_len) {
  std::memcpy(f.bytes, f.bytes + 6, 6);
  std::memcpy(f.bytes + 6, s.ports[f.in_port].mac.bytes.data(), 6);
  uint8_t* ip = f.ip();
  ip[0] = 0x45;
  ip[1] = 0;
  store16(ip + 2, __builtin_bswap16(total_len));
  store16(ip + 4, 0);
  store16(ip + 6, __builtin_bswap16(0x4000));  // DF
  ip[kIpTtl] = 64;
  ip[9] = protocol;
  store32(ip + kIpSrc, src_be);
  store32(ip + kIpDst, dst_be);
  store16(ip + kIpChecksum, 0);
  store16(ip + kIpChecksum, ipv4_header_checksum(ip, kIpv4MinHeaderLen));
}

// RFC 9293 3.10.7.1, a segment for a closed port: "If the ACK bit is on,
// <SEQ=SEG.ACK><CTL=RST>; otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>".
// Never a reset in answer to a reset.
bool build_tcp_reset(const Snapshot& s, const Frame& f) {
  const uint8_t* tcp = f.l4();
  uint8_t flags = tcp[13];
  if (flags & kTcpRst) return false;
  uint32_t src_be = load32(f.ip() + kIpSrc), dst_be = load32(f.ip() + kIpDst);
  uint16_t sport = load16(tcp), dport = load16(tcp + 2);
  uint32_t seq = load_be32(tcp + 4), ack = load_be32(tcp + 8);
  uint32_t data_len = f.parsed.l4_len - (tcp[12] >> 4) * 4u;
  uint32_t seg_len = data_len + ((flags & kTcpSyn) ? 1 : 0) + ((flags & kTcpFin) ? 1 : 0);

  address_back(s, f, dst_be, src_be, static_cast<uint8_t>(L4Protocol::tcp), 40);
  uint8_t* out = f.ip() + kIpv4MinHeaderLen;
  store16(out, dport);
  store16(out + 2, sport);
  bool has_ack = flags & kTcpAck;
  store32(out + 4, __builtin_bswap32(has_ack ? ack : 0));
  store32(out + 8, __builtin_bswap32(has_ack ? 0 : seq + seg_len));
  out[12] = 5 << 4;
  out[13] = has_ack ? kTcpRst : (kTcpRst | kTcpAck);
  store16(out + 14, 0);  // window
  store16(out + 16, 0);
  store16(out + 18, 0);
  store16(out + 16, ipv4_l4_checksum(dst_be, src_be, 6, out, 20));
  f.len = f.parsed.l3_offset + 40u;
  return true;
}

// RFC 792 destination unreachable, code 3 (port unreachable), quoting the
// datagram's IP header and first 8 bytes (RFC 1812 4.3.2.3 allows more; 8
// is what every stack needs to find the socket).
bool build_port_unreachable(const Snapshot& s, const Frame& f) {
  uint32_t quote = (f.parsed.l4_offset - f.parsed.l3_offset) + 8u;
  uint32_t capacity = f.capacity ? f.capacity : f.len;
  if (f.parsed.l3_offset + kIpv4MinHeaderLen + 8u + quote > capacity) return false;
  uint32_t src_be = load32(f.ip() + kIpSrc), dst_be = load32(f.ip() + kIpDst);
  std::memmove(f.ip() + kIpv4MinHeaderLen + 8, f.ip(), quote);
  address_back(s, f, dst_be, src_be, static_cast<uint8_t>(L4Protocol::icmp),
               static_cast<uint16_t>(kIpv4MinHeaderLen + 8 + quote));
  uint8_t* icmp = f.ip() + kIpv4MinHeaderLen;
  icmp[0] = 3;
  icmp[1] = 3;
  store16(icmp + 2, 0);
  store32(icmp + 4, 0);
  store16(icmp + 2, fold_checksum(ones_complement_add(0, icmp, 8 + quote)));
  f.len = f.parsed.l3_offset + kIpv4MinHeaderLen + 8u + quote;
  return true;
}

// A connection nplb will not serve is refused, not left to time out
// (Kubernetes e2e: "no endpoints: connections are refused"). Counted under
// `reason` either way; answered while the rate allows.
NPLB_COLD Outcome refuse(WorkerState& w, const Snapshot& s, const Frame& f, DropReason reason, uint64_t now) {
  w.drop(reason);
  if (!take_reject_token(w, s, now)) {
    ++w.counters.rejects_rate_limited;
    return Outcome{Action::drop, 0};
  }
  bool built = f.parsed.protocol == static_cast<uint8_t>(L4Protocol::tcp) ? build_tcp_reset(s, f)
                                                                         : build_port_unreachable(s, f);
  if (!built) return Outcome{Action::drop, 0};
  ++w.counters.rejects_sent;
  return Outcome{Action::reject, f.in_port};
}

// The backend for a new connection: the client's remembered one for
// ClientIP affinity, else Maglev. Returns an index into s.backends, or
// UINT32_MAX.
uint32_t choose_backend(WorkerState& w, const Snapshot& s, const ServicePortView& service, const FlowKeyV4& key,
                        uint64_t now) {
  if (service.affinity_timeout_tsc == 0) {
    uint32_t chosen = service.maglev->lookup(maglev_flow_hash(key, s.maglev_seed));
    return chosen == MaglevTable::kNoBackend ? UINT32_MAX : service.first_backend + chosen;
  }
  uint32_t remembered;
  uint32_t index = UINT32_MAX;
  if (w.affinity.lookup(key.src_be, service.stable_id, now, service.affinity_timeout_tsc, remembered)) {
    for (uint32_t i = 0; i < service.backend_count; ++i)
      if (s.backends[service.first_backend + i].stable_id == remembered) {
        index = service.first_backend + i;
        break;
      }
  }
  if (index == UINT32_MAX) {
    // By client address alone: every worker and appliance agrees.
    uint32_t chosen = service.maglev->lookup(hash_bytes(&key.src_be, 4, s.maglev_seed));
    if (chosen == MaglevTable::kNoBackend) return UINT32_MAX;
    index = service.first_backend + chosen;
  }
  w.affinity.remember(key.src_be, service.stable_id, s.backends[index].stable_id, now);
  return index;
}

// A packet of no known connection to a frontend: pick a backend, a SNAT
// port, and record both directions.
NPLB_COLD Outcome open_connection(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, const Frame& f,
                        const FlowKeyV4& key, uint64_t hash, uint64_t now) {
  const ServicePortView* service = s.find_service(key.dst_be, key.dst_port_be, key.protocol);
  if (!service) return refuse(w, s, f, DropReason::no_service, now);
  if (service->backend_count == 0) return refuse(w, s, f, DropReason::no_backend, now);
  uint32_t chosen = choose_backend(w, s, *service, key, now);
  if (chosen == UINT32_MAX) return refuse(w, s, f, DropReason::no_backend, now);
  const BackendView& backend = s.backends[chosen];
  if (!backend.route.found) return dropped(w, DropReason::no_route);
  Route to_client = s.route_to(key.src_be);
  if (!to_client.found) return dropped(w, DropReason::no_route);
  if (to_client.next_hop_be == key.src_be) {
    // An on-link client: its MAC is the frame's source.
    WorkerState::GleanedNeighbor& g = w.gleaned[WorkerState::gleaned_slot(key.src_be)];
    g.ip_be = key.src_be;
    std::memcpy(g.mac.bytes.data(), f.bytes + 6, 6);
  }

  // SNAT address by flow hash, then the others if its pool toward this
  // backend is exhausted.
  uint32_t snat_count = static_cast<uint32_t>(s.snat_be.size());
  uint32_t pool = SnatPorts::kNoPool, snat_be = 0;
  uint16_t snat_port = 0;
  for (uint32_t i = 0; i < snat_count && snat_port == 0; ++i) {
    snat_be = s.snat_be[(hash + i) % snat_count];
    pool = w.snat.pool_for(SnatPoolKey{snat_be, backend.address_be, backend.port_be, key.protocol, 0});
    if (pool == SnatPorts::kNoPool) continue;
    if (!w.rss.enabled) {
      snat_port = w.snat.acquire(pool);
    } else {
      // About one port in `queues` sends its reply to our queue.
      uint32_t tries = 64u * w.rss.queues;
      snat_port = w.snat.acquire_if(
          pool,
          [&](uint16_t port) { return w.rss.reply_lands_here(backend.address_be, snat_be, backend.port_be, port); },
          tries);
    }
  }
  if (snat_port == 0) return dropped(w, DropReason::snat_exhausted);
  uint16_t snat_port_be = __builtin_bswap16(snat_port);
  // The reply's key is known now: request its bucket while both entries are
  // filled in (nothing earlier could: the SNAT port was just chosen).
  FlowKeyV4 reply_key{backend.address_be, snat_be, backend.port_be, snat_port_be, key.protocol, {0, 0, 0}};
  uint64_t reply_hash = flow_key_hash(reply_key);
  w.flows.prefetch(reply_hash);

  FlowEntry original;
  original.key = key;
  original.new_src_be = snat_be;
  original.new_dst_be = backend.address_be;
  original.new_src_port_be = snat_port_be;
  original.new_dst_port_be = backend.port_be;
  original.service_id = static_cast<uint16_t>(service->stable_id);
  original.backend_id = backend.stable_id;
  original.tx_port = static_cast<uint8_t>(backend.route.port);
  original.next_hop_be = backend.route.next_hop_be;
  original.snat_pool = static_cast<uint16_t>(pool);

  FlowState state = key.protocol == static_cast<uint8_t>(L4Protocol::tcp) ? FlowState::syn_sent : FlowState::established;
  if (w.pending_reply_count == WorkerState::kPendingReplies) w.insert_pending_replies(now);
  uint32_t index = w.flows.insert_original(original, hash, state, now);
  if (index == FlowTable::kNoEntry) {
    // Full: make room from embryonic connections only; established ones are
    // never evicted for new ones. Connections opened earlier in this burst
    // are completed first, so they can be evicted as if packet by packet.
    if (w.pending_reply_count) w.insert_pending_replies(now);
    auto release = [&w](const FlowEntry& e) { w.release_snat(e); };
    if (w.flows.evict_embryonic(64, release)) {
      ++w.counters.flows_evicted;
      index = w.flows.insert_original(original, hash, state, now);
    }
    if (index == FlowTable::kNoEntry) {
      w.snat.release(pool, snat_port);
      return dropped(w, DropReason::flow_table_full);
    }
  }
  if (!addresses_admit(s, key.src_be, key.dst_be) || !addresses_admit(s, backend.address_be, snat_be)) {
    // Its packets must keep being checked, and so must everyone's until a
    // walk over the table finds it gone.
    w.trusted_address_epoch = 0;
    w.address_walk.failed = true;
  } else if (w.trusted_address_epoch != s.address_epoch) {
    // Checked under this snapshot's addresses, not under those the table
    // was trusted for: that trust ends (a walk earns it back).
    w.trusted_address_epoch = 0;
  }
  // A walk vouches for the entries it reads and for connections opened
  // meanwhile under its own addresses (checked just above). One opened
  // under other addresses may sit behind its cursor unread: it starts over.
  if (w.address_walk.epoch != s.address_epoch) w.address_walk.epoch = 0;
  WorkerState::PendingReply& pending = w.pending_replies[w.pending_reply_count++];
  pending.original = index;
  pending.original_key = key;
  pending.original_hash = hash;
  pending.reply_hash = reply_hash;
  pending.pool = pool;
  pending.snat_port = snat_port;
  FlowEntry& reply = pending.reply;
  reply.key = reply_key;
  reply.new_src_be = key.dst_be;
  reply.new_dst_be = key.src_be;
  reply.new_src_port_be = key.dst_port_be;
  reply.new_dst_port_be = key.src_port_be;
  reply.service_id = static_cast<uint16_t>(service->stable_id);
  reply.backend_id = backend.stable_id;
  reply.tx_port = static_cast<uint8_t>(to_client.port);
  reply.next_hop_be = to_client.next_hop_be;
  reply.snat_pool = static_cast<uint16_t>(pool);
  ++w.counters.flows_created;
  w.flows_changed_in_burst = true;
  return forward_by(w, s, neighbors, f.bytes, f.parsed, w.flows.entry(index));
}

NPLB_COLD Outcome handle_arp(WorkerState& w, const Snapshot& s, uint8_t* frame, const ParsedFrame& p, uint16_t in_port) {
  uint8_t* arp = frame + p.l3_offset;
  // RFC 826: Ethernet (1) / IPv4 (0x0800), 6-byte and 4-byte addresses.
  if (load_be16(arp) != 1 || load_be16(arp + 2) != kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4)
    return dropped(w, DropReason::arp_ignored);
  uint16_t op = load_be16(arp + 6);
  uint32_t sender_ip = load32(arp + 14), target_ip = load32(arp + 24);
  MacAddr sender_mac;
  std::memcpy(sender_mac.bytes.data(), arp + 8, 6);
  if ((op != 1 && op != 2) || sender_mac.is_multicast()) return dropped(w, DropReason::arp_ignored);

  bool for_us = Snapshot::contains(s.ports[in_port].arp_answers_be, target_ip);
  bool on_link = false;
  for (const Cidr& subnet : s.ports[in_port].subnets)
    on_link |= subnet.contains(IpAddr::v4_be(sender_ip));
  // RFC 826 merge: learn the sender when the packet is for us; a known
  // sender's update (including gratuitous ARP) is merged by the control
  // thread, which knows the table. Off-link senders are never learned.
  if (on_link && sender_ip != 0 && !s.is_local(sender_ip)) {
    if (w.events.push(WorkerEvent{WorkerEvent::Kind::arp_learned, in_port, sender_ip, sender_mac}))
      ++w.counters.arp_learned;
    else
      w.drop(DropReason::exception_ring_full);
  }
  if (!for_us) return dropped(w, DropReason::arp_ignored);
  if (op != 1) {
    // A reply to the kernel's own request: the kernel learns its neighbour.
    if (target_ip == s.ports[in_port].kernel_be) {
      ++w.counters.to_kernel;
      return Outcome{Action::to_kernel, in_port};
    }
    return Outcome{Action::consumed, in_port};
  }

  // Answer in place: the reply goes back to the asker.
  const MacAddr& ours = s.ports[in_port].mac;
  std::memcpy(frame, sender_mac.bytes.data(), 6);
  std::memcpy(frame + 6, ours.bytes.data(), 6);
  arp[7] = 2;
  std::memcpy(arp + 18, arp + 8, 10);  // target hw + ip := sender's
  std::memcpy(arp + 8, ours.bytes.data(), 6);
  store32(arp + 14, target_ip);
  ++w.counters.arp_replies;
  return Outcome{Action::reply, in_port};
}

NPLB_COLD Outcome answer_echo(WorkerState& w, const Snapshot& s, const Frame& f, uint32_t& len, uint16_t in_port) {
  uint8_t* ip = f.ip();
  uint8_t* icmp = f.l4();
  // RFC 792: echo request is type 8; anything else to us has no handler here.
  if (f.parsed.is_fragment || f.parsed.l4_len < 8 || icmp[0] != 8 || icmp[1] != 0)
    return dropped(w, DropReason::icmp_ignored);
  uint16_t old_word = load16(icmp);
  icmp[0] = 0;
  store16(icmp + 2, checksum_update16(load16(icmp + 2), old_word, load16(icmp)));
  uint32_t src = load32(ip + kIpSrc);
  store32(ip + kIpSrc, load32(ip + kIpDst));
  store32(ip + kIpDst, src);
  ip[kIpTtl] = 64;
  store16(ip + kIpChecksum, 0);
  store16(ip + kIpChecksum, ipv4_header_checksum(ip, f.parsed.l4_offset - f.parsed.l3_offset));
  std::memcpy(f.bytes, f.bytes + 6, 6);  // back to the sender's MAC
  std::memcpy(f.bytes + 6, s.ports[in_port].mac.bytes.data(), 6);
  len = f.parsed.frame_len;
  ++w.counters.icmp_echo_replies;
  return Outcome{Action::reply, in_port};
}

}  // namespace

namespace {

// An IPv4 frame up to the flow lookup. kCommonShape: parse_common_ipv4
// accepted it, so its offsets are constants and it is an unfragmented TCP or
// UDP datagram (checks the compiler then leaves out).
// The addresses' part of it: the kernel's address, the appliance's own,
// ICMP, martian sources. True: decided (work.outcome); false: the packet
// goes on to the flow table, work.to_snat set.
template <bool kCommonShape>
NPLB_HOT bool decide_by_addresses(WorkerState& w, const Snapshot& s, uint8_t* bytes, uint32_t& len, uint32_t capacity,
                                  uint16_t in_port, PacketWork& work, uint32_t src_be, uint32_t dst_be) {
  const ParsedFrame& p = work.parsed;
  auto frame = [&] { return Frame{bytes, p, len, capacity, in_port}; };  // for the rare paths only
  // The kernel's own address on this port (health probes, BGP, ssh): the
  // kernel gets the frame as it is, through the control thread's tap.
  if (dst_be != 0 && dst_be == s.ports[in_port].kernel_be) {
    ++w.counters.to_kernel;
    work.outcome = Outcome{Action::to_kernel, in_port};
    return true;
  }
  // Bit tests rather than && chains: a burst mixes packets to frontends and
  // to SNAT addresses at random, and a branch on which it is mispredicts.
  uint8_t dst_roles = s.roles_of(dst_be);
  bool to_frontend = dst_roles & Snapshot::kFrontend;
  bool to_snat = (dst_roles & (Snapshot::kFrontend | Snapshot::kSnat)) == Snapshot::kSnat;
  // Never forward or answer for a broadcast, loopback or our own source.
  bool martian = is_martian_source(src_be) | ((s.roles_of(src_be) & Snapshot::kLocal) != 0);
  bool icmp = !kCommonShape && p.protocol == static_cast<uint8_t>(L4Protocol::icmp);
  if (!(dst_roles & (Snapshot::kFrontend | Snapshot::kSnat))) {
    if (!(dst_roles & Snapshot::kLocal)) {
      work.outcome = dropped(w, DropReason::not_for_us);
    } else if (martian) {
      work.outcome = dropped(w, DropReason::martian_source);
    } else if (icmp) {
      work.outcome = answer_echo(w, s, frame(), len, in_port);
    } else {
      work.outcome = dropped(w, DropReason::to_appliance);
    }
    return true;
  }
  if (martian) {
    work.outcome = dropped(w, DropReason::martian_source);
    return true;
  }
  if (icmp) {
    work.outcome = to_frontend ? answer_echo(w, s, frame(), len, in_port) : dropped(w, DropReason::icmp_ignored);
    return true;
  }
  work.to_snat = to_snat;
  return false;
}

template <bool kCommonShape>
NPLB_HOT void classify_ipv4(WorkerState& w, const Snapshot& s, uint8_t* bytes, uint32_t& len, uint32_t capacity,
                            uint16_t in_port, PacketWork& work) {
  const ParsedFrame& p = work.parsed;
  const uint8_t* ip = bytes + (kCommonShape ? kEthernetHeaderLen : p.l3_offset);
  uint32_t src_be = load32(ip + kIpSrc), dst_be = load32(ip + kIpDst);

  // Unicast frames for another station (a bridge flooding, a promiscuous
  // port) are not ours to route.
  if (!(bytes[0] & 1) && std::memcmp(bytes, s.ports[in_port].mac.bytes.data(), 6) != 0) {
    work.outcome = dropped(w, DropReason::not_for_us);
    return;
  }
  if (decide_by_addresses<kCommonShape>(w, s, bytes, len, capacity, in_port, work, src_be, dst_be)) return;
  // Fragments are not balanced: only the first carries ports, and without
  // reassembly the rest could not follow it (DPVS makes the same call).
  DropReason reason = DropReason::count;
  if (!kCommonShape && p.is_fragment) {
    reason = DropReason::fragment;
  } else if (!kCommonShape && p.protocol != static_cast<uint8_t>(L4Protocol::tcp) &&
             p.protocol != static_cast<uint8_t>(L4Protocol::udp)) {
    reason = DropReason::unsupported_protocol;
  } else if (ip[kIpTtl] <= 1) {
    // RFC 1812 5.3.1: a router must not forward a packet whose TTL would reach 0.
    reason = DropReason::ttl_exceeded;
  } else if (p.protocol == static_cast<uint8_t>(L4Protocol::tcp) && is_illegal_tcp_flags(p.tcp_flags)) {
    reason = DropReason::invalid_tcp_flags;
  }
  if (reason != DropReason::count) {
    work.outcome = dropped(w, reason);
    return;
  }
  len = p.frame_len;  // trim Ethernet padding: checksums cover the IP length only
  work.key = FlowKeyV4{src_be, dst_be, p.src_port_be, p.dst_port_be, p.protocol, {0, 0, 0}};
  work.hash = flow_hash_words(uint64_t(src_be) | uint64_t(dst_be) << 32,
                              uint64_t(p.src_port_be) | uint64_t(p.dst_port_be) << 16 | uint64_t(p.protocol) << 32);
  work.needs_flow = true;
}

// Everything up to the flow lookup. Sets work.needs_flow, or work.outcome.
NPLB_HOT void classify(WorkerState& w, const Snapshot& s, uint8_t* bytes, uint32_t& len, uint32_t capacity, uint16_t in_port,
              ParseOptions options, PacketWork& work) {
  work.needs_flow = false;
  work.fast = false;
  ParsedFrame& p = work.parsed;
  if (parse_common_ipv4(bytes, len, options, p))
    return classify_ipv4<true>(w, s, bytes, len, capacity, in_port, work);
  parse_frame_into(bytes, len, options, p);
  switch (p.kind) {
    case FrameKind::drop:
      work.outcome = dropped(w, p.drop_reason);
      return;
    case FrameKind::arp:
      work.outcome = handle_arp(w, s, bytes, p, in_port);
      return;
    case FrameKind::ipv6:
      work.outcome = dropped(w, DropReason::ipv6_not_supported);
      return;
    case FrameKind::ipv4:
      return classify_ipv4<false>(w, s, bytes, len, capacity, in_port, work);
  }
}

// After the lookup: an existing connection's packet, or a new connection.
NPLB_HOT Outcome complete(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, uint8_t* bytes, uint32_t& len,
                 uint32_t capacity, uint16_t in_port, PacketWork& work, uint64_t now) {
  // The frame as the rare paths (new connections, resets) take it.
  auto frame = [&] { return Frame{bytes, work.parsed, len, capacity, in_port}; };
  bool tcp = work.parsed.protocol == static_cast<uint8_t>(L4Protocol::tcp);
  // The bucket stage gave a candidate by signature: confirm its key (the
  // entry's line was requested a stage ago). The lookup also ran for the
  // whole burst before any packet completed: an earlier packet of this burst
  // may have opened this connection (SYN then ACK) or freed the entry found.
  bool look_again;
  if (work.index == FlowTable::kNoEntry) {
    look_again = w.flows_changed_in_burst;
  } else {
    const FlowEntry& found = w.flows.entry(work.index);
    look_again = !(found.key == work.key) || found.state.load(std::memory_order_relaxed) == FlowState::free;
  }
  if (look_again) work.index = w.flows.lookup(work.key, work.hash);
  if (work.index == FlowTable::kNoEntry) {
    if (work.to_snat) return dropped(w, DropReason::no_reverse_flow);
    // Only a packet that may open a connection creates state; anything else
    // without state is dropped, never forwarded untranslated (a RST to an
    // unknown flow included).
    if (tcp && (work.parsed.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn)
      return dropped(w, DropReason::no_flow);
    return open_connection(w, s, neighbors, frame(), work.key, work.hash, now);
  }
  FlowEntry& e = w.flows.entry(work.index);
  if (!s.backend_is_live(e.backend_id)) {
    // The backend left the service (reload) or went down (health).
    if (!tcp && e.direction == FlowDirection::original) {
      // UDP has no connection to keep: the client's next datagram goes to a
      // live backend at once, so no stale state blackholes the flow.
      w.release_snat(e);
      w.flows.remove_connection(work.index);
      ++w.counters.flows_moved;
      w.flows_changed_in_burst = true;
      return open_connection(w, s, neighbors, frame(), work.key, work.hash, now);
    }
    if (tcp && s.reset_on_backend_removed) {
      w.release_snat(w.flows.entry(w.flows.original_of(work.index)));
      bool from_client = e.direction == FlowDirection::original;
      w.flows.remove_connection(work.index);
      w.flows_changed_in_burst = true;
      if (from_client && build_tcp_reset(s, frame())) {
        w.drop(DropReason::backend_removed);
        ++w.counters.rejects_sent;
        return Outcome{Action::reject, in_port};
      }
      return dropped(w, DropReason::backend_removed);
    }
  }
  e.last_seen.store(now, std::memory_order_relaxed);
  if (tcp) track_tcp(w.flows, e, work.parsed.tcp_flags);
  return forward_by(w, s, neighbors, bytes, work.parsed, e);
}

}  // namespace

Outcome process_frame(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, uint8_t* bytes, uint32_t& len,
                      uint16_t in_port, uint64_t now, ParseOptions options, uint32_t capacity) {
  PacketWork work;
  classify(w, s, bytes, len, capacity, in_port, options, work);
  if (!work.needs_flow) return work.outcome;
  work.index = w.flows.lookup(work.key, work.hash);
  w.flows_changed_in_burst = false;
  Outcome outcome = complete(w, s, neighbors, bytes, len, capacity, in_port, work, now);
  if (w.pending_reply_count) w.insert_pending_replies(now);
  return outcome;
}

void WorkerState::revalidate_addresses(const Snapshot& s, uint64_t now) {
  if (trusted_address_epoch == s.address_epoch) return;
  AddressWalk& walk = address_walk;
  if (walk.epoch != s.address_epoch) walk = AddressWalk{s.address_epoch};
  if (now < walk.not_before) return;
  if (walk.cursor == 1) walk.moves_at_start = flows.moves();
  uint32_t end = std::min(flows.entry_count(), walk.cursor + kAddressWalkStep);
  for (; walk.cursor < end; ++walk.cursor) {
    const FlowEntry& e = flows.entry(walk.cursor);
    if (e.state.load(std::memory_order_relaxed) != FlowState::free && !addresses_admit(s, e.key.src_be, e.key.dst_be))
      walk.failed = true;
  }
  if (walk.cursor < flows.entry_count()) return;
  if (walk.failed)
    walk.not_before = now + kAddressWalkPauseSeconds * s.tsc_hz;  // a connection still fails
  else if (flows.moves() == walk.moves_at_start)  // else an entry may have moved behind the cursor: again
    trusted_address_epoch = s.address_epoch;
  walk.cursor = 1;
  walk.failed = false;
}

namespace {

// The fast lane, which nearly every packet under load takes: an IPv4
// datagram without options or fragmentation, TCP with legal flags or UDP,
// unicast to this port's MAC, with TTL to spare. Checked in a few wide
// loads, it goes to the flow lookup with its key and hash and nothing else:
// if it belongs to a connection, its addresses passed their checks when
// the connection was opened (complete_fast). Anything else: false, and the
// general classify() decides. The checks are parse_common_ipv4's and
// classify_ipv4's, in one pass without a ParsedFrame.
NPLB_HOT bool classify_fast(const uint8_t* bytes, uint32_t len, ParseOptions options, uint32_t mac_head,
                            uint16_t mac_tail, PacketWork& work) {
  constexpr uint32_t kL3 = kEthernetHeaderLen, kL4 = kEthernetHeaderLen + kIpv4MinHeaderLen;
  if (len < kL4 + kUdpHeaderLen) return false;
  // Bytes 12-19: EtherType, version/IHL, TOS, total length, identification;
  // 20-23: flags/fragment offset, TTL, protocol.
  uint64_t head;
  std::memcpy(&head, bytes + 12, 8);
  uint32_t frag_ttl_protocol = load32(bytes + 20);
  uint32_t ttl = (frag_ttl_protocol >> 16) & 0xff;
  // Bitwise ors: one branch for the common case.
  if ((load32(bytes) != mac_head) | (load16(bytes + 4) != mac_tail) | ((head & 0xffffff) != 0x450008) |
      ((frag_ttl_protocol & 0xff3f) != 0) | (ttl <= 1))
    return false;
  uint32_t total_len = __builtin_bswap16(static_cast<uint16_t>(head >> 32));
  if (total_len < kIpv4MinHeaderLen + kUdpHeaderLen || kL3 + total_len > len) return false;
  if (!options.ip_checksum_verified && !ipv4_header_checksum_ok(bytes + kL3, kIpv4MinHeaderLen)) return false;
  uint8_t protocol = static_cast<uint8_t>(frag_ttl_protocol >> 24);
  uint32_t l4_len = total_len - kIpv4MinHeaderLen;
  const uint8_t* l4 = bytes + kL4;
  uint8_t flags = 0;
  if (!common_transport_ok(protocol, l4, l4_len, flags)) return false;
  if (protocol == static_cast<uint8_t>(L4Protocol::tcp) && is_illegal_tcp_flags(flags)) return false;
  // The key's two words (flow_hash_words) straight from the packet.
  uint64_t addresses, ports_protocol = uint64_t(load32(l4)) | uint64_t(protocol) << 32;
  std::memcpy(&addresses, bytes + kL3 + kIpSrc, 8);
  std::memcpy(static_cast<void*>(&work.key), &addresses, 8);
  std::memcpy(reinterpret_cast<uint8_t*>(&work.key) + 8, &ports_protocol, 8);
  work.hash = flow_hash_words(addresses, ports_protocol);
  work.tcp_flags = flags;
  work.frame_len = kL3 + total_len;
  work.fast = true;
  work.needs_flow = true;
  return true;
}

// A fast-lane packet the plain case below does not cover, the general way:
// parsed, checked by its addresses, then complete().
__attribute__((noinline)) Outcome complete_fast_general(WorkerState& w, const Snapshot& s,
                                                        const NeighborTable& neighbors, BurstPacket& pkt,
                                                        PacketWork& work, uint16_t in_port, uint64_t now) {
  // classify_fast accepted it (checksum included): the common shape.
  if (!parse_common_ipv4(pkt.frame, pkt.len, ParseOptions{true}, work.parsed))
    parse_frame_into(pkt.frame, pkt.len, ParseOptions{true}, work.parsed);
  if (decide_by_addresses<true>(w, s, pkt.frame, pkt.len, pkt.capacity, in_port, work, work.key.src_be,
                                work.key.dst_be))
    return work.outcome;
  pkt.len = work.frame_len;  // trim Ethernet padding: checksums cover the IP length only
  return complete(w, s, neighbors, pkt.frame, pkt.len, pkt.capacity, in_port, work, now);
}

// What forwarding a steady connection's packet reads, loaded once a burst:
// the packet's bytes are stored through char pointers, which may alias
// anything, so the compiler would otherwise reload every one of these
// pointers for each packet.
struct SteadyPath {
  explicit SteadyPath(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors)
      : entries(w.flows.entry_array()),
        service_packets(w.service_packets.get()),
        backend_packets(w.backend_packets.get()),
        live_backends(s.live_backends.get()),
        ports(s.ports.data()),
        neighbors(neighbors.reader()) {}
  FlowEntry* entries;
  uint64_t* service_packets;
  uint64_t* backend_packets;
  const uint64_t* live_backends;
  const PortView* ports;
  NeighborTable::Reader neighbors;
  bool backend_is_live(uint32_t stable_id) const {
    return Snapshot::backend_bit(live_backends, stable_id);
  }
};

// A fast-lane packet of a steady connection (TCP established with no
// SYN, FIN or RST; UDP), whose next hop is resolved and backend live, in a
// table whose every connection passed the address checks (`trusted`):
// the verdict complete() would give, without the checks. Else the general way.
NPLB_HOT Outcome complete_fast(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, BurstPacket& pkt,
                               PacketWork& work, uint16_t in_port, uint64_t now, bool trusted,
                               const SteadyPath& path, uint64_t& forwarded) {
  if (trusted && work.index != FlowTable::kNoEntry) {
    FlowEntry& e = path.entries[work.index];
    FlowState state = e.state.load(std::memory_order_relaxed);
    bool tcp = work.key.protocol == static_cast<uint8_t>(L4Protocol::tcp);
    bool steady = tcp ? state == FlowState::established && !(work.tcp_flags & (kTcpSyn | kTcpFin | kTcpRst))
                      : state != FlowState::free;
    uint64_t next_hop_mac;
    if (steady && e.key == work.key && path.backend_is_live(e.backend_id) &&
        path.neighbors.lookup_word(e.next_hop_be, next_hop_mac)) {
      e.last_seen.store(now, std::memory_order_relaxed);
      uint8_t* bytes = pkt.frame;
      store32(bytes, static_cast<uint32_t>(next_hop_mac));
      store16(bytes + 4, static_cast<uint16_t>(next_hop_mac >> 32));
      std::memcpy(bytes + 6, path.ports[e.tx_port].mac.bytes.data(), 6);
      translate_at(bytes + kEthernetHeaderLen, bytes + kEthernetHeaderLen + kIpv4MinHeaderLen, !tcp, e);
      ++path.service_packets[e.service_id];
      ++path.backend_packets[e.backend_id];
      ++forwarded;
      pkt.len = work.frame_len;
      return Outcome{Action::forward, e.tx_port};
    }
  }
  return complete_fast_general(w, s, neighbors, pkt, work, in_port, now);
}

// The general path, out of line: the fast lane's loops keep their registers.
__attribute__((noinline)) void classify_general(WorkerState& w, const Snapshot& s, BurstPacket& pkt, uint16_t in_port,
                                                PacketWork& work) {
  classify(w, s, pkt.frame, pkt.len, pkt.capacity, in_port, pkt.options, work);
}
__attribute__((noinline)) Outcome complete_general(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors,
                                                   BurstPacket& pkt, PacketWork& work, uint16_t in_port, uint64_t now) {
  return complete(w, s, neighbors, pkt.frame, pkt.len, pkt.capacity, in_port, work, now);
}

// The three stages of a burst. Each packet's work is written by
// classify_fast() or classify() before a later stage reads it.
// kPrefetch false: the table is cache-resident (BurstPipeline::push), and
// requesting its lines only costs (memif, 16 connections: 33.1-33.8 ->
// 34.1-35.0 Mpps; in-process no difference).
template <bool kPrefetch = true>
void stage_classify(WorkerState& w, const Snapshot& s, BurstPacket* pkts, PacketWork* work, uint16_t n,
                    uint16_t in_port) {
  const uint8_t* mac = s.ports[in_port].mac.bytes.data();
  uint32_t mac_head = load32(mac);
  uint16_t mac_tail = load16(mac + 4);
  for (uint16_t i = 0; i < n; ++i) {
    if (i + 1 < n) __builtin_prefetch(pkts[i + 1].frame);
    if (!classify_fast(pkts[i].frame, pkts[i].len, pkts[i].options, mac_head, mac_tail, work[i]))
      classify_general(w, s, pkts[i], in_port, work[i]);
  }
  // The buckets are requested together, after the burst is classified: a
  // request issued between packets waits, once the core's outstanding
  // misses are used up, and holds up the classification around it (at 10M
  // connections the bucket is a memory line too; 130.6 -> 123.4 there, 88.2
  // -> 82.3 at 1M, in an interleaved A/B).
  if (kPrefetch)
    for (uint16_t i = 0; i < n; ++i)
      if (work[i].needs_flow) w.flows.prefetch(work[i].hash);
}

// Buckets only: every candidate entry's line is requested before any is read.
template <bool kPrefetch = true>
void stage_lookup(WorkerState& w, PacketWork* work, uint16_t n) {
  for (uint16_t i = 0; i < n; ++i) {
    if (!work[i].needs_flow) continue;
    work[i].index = w.flows.candidate(work[i].hash);
    if (!kPrefetch) continue;
    // A hit's entry (last_seen is written), or where a new connection's
    // original entry will go.
    uint32_t line = work[i].index != FlowTable::kNoEntry ? work[i].index : w.flows.free_candidate(work[i].hash);
    __builtin_prefetch(&w.flows.entry(line), 1);
  }
}

void stage_complete(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, BurstPacket* pkts,
                    PacketWork* work, uint16_t n, uint16_t in_port, uint64_t now) {
  w.flows_changed_in_burst = false;
  // An empty table holds no connection that could fail the checks.
  if (w.trusted_address_epoch != s.address_epoch && w.flows.connections() == 0)
    w.trusted_address_epoch = s.address_epoch;
  // Read once a burst: a connection opened in it that fails the checks is
  // matched by no other packet of the burst (its reply entry goes in at the
  // end; its original's key passed them on this very port).
  bool trusted = w.trusted_address_epoch == s.address_epoch;
  const SteadyPath path(w, s, neighbors);
  // Counted in a register and added once: a counter in memory is reloaded
  // and stored again around every packet's byte stores.
  uint64_t forwarded = 0;
  for (uint16_t i = 0; i < n; ++i)
    pkts[i].outcome = work[i].fast ? complete_fast(w, s, neighbors, pkts[i], work[i], in_port, now, trusted, path,
                                                   forwarded)
                      : work[i].needs_flow ? complete_general(w, s, neighbors, pkts[i], work[i], in_port, now)
                                           : work[i].outcome;
  w.counters.forwarded += forwarded;
  if (w.pending_reply_count) w.insert_pending_replies(now);
}

}  // namespace

namespace {
template <bool kPrefetch>
void burst_stages(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, BurstPacket* pkts, uint16_t n,
                  uint16_t in_port, uint64_t now) {
  // Left uninitialised: classify() writes every field a later stage reads
  // (default-constructing them cost a 4.6 KB memset per burst).
  union WorkSlots {
    WorkSlots() {}
    PacketWork w[kMaxBurst];
  } slots;
  // Longer bursts go through in chunks: every packet gets a verdict.
  for (; n > kMaxBurst; n -= kMaxBurst, pkts += kMaxBurst)
    burst_stages<kPrefetch>(w, s, neighbors, pkts, kMaxBurst, in_port, now);
  stage_classify<kPrefetch>(w, s, pkts, slots.w, n, in_port);
  stage_lookup<kPrefetch>(w, slots.w, n);
  stage_complete(w, s, neighbors, pkts, slots.w, n, in_port, now);
}
}  // namespace

void process_burst(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, BurstPacket* pkts, uint16_t n,
                   uint16_t in_port, uint64_t now) {
  burst_stages<true>(w, s, neighbors, pkts, n, in_port, now);
}

void process_burst_cache_resident(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors,
                                  BurstPacket* pkts, uint16_t n, uint16_t in_port, uint64_t now) {
  burst_stages<false>(w, s, neighbors, pkts, n, in_port, now);
}

BurstPipeline::Burst* BurstPipeline::step(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors,
                                          bool filled, uint64_t now) {
  return advance(w, neighbors, filled ? &s : nullptr, now);
}

BurstPipeline::Burst* BurstPipeline::advance(WorkerState& w, const NeighborTable& neighbors,
                                             const Snapshot* filled_under, uint64_t now) {
  bool filled = filled_under != nullptr;
  int filled_index = filled ? free_index() : -1;  // what next() handed out, before anything moves
  Burst* done = nullptr;
  if (looked_up_ >= 0) {
    Burst& b = bursts_[looked_up_];
    stage_complete(w, *b.snapshot, neighbors, b.pkts, b.work, b.n, b.in_port, now);
    done = &b;
    looked_up_ = -1;
  }
  if (classified_ >= 0) {
    Burst& b = bursts_[classified_];
    stage_lookup(w, b.work, b.n);
    looked_up_ = classified_;
    classified_ = -1;
  }
  if (filled) {
    Burst& b = bursts_[filled_index];
    if (b.n > kMaxBurst) b.n = kMaxBurst;
    b.snapshot = filled_under;
    stage_classify(w, *filled_under, b.pkts, b.work, b.n, b.in_port);
    classified_ = filled_index;
  }
  return done;
}

int BurstPipeline::free_index() const {
  for (int i = 0; i < kDepth; ++i)
    if (i != classified_ && i != looked_up_) return i;
  return 0;  // unreachable: three bursts, at most two in flight
}

}  // namespace nplb
