// SNAT port pools: exhaustion exactly at slice_size, no port handed out
// twice, every port inside the slice, release and reacquire, one pool per
// (SNAT address, backend, port, protocol), a full pool table, and the split
// of the configured range among workers.
#include "dataplane/snat_pool.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

namespace nplb {
namespace {

const SnatPoolKey kKey{0x6464a8c0, 0x1564a8c0, 0x5075, 6, 0};

// Acquires until exhaustion; every port checked against the slice.
std::vector<uint16_t> drain(SnatPorts& ports, uint32_t pool, uint16_t first, uint16_t last) {
  std::vector<uint16_t> got;
  for (uint32_t i = 0; i <= 70000; ++i) {
    uint16_t p = ports.acquire(pool);
    if (p == 0) break;
    EXPECT_GE(p, first);
    EXPECT_LE(p, last);
    got.push_back(p);
  }
  return got;
}

TEST(SnatPorts, ExhaustionAtSliceSize) {
  // Sizes around the 64-bit word boundaries of the bitmap.
  for (uint16_t size : {1, 2, 63, 64, 65, 127, 128, 129, 1000}) {
    SCOPED_TRACE(size);
    const uint16_t first = 20000, last = static_cast<uint16_t>(first + size - 1);
    SnatPorts ports(first, last, 4);
    EXPECT_EQ(ports.slice_size(), size);
    EXPECT_EQ(ports.first_port(), first);
    uint32_t pool = ports.pool_for(kKey);
    ASSERT_NE(pool, SnatPorts::kNoPool);
    std::vector<uint16_t> got = drain(ports, pool, first, last);
    EXPECT_EQ(got.size(), size);
    EXPECT_EQ(std::set<uint16_t>(got.begin(), got.end()).size(), size) << "a port handed out twice";
    EXPECT_EQ(ports.in_use(pool), size);
    EXPECT_EQ(ports.acquire(pool), 0);  // and stays exhausted
    EXPECT_EQ(ports.in_use(pool), size);
  }
}

TEST(SnatPorts, FullDefaultRange) {
  SnatPorts ports(1024, 65535, 2);
  uint32_t pool = ports.pool_for(kKey);
  std::vector<uint16_t> got = drain(ports, pool, 1024, 65535);
  EXPECT_EQ(got.size(), 64512u);
  EXPECT_EQ(std::set<uint16_t>(got.begin(), got.end()).size(), 64512u);
}

TEST(SnatPorts, ReleaseAndReacquire) {
  SnatPorts ports(5000, 5099, 4);
  uint32_t pool = ports.pool_for(kKey);
  std::vector<uint16_t> got = drain(ports, pool, 5000, 5099);
  ASSERT_EQ(got.size(), 100u);
  ports.release(pool, 5042);
  EXPECT_EQ(ports.in_use(pool), 99u);
  EXPECT_EQ(ports.acquire(pool), 5042);  // the only free one
  EXPECT_EQ(ports.acquire(pool), 0);
  // Releasing a free port twice changes nothing.
  ports.release(pool, 5007);
  ports.release(pool, 5007);
  EXPECT_EQ(ports.in_use(pool), 99u);
  EXPECT_EQ(ports.acquire(pool), 5007);
  EXPECT_EQ(ports.acquire(pool), 0);
}

TEST(SnatPorts, RandomChurnNeverDuplicates) {
  const uint16_t first = 30000, last = 30299;
  SnatPorts ports(first, last, 4);
  uint32_t pool = ports.pool_for(kKey);
  std::set<uint16_t> held;
  std::mt19937 rng(7);
  for (int i = 0; i < 100000; ++i) {
    if (!held.empty() && (rng() % 3 == 0 || held.size() == 300)) {
      auto it = held.begin();
      std::advance(it, rng() % held.size());
      ports.release(pool, *it);
      held.erase(it);
    } else {
      uint16_t p = ports.acquire(pool);
      if (held.size() == 300) {
        EXPECT_EQ(p, 0);
        continue;
      }
      ASSERT_NE(p, 0) << "exhausted with " << held.size() << " in use";
      ASSERT_GE(p, first);
      ASSERT_LE(p, last);
      ASSERT_TRUE(held.insert(p).second) << "port " << p << " handed out twice";
    }
    ASSERT_EQ(ports.in_use(pool), held.size());
  }
}

TEST(SnatPorts, SeparatePoolsPerKey) {
  SnatPorts ports(40000, 40003, 16);
  SnatPoolKey keys[] = {
      kKey,
      {kKey.snat_be + 1, kKey.backend_be, kKey.backend_port_be, kKey.protocol, 0},  // other SNAT address
      {kKey.snat_be, kKey.backend_be + 1, kKey.backend_port_be, kKey.protocol, 0},  // other backend
      {kKey.snat_be, kKey.backend_be, static_cast<uint16_t>(kKey.backend_port_be + 1), kKey.protocol, 0},  // other port
      {kKey.snat_be, kKey.backend_be, kKey.backend_port_be, 17, 0},  // other protocol
  };
  std::set<uint32_t> pools;
  for (const SnatPoolKey& k : keys) pools.insert(ports.pool_for(k));
  EXPECT_EQ(pools.size(), 5u);
  EXPECT_EQ(ports.pools(), 5u);
  for (const SnatPoolKey& k : keys) EXPECT_TRUE(pools.count(ports.pool_for(k)));  // found again, not recreated
  EXPECT_EQ(ports.pools(), 5u);
  // Each pool has the whole slice: exhausting one leaves the others full.
  uint32_t first_pool = ports.pool_for(keys[0]);
  EXPECT_EQ(drain(ports, first_pool, 40000, 40003).size(), 4u);
  for (size_t i = 1; i < 5; ++i) {
    uint32_t pool = ports.pool_for(keys[i]);
    EXPECT_EQ(ports.in_use(pool), 0u);
    EXPECT_EQ(ports.acquire(pool), 40000);  // the same port number: a different 5-tuple
  }
}

TEST(SnatPorts, PoolTableFull) {
  SnatPorts ports(1024, 1100, 3);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_NE(ports.pool_for({i + 1, 2, 3, 6, 0}), SnatPorts::kNoPool);
  EXPECT_EQ(ports.pool_for({99, 2, 3, 6, 0}), SnatPorts::kNoPool);
  EXPECT_EQ(ports.pools(), 3u);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_NE(ports.pool_for({i + 1, 2, 3, 6, 0}), SnatPorts::kNoPool);  // still found
}

TEST(SnatPorts, ManyPoolsIndexedCorrectly) {
  SnatPorts ports(1024, 1031, 1000);
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 1000; ++i) ids.push_back(ports.pool_for({0x0a000001, i, 80, 6, 0}));
  EXPECT_EQ(std::set<uint32_t>(ids.begin(), ids.end()).size(), 1000u);
  for (uint32_t i = 0; i < 1000; ++i) EXPECT_EQ(ports.pool_for({0x0a000001, i, 80, 6, 0}), ids[i]);
  EXPECT_EQ(ports.pool_for({0x0a000001, 5000, 80, 6, 0}), SnatPorts::kNoPool);
}

TEST(SnatPorts, EmptySliceRejected) {
  EXPECT_THROW(SnatPorts(2000, 1999, 4), std::invalid_argument);
  EXPECT_THROW(SnatPorts(2000, 2000, 0), std::invalid_argument);
}

// ---------------------------------------------------------------- snat_slice

void expect_partition(uint16_t first, uint16_t last, uint32_t workers) {
  SCOPED_TRACE(std::to_string(first) + "-" + std::to_string(last) + " / " + std::to_string(workers));
  uint32_t expected_first = first;
  uint32_t size = uint32_t(last) - first + 1;
  for (uint32_t w = 0; w < workers; ++w) {
    uint16_t a = 0, b = 0;
    snat_slice(first, last, w, workers, a, b);
    EXPECT_EQ(a, expected_first) << "worker " << w << ": gap or overlap";
    EXPECT_LE(a, b) << "worker " << w << ": empty slice";
    uint32_t n = uint32_t(b) - a + 1;
    EXPECT_GE(n, size / workers);
    EXPECT_LT(n, size / workers + workers);
    expected_first = uint32_t(b) + 1;
  }
  EXPECT_EQ(expected_first, uint32_t(last) + 1) << "range not covered";
}

TEST(SnatSlice, SplitsWithoutOverlapAndCovers) {
  expect_partition(1024, 65535, 1);
  expect_partition(1024, 65535, 2);
  expect_partition(1024, 65535, 3);
  expect_partition(1024, 65535, 7);
  expect_partition(1024, 65535, 64);
  expect_partition(2000, 2007, 4);
  expect_partition(2000, 2008, 4);  // the remainder goes to the last worker
  expect_partition(1, 65535, 5);
  expect_partition(65534, 65535, 2);
}

TEST(SnatSlice, SlicesBuildWorkingPools) {
  // Each worker's slice drained: the union is the range, the slices disjoint.
  std::set<uint16_t> all;
  for (uint32_t w = 0; w < 3; ++w) {
    uint16_t a, b;
    snat_slice(3000, 3099, w, 3, a, b);
    SnatPorts ports(a, b, 1);
    uint32_t pool = ports.pool_for(kKey);
    for (uint16_t p : drain(ports, pool, a, b)) EXPECT_TRUE(all.insert(p).second) << p;
  }
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(*all.begin(), 3000);
  EXPECT_EQ(*all.rbegin(), 3099);
}

}  // namespace
}  // namespace nplb
