// Flow table: both directions of a connection, removal, capacity, expiry
// (per state and protocol, incremental), embryonic eviction, a reply that
// finds no room (rolled back, and counted by the worker), and the lock-free
// reader against a concurrent writer.
#include "dataplane/flow_table.hpp"
#include "dataplane/processor.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace nplb {
namespace {

constexpr uint8_t kTcp = 6, kUdp = 17;
constexpr uint32_t kVip = 0xcb00710a;   // any fixed values: the table never interprets them
constexpr uint32_t kSnat = 0xc6336464;

// A connection as the processor records it: client k -> VIP:30080 becomes
// SNAT:(k's port) -> backend:30080; the reply entry undoes it. Every
// translation is a function of k, so a reader can check an entry against its key.
struct Connection {
  FlowEntry original;
  FlowEntry reply;
};
uint32_t client_of(uint32_t k) { return 0x0a000000u + k; }
uint32_t backend_of(uint32_t k) { return 0xc6336400u + (k % 7) + 1; }
uint16_t snat_port_of(uint32_t k) { return static_cast<uint16_t>(1024 + k % 60000); }

void fill_connection(Connection& c, uint32_t k, uint8_t protocol) {
  c.original.key = FlowKeyV4{client_of(k), kVip, static_cast<uint16_t>(k), 30080, protocol, {0, 0, 0}};
  c.original.new_src_be = kSnat;
  c.original.new_dst_be = backend_of(k);
  c.original.new_src_port_be = snat_port_of(k);
  c.original.new_dst_port_be = 30080;
  c.original.service_id = static_cast<uint16_t>(k);
  c.original.backend_id = k % 7;
  c.original.snat_pool = 3;
  // Reply: as processor.cpp fills it (direction left at its default).
  c.reply.key = FlowKeyV4{backend_of(k), kSnat, 30080, snat_port_of(k), protocol, {0, 0, 0}};
  c.reply.new_src_be = kVip;
  c.reply.new_dst_be = client_of(k);
  c.reply.new_src_port_be = 30080;
  c.reply.new_dst_port_be = static_cast<uint16_t>(k);
  c.reply.service_id = static_cast<uint16_t>(k);
  c.reply.backend_id = k % 7;
  c.reply.snat_pool = 3;
}

// The two keys of connection k.
struct Keys {
  FlowKeyV4 original, reply;
};
Keys make_connection(uint32_t k, uint8_t protocol = kTcp) {
  Connection c;
  fill_connection(c, k, protocol);
  return Keys{c.original.key, c.reply.key};
}

uint32_t insert(FlowTable& t, uint32_t k, FlowState state, uint64_t now, uint8_t protocol = kTcp) {
  Connection c;
  fill_connection(c, k, protocol);
  return t.insert_connection(c.original, flow_key_hash(c.original.key), c.reply, flow_key_hash(c.reply.key), state,
                             now);
}
uint32_t find(const FlowTable& t, const FlowKeyV4& key) { return t.lookup(key, flow_key_hash(key)); }

// What a reader may find wrong with a view of make_connection's entries.
enum class Check { whole, torn_translation, wrong_direction };

// Key and translation must be of the same connection, and the direction the
// one the key implies.
Check check(const FlowView& v) {
  if (v.key.dst_be == kVip) {  // original direction
    uint32_t k = v.key.src_be - 0x0a000000u;
    bool same = v.key.src_port_be == static_cast<uint16_t>(k) && v.new_src_be == kSnat &&
                v.new_dst_be == backend_of(k) && v.new_src_port_be == snat_port_of(k) && v.new_dst_port_be == 30080 &&
                v.service_id == static_cast<uint16_t>(k) && v.backend_id == k % 7;
    if (!same) return Check::torn_translation;
    return v.direction == FlowDirection::original ? Check::whole : Check::wrong_direction;
  }
  if (v.key.dst_be == kSnat) {  // reply direction
    uint32_t k = v.new_dst_be - 0x0a000000u;
    bool same = v.key.src_be == backend_of(k) && v.key.dst_port_be == snat_port_of(k) && v.new_src_be == kVip &&
                v.new_src_port_be == 30080 && v.new_dst_port_be == static_cast<uint16_t>(k) && v.service_id == static_cast<uint16_t>(k) &&
                v.backend_id == k % 7;
    if (!same) return Check::torn_translation;
    return v.direction == FlowDirection::reply ? Check::whole : Check::wrong_direction;
  }
  return Check::torn_translation;
}
bool consistent(const FlowView& v) { return check(v) == Check::whole; }

TEST(FlowTable, InsertAndLookupBothDirections) {
  FlowTable t(16);
  Keys c = make_connection(42);
  uint32_t o = insert(t, 42, FlowState::syn_sent, 100);
  ASSERT_NE(o, FlowTable::kNoEntry);
  EXPECT_EQ(t.connections(), 1u);
  EXPECT_EQ(find(t, c.original), o);
  uint32_t r = find(t, c.reply);
  ASSERT_NE(r, FlowTable::kNoEntry);
  EXPECT_NE(r, o);

  const FlowEntry& eo = t.entry(o);
  EXPECT_EQ(eo.direction, FlowDirection::original);
  EXPECT_EQ(eo.partner, r);
  EXPECT_EQ(eo.new_dst_be, backend_of(42));
  EXPECT_EQ(eo.state.load(), FlowState::syn_sent);
  EXPECT_EQ(eo.last_seen.load(), 100u);
  const FlowEntry& er = t.entry(r);
  EXPECT_EQ(er.direction, FlowDirection::reply);
  EXPECT_EQ(er.partner, o);
  EXPECT_EQ(er.new_dst_be, client_of(42));
  EXPECT_EQ(t.original_of(r), o);
  EXPECT_EQ(t.original_of(o), o);

  // Another key, even one sharing most fields, is not found.
  FlowKeyV4 other = c.original;
  other.src_port_be ^= 1;
  EXPECT_EQ(find(t, other), FlowTable::kNoEntry);
  other = c.original;
  other.protocol = kUdp;
  EXPECT_EQ(find(t, other), FlowTable::kNoEntry);
}

TEST(FlowTable, RemoveByEitherEntry) {
  FlowTable t(16);
  uint32_t a = insert(t, 1, FlowState::established, 1);
  uint32_t b = insert(t, 2, FlowState::established, 1);
  ASSERT_NE(a, FlowTable::kNoEntry);
  ASSERT_NE(b, FlowTable::kNoEntry);
  t.remove_connection(t.entry(a).partner);  // by the reply entry
  EXPECT_EQ(t.connections(), 1u);
  EXPECT_EQ(find(t, make_connection(1).original), FlowTable::kNoEntry);
  EXPECT_EQ(find(t, make_connection(1).reply), FlowTable::kNoEntry);
  EXPECT_EQ(t.entry(a).state.load(), FlowState::free);
  FlowView v;
  EXPECT_FALSE(t.read(a, v));
  EXPECT_EQ(find(t, make_connection(2).original), b);
  t.remove_connection(b);  // by the original entry
  EXPECT_EQ(t.connections(), 0u);
  EXPECT_EQ(find(t, make_connection(2).reply), FlowTable::kNoEntry);
  // Room again, and the keys come back.
  EXPECT_NE(insert(t, 1, FlowState::syn_sent, 2), FlowTable::kNoEntry);
  EXPECT_NE(find(t, make_connection(1).reply), FlowTable::kNoEntry);
}

TEST(FlowTable, CapacityExhaustionChangesNothing) {
  constexpr uint32_t kCapacity = 8;
  FlowTable t(kCapacity);
  EXPECT_EQ(t.capacity(), kCapacity);
  EXPECT_GE(t.entry_count(), 2 * kCapacity + 1) << "buckets keep free slots: the connection count is the limit";
  for (uint32_t k = 0; k < kCapacity; ++k) ASSERT_NE(insert(t, k, FlowState::established, 5), FlowTable::kNoEntry) << k;
  EXPECT_EQ(insert(t, 100, FlowState::syn_sent, 6), FlowTable::kNoEntry);
  EXPECT_EQ(t.connections(), kCapacity);
  EXPECT_EQ(find(t, make_connection(100).original), FlowTable::kNoEntry);
  EXPECT_EQ(find(t, make_connection(100).reply), FlowTable::kNoEntry);
  for (uint32_t k = 0; k < kCapacity; ++k) {
    uint32_t o = find(t, make_connection(k).original);
    ASSERT_NE(o, FlowTable::kNoEntry) << k;
    FlowView v;
    ASSERT_TRUE(t.read(o, v));
    EXPECT_TRUE(consistent(v)) << k;
    EXPECT_EQ(v.state, FlowState::established);
    EXPECT_EQ(v.last_seen, 5u);
    EXPECT_NE(find(t, make_connection(k).reply), FlowTable::kNoEntry);
  }
  // One out, one in.
  t.remove_connection(find(t, make_connection(3).original));
  EXPECT_NE(insert(t, 100, FlowState::syn_sent, 7), FlowTable::kNoEntry);
  EXPECT_EQ(insert(t, 101, FlowState::syn_sent, 7), FlowTable::kNoEntry);
}

TEST(FlowTable, ManyConnectionsAtFullLoad) {
  // Two choices without displacement: a full table of 4096 still places all.
  FlowTable t(4096);
  for (uint32_t k = 0; k < 4096; ++k) ASSERT_NE(insert(t, k, FlowState::established, 1), FlowTable::kNoEntry) << k;
  std::set<uint32_t> seen;
  for (uint32_t k = 0; k < 4096; ++k) {
    uint32_t o = find(t, make_connection(k).original), r = find(t, make_connection(k).reply);
    ASSERT_NE(o, FlowTable::kNoEntry);
    ASSERT_NE(r, FlowTable::kNoEntry);
    EXPECT_TRUE(seen.insert(o).second);
    EXPECT_TRUE(seen.insert(r).second);
  }
}

TEST(FlowTable, TimeoutsPerStateAndProtocol) {
  FlowTable t(4);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 1000, .tcp_transitory = 100, .udp = 300});
  EXPECT_EQ(t.timeout_for(FlowState::established, kTcp), 1000u);
  EXPECT_EQ(t.timeout_for(FlowState::syn_sent, kTcp), 100u);
  EXPECT_EQ(t.timeout_for(FlowState::closing, kTcp), 100u);
  EXPECT_EQ(t.timeout_for(FlowState::established, kUdp), 300u);
}

TEST(FlowTable, ExpiryFollowsStateAndProtocol) {
  FlowTable t(8);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 1000, .tcp_transitory = 100, .udp = 300});
  insert(t, 1, FlowState::syn_sent, 0);
  insert(t, 2, FlowState::established, 0);
  insert(t, 3, FlowState::closing, 0);
  insert(t, 4, FlowState::established, 0, kUdp);
  std::vector<uint32_t> expired;
  auto sweep = [&](uint64_t now) {
    return t.expire_step(now, t.entry_count(), [&](const FlowEntry& e) {
      EXPECT_EQ(e.direction, FlowDirection::original);
      expired.push_back(e.service_id);
    });
  };
  EXPECT_EQ(sweep(100), 0u);  // idle == timeout: not yet
  EXPECT_EQ(sweep(101), 2u);  // syn_sent and closing
  EXPECT_EQ(std::set<uint32_t>(expired.begin(), expired.end()), (std::set<uint32_t>{1, 3}));
  EXPECT_EQ(sweep(300), 0u);
  EXPECT_EQ(sweep(301), 1u);  // UDP
  EXPECT_EQ(expired.back(), 4u);
  EXPECT_EQ(sweep(1001), 1u);  // TCP established
  EXPECT_EQ(expired.back(), 2u);
  EXPECT_EQ(t.connections(), 0u);
  for (uint32_t k = 1; k <= 4; ++k) {
    EXPECT_EQ(find(t, make_connection(k).original), FlowTable::kNoEntry);
    EXPECT_EQ(find(t, make_connection(k).reply), FlowTable::kNoEntry);
  }
}

TEST(FlowTable, TouchedConnectionsStay) {
  FlowTable t(4);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 1000, .tcp_transitory = 100, .udp = 300});
  uint32_t o = insert(t, 1, FlowState::established, 0);
  t.entry(o).last_seen.store(900);
  EXPECT_EQ(t.expire_step(1500, t.entry_count(), [](const FlowEntry&) {}), 0u);
  EXPECT_EQ(t.expire_step(1901, t.entry_count(), [](const FlowEntry&) {}), 1u);
}

TEST(FlowTable, ExpiryIsIncremental) {
  constexpr uint32_t kConnections = 64;
  FlowTable t(kConnections);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 10, .tcp_transitory = 10, .udp = 10});
  for (uint32_t k = 0; k < kConnections; ++k) insert(t, k, FlowState::established, 0);
  constexpr uint32_t kBudget = 10;  // entries looked at per call: far less than the table's 129
  uint32_t total = 0, calls = 0;
  while (t.connections() > 0 && calls < 1000) {
    uint32_t n = t.expire_step(1000, kBudget, [](const FlowEntry&) {});
    EXPECT_LE(n, kBudget);
    total += n;
    ++calls;
  }
  EXPECT_EQ(total, kConnections);
  // One pass over 2*64+1 entries at 10 a call.
  EXPECT_GE(calls, (t.entry_count() - 1) / kBudget);
  EXPECT_LE(calls, t.entry_count() / kBudget + 2);
}

// expire_due paces itself by the clock: one pass over the table per sweep,
// about half of it after half a sweep, however often it is called.
TEST(FlowTable, PacedExpiryPassesOncePerSweep) {
  constexpr uint32_t kConnections = 1000;
  constexpr uint64_t kSweep = 10'000;
  FlowTable t(kConnections);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 1000, .tcp_transitory = 100, .udp = 100, .sweep = kSweep});
  for (uint32_t k = 0; k < kConnections; ++k) ASSERT_NE(insert(t, k, FlowState::established, 0), FlowTable::kNoEntry);
  uint64_t now = 5000;  // all idle beyond 1000
  EXPECT_EQ(t.expire_due(now, [](const FlowEntry&) {}), 0u) << "the first call only starts the clock";
  uint32_t expired = 0;
  for (uint64_t end = now + kSweep / 2; now < end;) {
    now += 7;
    uint32_t n = t.expire_due(now, [](const FlowEntry&) {});
    EXPECT_LE(n, 7 * t.entry_count() / kSweep + 1) << "7 ticks earn 7 * entries / sweep entries looked at";
    expired += n;
  }
  EXPECT_GT(expired, kConnections * 4 / 10);
  EXPECT_LT(expired, kConnections * 6 / 10);
  for (uint64_t end = now + kSweep / 2 + 20; now < end;) {
    now += 7;
    expired += t.expire_due(now, [](const FlowEntry&) {});
  }
  EXPECT_EQ(expired, kConnections) << "one sweep looked at every entry";
  EXPECT_EQ(t.connections(), 0u);
}

TEST(FlowTable, PacedExpiryNeverCatchesUpInOneLongStep) {
  FlowTable t(100'000);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 10, .tcp_transitory = 10, .udp = 10, .sweep = 1000});
  for (uint32_t k = 0; k < 100'000; ++k) insert(t, k, FlowState::established, 0);
  t.expire_due(100, [](const FlowEntry&) {});
  // A whole sweep's time has passed: every entry is due, at most
  // kExpiryMaxStep are looked at in this call.
  EXPECT_LE(t.expire_due(100'000, [](const FlowEntry&) {}), FlowTable::kExpiryMaxStep);
  EXPECT_GT(t.connections(), 100'000u - FlowTable::kExpiryMaxStep);
}

// Each direction keeps its own last_seen: traffic from the backend alone
// keeps a connection alive, and expiry reads the reply side only for a
// connection its original side says is idle.
TEST(FlowTable, ReplyTrafficKeepsTheConnection) {
  FlowTable t(4);
  t.set_timeouts(FlowTimeoutsTsc{.tcp_established = 1000, .tcp_transitory = 100, .udp = 300});
  uint32_t o = insert(t, 1, FlowState::established, 0);
  t.entry(t.entry(o).partner).last_seen.store(900);
  EXPECT_EQ(t.expire_step(1500, t.entry_count(), [](const FlowEntry&) {}), 0u);
  EXPECT_EQ(t.expire_step(1901, t.entry_count(), [](const FlowEntry&) {}), 1u);
}

// Filled to its capacity with hashes that crowd buckets, every connection
// goes in (spills and cuckoo steps) and is found in both directions; after
// half are removed, the rest are still found and the freed room is reused.
TEST(FlowTable, FullToCapacityAndBack) {
  constexpr uint32_t kConnections = 50'000;
  FlowTable t(kConnections);
  for (uint32_t k = 0; k < kConnections; ++k) ASSERT_NE(insert(t, k, FlowState::established, 0), FlowTable::kNoEntry) << k;
  EXPECT_EQ(insert(t, kConnections, FlowState::established, 0), FlowTable::kNoEntry) << "no free entries left";
  for (uint32_t k = 0; k < kConnections; ++k) {
    Keys c = make_connection(k);
    ASSERT_NE(find(t, c.original), FlowTable::kNoEntry) << k;
    ASSERT_NE(find(t, c.reply), FlowTable::kNoEntry) << k;
  }
  for (uint32_t k = 0; k < kConnections; k += 2) t.remove_connection(find(t, make_connection(k).original));
  for (uint32_t k = 0; k < kConnections; ++k) {
    Keys c = make_connection(k);
    EXPECT_EQ(find(t, c.original) != FlowTable::kNoEntry, k % 2 == 1) << k;
    EXPECT_EQ(find(t, c.reply) != FlowTable::kNoEntry, k % 2 == 1) << k;
  }
  for (uint32_t k = kConnections; k < kConnections + kConnections / 2; ++k)
    ASSERT_NE(insert(t, k, FlowState::established, 0), FlowTable::kNoEntry) << k;
  EXPECT_EQ(t.connections(), kConnections);
}

// The two-step insert the workers use: originals first, each reply at the
// end of its burst. Originals inserted meanwhile may move an earlier one (a
// cuckoo step); its reply still finds it, and both directions resolve.
TEST(FlowTable, RepliesFindTheirOriginalsAfterOtherInserts) {
  constexpr uint32_t kConnections = 20'000;
  FlowTable t(kConnections);
  std::vector<uint32_t> hint(kConnections);
  for (uint32_t k = 0; k < kConnections; ++k) {
    Connection c;
    fill_connection(c, k, kTcp);
    hint[k] = t.insert_original(c.original, flow_key_hash(c.original.key), FlowState::syn_sent, k);
    ASSERT_NE(hint[k], FlowTable::kNoEntry) << k;
    EXPECT_EQ(t.entry(hint[k]).partner, FlowTable::kNoEntry) << "no partner until the reply is in";
  }
  EXPECT_EQ(t.connections(), kConnections) << "a half-inserted connection counts";
  for (uint32_t k = 0; k < kConnections; ++k) {
    Connection c;
    fill_connection(c, k, kTcp);
    uint32_t o = t.insert_reply(hint[k], c.original.key, flow_key_hash(c.original.key), c.reply,
                                flow_key_hash(c.reply.key), k);
    ASSERT_NE(o, FlowTable::kNoEntry) << k;
    ASSERT_NE(o, FlowTable::kOriginalGone) << k;
  }
  for (uint32_t k = 0; k < kConnections; ++k) {
    Keys c = make_connection(k);
    uint32_t o = find(t, c.original), r = find(t, c.reply);
    ASSERT_NE(o, FlowTable::kNoEntry) << k;
    ASSERT_NE(r, FlowTable::kNoEntry) << k;
    EXPECT_EQ(t.entry(o).partner, r) << k;
    EXPECT_EQ(t.entry(r).partner, o) << k;
    FlowView v;
    ASSERT_TRUE(t.read(r, v));
    EXPECT_TRUE(consistent(v)) << k;
  }
}

TEST(FlowTable, AReplyForARemovedOriginalInsertsNothing) {
  FlowTable t(8);
  Connection c;
  fill_connection(c, 1, kTcp);
  uint32_t o = t.insert_original(c.original, flow_key_hash(c.original.key), FlowState::syn_sent, 0);
  ASSERT_NE(o, FlowTable::kNoEntry);
  uint32_t evicted = 0;
  EXPECT_FALSE(t.evict_embryonic(t.entry_count(), [&](const FlowEntry&) { ++evicted; }))
      << "a connection without its reply entry is not evicted";
  t.remove_connection(o);
  EXPECT_EQ(t.connections(), 0u);
  EXPECT_EQ(t.insert_reply(o, c.original.key, flow_key_hash(c.original.key), c.reply, flow_key_hash(c.reply.key), 1),
            FlowTable::kOriginalGone);
  EXPECT_EQ(find(t, c.reply.key), FlowTable::kNoEntry);
  EXPECT_EQ(t.connections(), 0u);
}

// Connections both of whose keys may only go in buckets {a, b} (found by
// search among make_connection's), enough to fill those two buckets: a
// reply that may only go there finds no room, and no cuckoo step can make
// any (every resident's other bucket is the other full one).
struct CrowdedBuckets {
  std::vector<uint32_t> crowding;  // 7 connections: 14 entries, both buckets full
  uint32_t victim = 0;             // original elsewhere, reply only in {a, b}
};
CrowdedBuckets crowd(const FlowTable& t) {
  auto in_pair = [&](const FlowKeyV4& key, uint32_t a, uint32_t b) {
    auto [first, second] = t.buckets_of(flow_key_hash(key));
    return (first == a && second == b) || (first == b && second == a);
  };
  // Buckets 0 and 1 (the table has 4): about 1 key in 8 has exactly that pair.
  CrowdedBuckets c;
  for (uint32_t k = 1; k < 1'000'000 && (c.crowding.size() < FlowTable::kSlotsPerBucket || c.victim == 0); ++k) {
    Keys keys = make_connection(k);
    bool reply_crowded = in_pair(keys.reply, 0, 1);
    auto [first, second] = t.buckets_of(flow_key_hash(keys.original));
    if (reply_crowded && in_pair(keys.original, 0, 1) && c.crowding.size() < FlowTable::kSlotsPerBucket)
      c.crowding.push_back(k);
    else if (reply_crowded && c.victim == 0 && first > 1 && second > 1)
      c.victim = k;
  }
  return c;
}

TEST(FlowTable, AReplyWithNoRoomRemovesItsOriginal) {
  FlowTable t(8);  // 4 buckets of 7 slots
  CrowdedBuckets c = crowd(t);
  ASSERT_EQ(c.crowding.size(), static_cast<size_t>(FlowTable::kSlotsPerBucket));
  ASSERT_NE(c.victim, 0u);
  for (uint32_t k : c.crowding) ASSERT_NE(insert(t, k, FlowState::established, 0), FlowTable::kNoEntry) << k;
  Connection v;
  fill_connection(v, c.victim, kTcp);
  uint32_t o = t.insert_original(v.original, flow_key_hash(v.original.key), FlowState::syn_sent, 1);
  ASSERT_NE(o, FlowTable::kNoEntry);
  EXPECT_EQ(t.connections(), c.crowding.size() + 1);
  EXPECT_EQ(t.insert_reply(o, v.original.key, flow_key_hash(v.original.key), v.reply, flow_key_hash(v.reply.key), 1),
            FlowTable::kNoEntry);
  EXPECT_EQ(find(t, v.original.key), FlowTable::kNoEntry) << "the original went with its reply";
  EXPECT_EQ(find(t, v.reply.key), FlowTable::kNoEntry);
  EXPECT_EQ(t.connections(), c.crowding.size());
  for (uint32_t k : c.crowding) {
    Keys keys = make_connection(k);
    EXPECT_NE(find(t, keys.original), FlowTable::kNoEntry) << k;
    EXPECT_NE(find(t, keys.reply), FlowTable::kNoEntry) << k;
  }
}

// The worker's side of it: a pending reply that finds no room at the end of
// its burst rolls its connection back, gives its SNAT port back, and is
// counted (flows_rolled_back).
TEST(FlowTable, WorkerRollsBackAPendingReplyWithoutRoom) {
  WorkerConfig config;
  config.flow_capacity = 8;
  WorkerState w(config);
  CrowdedBuckets c = crowd(w.flows);
  ASSERT_NE(c.victim, 0u);
  for (uint32_t k : c.crowding) ASSERT_NE(insert(w.flows, k, FlowState::established, 0), FlowTable::kNoEntry) << k;
  Connection v;
  fill_connection(v, c.victim, kTcp);
  uint32_t pool = w.snat.pool_for(SnatPoolKey{kSnat, v.reply.key.src_be, v.reply.key.src_port_be, kTcp, 0});
  uint16_t port = w.snat.acquire(pool);
  ASSERT_NE(port, 0);
  ASSERT_EQ(w.snat.in_use(pool), 1u);
  WorkerState::PendingReply& p = w.pending_replies[0];
  p.original = w.flows.insert_original(v.original, flow_key_hash(v.original.key), FlowState::syn_sent, 1);
  ASSERT_NE(p.original, FlowTable::kNoEntry);
  p.original_key = v.original.key;
  p.original_hash = flow_key_hash(v.original.key);
  // FlowEntry holds atomics: the fields the table copies, one by one.
  p.reply.key = v.reply.key;
  p.reply.new_src_be = v.reply.new_src_be;
  p.reply.new_dst_be = v.reply.new_dst_be;
  p.reply.new_src_port_be = v.reply.new_src_port_be;
  p.reply.new_dst_port_be = v.reply.new_dst_port_be;
  p.reply.service_id = v.reply.service_id;
  p.reply.backend_id = v.reply.backend_id;
  p.reply.snat_pool = v.reply.snat_pool;
  p.reply_hash = flow_key_hash(v.reply.key);
  p.pool = pool;
  p.snat_port = port;
  w.pending_reply_count = 1;
  w.insert_pending_replies(2);
  EXPECT_EQ(w.counters.flows_rolled_back, 1u);
  EXPECT_EQ(w.snat.in_use(pool), 0u) << "the SNAT port went back to its pool";
  EXPECT_EQ(w.pending_reply_count, 0u);
  EXPECT_EQ(w.flows.connections(), c.crowding.size());
  EXPECT_EQ(find(w.flows, v.original.key), FlowTable::kNoEntry);
}

TEST(FlowTable, EvictEmbryonicOnlyEvictsSynSent) {
  FlowTable t(4);
  insert(t, 1, FlowState::established, 0);
  insert(t, 2, FlowState::closing, 0);
  insert(t, 3, FlowState::syn_sent, 0);
  insert(t, 4, FlowState::established, 0, kUdp);
  std::vector<uint32_t> evicted;
  auto record = [&](const FlowEntry& e) {
    EXPECT_EQ(e.direction, FlowDirection::original);
    evicted.push_back(e.service_id);
  };
  EXPECT_TRUE(t.evict_embryonic(t.entry_count(), record));
  EXPECT_EQ(evicted, std::vector<uint32_t>{3});
  EXPECT_EQ(t.connections(), 3u);
  EXPECT_EQ(find(t, make_connection(3).reply), FlowTable::kNoEntry);
  EXPECT_FALSE(t.evict_embryonic(3 * t.entry_count(), record));
  EXPECT_EQ(t.connections(), 3u);
  for (uint32_t k : {1u, 2u, 4u}) EXPECT_NE(find(t, make_connection(k, k == 4 ? kUdp : kTcp).original), FlowTable::kNoEntry);
}

TEST(FlowTable, EvictEmbryonicRespectsBudget) {
  FlowTable t(8);
  for (uint32_t k = 0; k < 7; ++k) insert(t, k, FlowState::established, 0);
  insert(t, 7, FlowState::syn_sent, 0);  // the last entries handed out: 15 and 16
  int calls = 0;
  while (!t.evict_embryonic(2, [](const FlowEntry&) {})) ASSERT_LT(++calls, 20);
  EXPECT_GE(calls, 6);  // the cursor had to walk past 14 established entries, 2 at a time
  EXPECT_EQ(t.connections(), 7u);
}

TEST(FlowTable, ReadGivesAConsistentCopy) {
  FlowTable t(4);
  uint32_t o = insert(t, 9, FlowState::syn_sent, 77);
  FlowView v;
  ASSERT_TRUE(t.read(o, v));
  EXPECT_TRUE(consistent(v));
  EXPECT_EQ(v.state, FlowState::syn_sent);
  EXPECT_EQ(v.last_seen, 77u);
  EXPECT_EQ(v.snat_pool, 3u);
  ASSERT_TRUE(t.read(t.entry(o).partner, v));
  EXPECT_TRUE(consistent(v));
  EXPECT_EQ(v.direction, FlowDirection::reply);
  EXPECT_FALSE(t.read(FlowTable::kNoEntry, v));
  EXPECT_FALSE(t.read(t.entry_count(), v));
  EXPECT_FALSE(t.read(t.entry_count() - 1, v));  // free
}

// One writer inserting and removing, one reader reading every entry and the
// newest ones as they are written: every entry the reader accepts is whole (key and
// translation of the same connection, direction matching the key).
TEST(FlowTable, ConcurrentReaderNeverSeesTornEntries) {
  constexpr uint32_t kCapacity = 64;
  constexpr uint32_t kWindow = 48;  // live connections kept by the writer
  constexpr uint32_t kIterations = 4000000;
  FlowTable t(kCapacity);
  std::atomic<bool> done{false};
  std::atomic<uint32_t> newest_original{FlowTable::kNoEntry}, newest_reply{FlowTable::kNoEntry};
  std::atomic<uint64_t> accepted{0}, torn{0}, wrong_direction{0};
  FlowView first_wrong{};

  auto judge = [&](const FlowView& v) {
    accepted.fetch_add(1, std::memory_order_relaxed);
    switch (check(v)) {
      case Check::whole: break;
      case Check::torn_translation: torn.fetch_add(1, std::memory_order_relaxed); break;
      case Check::wrong_direction:
        if (wrong_direction.fetch_add(1, std::memory_order_relaxed) == 0) first_wrong = v;
        break;
    }
  };
  std::thread reader([&] {
    FlowView v;
    uint32_t i = 1;
    while (!done.load(std::memory_order_acquire)) {
      // Every entry in turn, as a flow listing does (key lookups are the
      // worker's alone: its buckets may move an entry)...
      if (t.read(i, v)) judge(v);
      i = i + 1 == t.entry_count() ? 1 : i + 1;
      // ...and the newest connection's entries, the ones being written.
      for (const auto* newest : {&newest_original, &newest_reply})
        if (t.read(newest->load(std::memory_order_acquire), v)) judge(v);
    }
  });

  for (uint32_t k = 1; k <= kIterations; ++k) {
    if (k > kWindow) t.remove_connection(find(t, make_connection(k - kWindow).original));
    uint32_t o = insert(t, k, FlowState::syn_sent, k);
    ASSERT_NE(o, FlowTable::kNoEntry) << k;
    newest_original.store(o, std::memory_order_release);
    newest_reply.store(t.entry(o).partner, std::memory_order_release);
  }
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(t.connections(), kWindow);
  EXPECT_GT(accepted.load(), 0u);
  EXPECT_EQ(torn.load(), 0u) << "key and translation of different connections, of " << accepted.load() << " read";
  // Regression: insert_connection once set `direction` and `partner` after
  // write_entry had published the entry (version even, state not free), so a
  // reader could take a reply entry for an original one (fixed in 8fd2198).
  EXPECT_EQ(wrong_direction.load(), 0u) << "of " << accepted.load() << " read; the first: key " << std::hex
                                        << first_wrong.key.src_be << " -> " << first_wrong.key.dst_be << std::dec
                                        << " read as direction " << int(first_wrong.direction);
}

TEST(FlowTable, UnderAFloodEmbryonicConnectionsGetTheShortTimeout) {
  FlowTable t(64);
  FlowTimeoutsTsc timeouts;
  timeouts.tcp_established = 1000;
  timeouts.tcp_transitory = 100;
  timeouts.udp = 500;
  timeouts.tcp_embryonic_flood = 10;
  t.set_timeouts(timeouts);
  insert(t, 1, FlowState::syn_sent, 0);
  insert(t, 2, FlowState::established, 0);
  insert(t, 3, FlowState::closing, 0);
  // Calm: 50 ticks later nothing has expired (transitory is 100).
  EXPECT_EQ(t.expire_step(50, 1000, [](const FlowEntry&) {}), 0u);
  // Flood: the embryonic one goes at once; established and closing do not.
  t.set_flood(true);
  EXPECT_EQ(t.expire_step(50, 1000, [](const FlowEntry&) {}), 1u);
  EXPECT_EQ(find(t, make_connection(1).original), FlowTable::kNoEntry);
  EXPECT_NE(find(t, make_connection(2).original), FlowTable::kNoEntry);
  EXPECT_NE(find(t, make_connection(3).original), FlowTable::kNoEntry);
  t.set_flood(false);
  EXPECT_EQ(t.timeout_for(FlowState::syn_sent, 6), 100u);
}

}  // namespace
}  // namespace nplb
