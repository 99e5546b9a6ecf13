// The snapshot's address-role table: every address found with all its
// roles merged, absent addresses and 0.0.0.0 without roles, in slots of
// their own (up to kDirectAddresses) or buckets of four (beyond), at sizes
// from one address to thousands.
#include "dataplane/snapshot.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <set>
#include <vector>

namespace nplb {
namespace {

uint8_t expected_roles(const Snapshot& s, uint32_t a) {
  uint8_t roles = 0;
  if (a == 0) return 0;
  for (uint32_t f : s.frontends_be)
    if (f == a) roles |= Snapshot::kFrontend | Snapshot::kLocal;
  for (uint32_t x : s.snat_be)
    if (x == a) roles |= Snapshot::kSnat | Snapshot::kLocal;
  for (uint32_t l : s.local_be)
    if (l == a) roles |= Snapshot::kLocal;
  return roles;
}

TEST(AddressRoles, EveryAddressFoundAtEverySize) {
  std::mt19937 rng(7);
  for (size_t count : {1u, 2u, 6u, 17u, 100u, 127u, 128u, 129u, 1000u, 5000u}) {
    Snapshot s;
    std::set<uint32_t> used;
    auto fresh = [&] {
      uint32_t a;
      do a = rng(); while (a == 0 || !used.insert(a).second);
      return a;
    };
    for (size_t i = 0; i < count; ++i) {
      switch (i % 3) {
        case 0: s.frontends_be.push_back(fresh()); break;
        case 1: s.snat_be.push_back(fresh()); break;
        default: s.local_be.push_back(fresh()); break;
      }
    }
    // An address with several roles (a VIP that is also the port's address).
    s.local_be.push_back(s.frontends_be[0]);
    s.index_addresses();
    // Slots of their own up to kDirectAddresses, buckets beyond; either way
    // sized for the addresses, not grown past what they need.
    size_t n = used.size();
    if (n <= Snapshot::kDirectAddresses) {
      ASSERT_FALSE(s.address_slots.empty()) << count;
      ASSERT_LE(s.address_slots.size(), 16384u) << count;
      ASSERT_EQ(std::countr_zero(s.address_slots.size()), 64 - static_cast<int>(s.address_shift)) << count;
    } else {
      ASSERT_TRUE(s.address_slots.empty()) << count;
      ASSERT_GE(s.address_buckets.size(), 2 * n) << count;
      ASSERT_LE(s.address_buckets.size(), 8 * n) << count;
      ASSERT_EQ(std::countr_zero(s.address_buckets.size()), 64 - static_cast<int>(s.address_shift)) << count;
    }
    for (uint32_t a : used) EXPECT_EQ(s.roles_of(a), expected_roles(s, a)) << count << " " << a;
    EXPECT_EQ(s.roles_of(s.frontends_be[0]), Snapshot::kFrontend | Snapshot::kLocal);
    for (int probe = 0; probe < 20000; ++probe) {
      uint32_t a = rng();
      if (!used.count(a)) {
        ASSERT_EQ(s.roles_of(a), 0) << count << " " << a;
      }
    }
    EXPECT_EQ(s.roles_of(0), 0);
  }
}

TEST(AddressRoles, NeighbouringAddressesDoNotCollide) {
  // A /22 of consecutive addresses (nodes, SNAT ranges) differ in low bits only.
  Snapshot s;
  for (uint32_t i = 1; i <= 1000; ++i) s.local_be.push_back(__builtin_bswap32(0xc6336400u + i));
  s.snat_be.push_back(__builtin_bswap32(0xc6336400u + 1001));
  s.index_addresses();
  for (uint32_t i = 1; i <= 1000; ++i) EXPECT_EQ(s.roles_of(__builtin_bswap32(0xc6336400u + i)), Snapshot::kLocal);
  EXPECT_EQ(s.roles_of(__builtin_bswap32(0xc6336400u + 1001)), Snapshot::kSnat | Snapshot::kLocal);
  EXPECT_EQ(s.roles_of(__builtin_bswap32(0xc6336400u + 1002)), 0);
  EXPECT_EQ(s.roles_of(__builtin_bswap32(0xc6336400u)), 0);
}

TEST(AddressRoles, EmptySnapshotHasNoRoles) {
  Snapshot s;
  EXPECT_EQ(s.roles_of(0x01020304), 0);
  s.index_addresses();
  EXPECT_EQ(s.roles_of(0x01020304), 0);
  EXPECT_EQ(s.roles_of(0), 0);
}

TEST(AddressRoles, ReindexingForgetsRemovedAddresses) {
  Snapshot s;
  s.frontends_be = {0x0a000001, 0x0a000002};
  s.index_addresses();
  EXPECT_NE(s.roles_of(0x0a000002), 0);
  s.frontends_be = {0x0a000001};
  s.index_addresses();
  EXPECT_EQ(s.roles_of(0x0a000002), 0);
  EXPECT_EQ(s.roles_of(0x0a000001), Snapshot::kFrontend | Snapshot::kLocal);
}

}  // namespace
}  // namespace nplb
