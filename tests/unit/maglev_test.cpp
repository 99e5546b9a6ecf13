// Maglev properties in the manner of Katran's MaglevHashTest: empty set, one
// backend, no holes, balance, minimal disruption, independence from input
// order, determinism pinned by golden values; plus table sizing and is_prime.
#include "dataplane/maglev.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace nplb {
namespace {

constexpr uint64_t kSeed = 0x6e706c62;  // "nplb"

// Maglev moves a few slots between surviving backends when the set changes
// (measured: at most 0.6% of the table on removal, 1.3% on 10 -> 11); the
// bound is on the fraction of the whole table.
constexpr double kMaxSurvivorChurn = 0.02;

// "198.51.<i / 250>.<i % 250 + 1>:30080", index i: node-mode keys.
std::vector<MaglevBackend> nodes(size_t n, uint32_t first = 0) {
  std::vector<MaglevBackend> v;
  for (uint32_t i = first; i < first + n; ++i)
    v.push_back({"198.51." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":30080", i});
  return v;
}

std::map<uint32_t, size_t> counts(const MaglevTable& t) {
  std::map<uint32_t, size_t> c;
  for (uint32_t s : t.slots()) ++c[s];
  return c;
}

// A fingerprint of a whole table (FNV-1a over the slots), to pin all of it.
uint64_t fingerprint(const std::vector<uint32_t>& slots) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint32_t s : slots) {
    for (int i = 0; i < 4; ++i) {
      h ^= (s >> (8 * i)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

// The paper's pseudocode (NSDI'16 §3.4, Pseudocode 1) written plainly: full
// modulo per probe, permutation position counters. build() must agree slot
// for slot with it.
std::vector<uint32_t> reference_build(std::vector<MaglevBackend> b, uint32_t m, uint64_t seed) {
  std::sort(b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.key != y.key ? x.key < y.key : x.index < y.index;
  });
  b.erase(std::unique(b.begin(), b.end(), [](const auto& x, const auto& y) { return x.key == y.key; }), b.end());
  std::vector<uint32_t> entry(m, MaglevTable::kNoBackend);
  if (b.empty()) return entry;
  std::vector<uint64_t> offset, skip, next(b.size(), 0);
  for (const auto& x : b) {
    offset.push_back(hash_bytes(x.key.data(), x.key.size(), seed) % m);
    skip.push_back(hash_bytes(x.key.data(), x.key.size(), seed ^ MaglevTable::kSkipSeedTweak) % (m - 1) + 1);
  }
  uint32_t n = 0;
  for (;;) {
    for (size_t i = 0; i < b.size(); ++i) {
      uint64_t c = (offset[i] + next[i] * skip[i]) % m;
      while (entry[c] != MaglevTable::kNoBackend) {
        ++next[i];
        c = (offset[i] + next[i] * skip[i]) % m;
      }
      entry[c] = b[i].index;
      ++next[i];
      if (++n == m) return entry;
    }
  }
}

// --- Table properties ------------------------------------------------------

TEST(Maglev, EmptySetLeavesEverySlotEmpty) {
  for (uint32_t m : {2u, 13u, 65537u}) {
    auto t = MaglevTable::build({}, m, kSeed);
    ASSERT_EQ(t.size(), m);
    for (uint32_t s : t.slots()) ASSERT_EQ(s, MaglevTable::kNoBackend);
    EXPECT_EQ(t.lookup(12345), MaglevTable::kNoBackend);
  }
}

TEST(Maglev, SingleBackendFillsTheTable) {
  const std::vector<MaglevBackend> one = {{"198.51.100.21:30080", 7}};
  for (uint32_t m : {2u, 3u, 1009u, 65537u}) {
    auto t = MaglevTable::build(one, m, kSeed);
    ASSERT_EQ(t.size(), m);
    for (uint32_t s : t.slots()) ASSERT_EQ(s, 7u);
  }
}

TEST(Maglev, EverySlotFilledAndBalancedWithinOnePercent) {
  for (size_t n : {2, 3, 10, 33, 100, 257, 1000}) {
    for (uint32_t min_size : {0u, 65537u}) {
      const uint32_t m = MaglevTable::choose_size(n, min_size, 1u << 24);
      auto backends = nodes(n);
      auto t = MaglevTable::build(backends, m, kSeed);
      ASSERT_EQ(t.size(), m);
      auto c = counts(t);
      ASSERT_EQ(c.count(MaglevTable::kNoBackend), 0u) << "hole in the table, n=" << n;
      ASSERT_EQ(c.size(), n) << "a backend got no slot";
      const double fair = static_cast<double>(m) / static_cast<double>(n);
      size_t lo = SIZE_MAX, hi = 0;
      for (auto [backend, k] : c) {
        EXPECT_LE(std::abs(static_cast<double>(k) - fair), fair * 0.01) << "n=" << n << " m=" << m;
        lo = std::min(lo, k);
        hi = std::max(hi, k);
      }
      // Round robin fill: counts differ by at most one.
      EXPECT_LE(hi - lo, 1u) << "n=" << n << " m=" << m;
    }
  }
}

TEST(Maglev, MoreBackendsThanSlots) {
  auto t = MaglevTable::build(nodes(50), 13, kSeed);
  auto c = counts(t);
  EXPECT_EQ(c.count(MaglevTable::kNoBackend), 0u);
  EXPECT_EQ(c.size(), 13u) << "13 backends get one slot each, the rest none";
}

TEST(Maglev, MatchesThePapersPseudocode) {
  std::mt19937_64 rng(34);
  for (int iter = 0; iter < 300; ++iter) {
    uint32_t m;
    do m = 2 + static_cast<uint32_t>(rng() % 5000);
    while (!is_prime(m));
    size_t n = rng() % 80;
    if (iter % 10 == 0) n = m + rng() % 10;  // more backends than slots
    std::vector<MaglevBackend> b;
    for (size_t i = 0; i < n; ++i)
      b.push_back({"10.0." + std::to_string(rng() % 300) + ".1:" + std::to_string(i % 3), static_cast<uint32_t>(i)});
    const uint64_t seed = rng();
    ASSERT_EQ(MaglevTable::build(b, m, seed).slots(), reference_build(b, m, seed)) << "m=" << m << " n=" << n;
  }
  // One large case, where build() takes its shortcut for the last slots.
  auto b = nodes(1000);
  ASSERT_EQ(MaglevTable::build(b, 65537, kSeed).slots(), reference_build(b, 65537, kSeed));
}

// Removing one of N backends: its ~M/N slots move, and the survivors keep
// nearly all of theirs. The paper's Fig. 14 shows that Maglev trades a little
// extra disruption for balance; we bound the extra.
TEST(Maglev, RemovingOneBackendMovesAboutOneNth) {
  std::mt19937_64 rng(1);
  for (size_t n : {10, 100, 1000}) {
    const uint32_t m = MaglevTable::choose_size(n, 65537, 1u << 24);
    auto all = nodes(n);
    auto before = MaglevTable::build(all, m, kSeed);
    for (int trial = 0; trial < 3; ++trial) {
      const size_t gone = rng() % n;
      auto fewer = all;
      fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(gone));
      auto after = MaglevTable::build(fewer, m, kSeed);
      size_t moved = 0, survivors_moved = 0;
      for (uint32_t s = 0; s < m; ++s) {
        if (before.slots()[s] == after.slots()[s]) continue;
        ++moved;
        if (before.slots()[s] != all[gone].index) ++survivors_moved;
      }
      const double frac = static_cast<double>(moved) / m;
      const double survivors = static_cast<double>(survivors_moved) / m;
      // About 1/N moves: the removed backend's share plus a small excess.
      EXPECT_GE(frac, 1.0 / static_cast<double>(n) * 0.99) << "n=" << n;
      EXPECT_LE(frac, 1.0 / static_cast<double>(n) + kMaxSurvivorChurn) << "n=" << n;
      EXPECT_LE(survivors, kMaxSurvivorChurn) << "n=" << n << ": survivors' slots should mostly stay";
    }
  }
}

TEST(Maglev, AddingOneBackendMovesAboutOneNth) {
  for (size_t n : {10, 100, 1000}) {
    const uint32_t m = MaglevTable::choose_size(n + 1, 65537, 1u << 24);
    auto before = MaglevTable::build(nodes(n), m, kSeed);
    auto after = MaglevTable::build(nodes(n + 1), m, kSeed);
    size_t moved = 0, to_newcomer = 0;
    for (uint32_t s = 0; s < m; ++s) {
      if (before.slots()[s] == after.slots()[s]) continue;
      ++moved;
      if (after.slots()[s] == n) ++to_newcomer;
    }
    const double excess = static_cast<double>(moved - to_newcomer) / m;
    EXPECT_LE(excess, kMaxSurvivorChurn) << "n=" << n;
    EXPECT_GE(to_newcomer, m / (n + 1)) << "n=" << n;
  }
}

TEST(Maglev, IndependentOfInputOrder) {
  std::mt19937_64 rng(2);
  for (size_t n : {2, 10, 100, 1000}) {
    auto b = nodes(n);
    const uint32_t m = MaglevTable::choose_size(n, 1009, 1u << 24);
    const auto reference = MaglevTable::build(b, m, kSeed).slots();
    for (int i = 0; i < 5; ++i) {
      std::shuffle(b.begin(), b.end(), rng);
      ASSERT_EQ(MaglevTable::build(b, m, kSeed).slots(), reference) << "n=" << n;
    }
    std::reverse(b.begin(), b.end());
    ASSERT_EQ(MaglevTable::build(b, m, kSeed).slots(), reference);
  }
}

TEST(Maglev, DuplicateKeysKeepOneWhateverTheOrder) {
  const std::vector<MaglevBackend> unique = {{"a:1", 0}, {"b:1", 1}, {"c:1", 2}};
  const std::vector<MaglevBackend> dup1 = {{"a:1", 0}, {"b:1", 1}, {"a:1", 5}, {"c:1", 2}};
  const std::vector<MaglevBackend> dup2 = {{"c:1", 2}, {"a:1", 5}, {"b:1", 1}, {"a:1", 0}};
  const auto ref = MaglevTable::build(unique, 1009, kSeed).slots();
  EXPECT_EQ(MaglevTable::build(dup1, 1009, kSeed).slots(), ref);
  EXPECT_EQ(MaglevTable::build(dup2, 1009, kSeed).slots(), ref) << "the lowest index survives";
}

TEST(Maglev, SeedChangesTheTable) {
  auto b = nodes(10);
  EXPECT_NE(MaglevTable::build(b, 1009, 1).slots(), MaglevTable::build(b, 1009, 2).slots());
}

TEST(Maglev, LookupIsHashModuloSize) {
  auto t = MaglevTable::build(nodes(10), 1009, kSeed);
  for (uint64_t h : {uint64_t{0}, uint64_t{1}, uint64_t{1008}, uint64_t{1009}, uint64_t{123456789}, UINT64_MAX})
    EXPECT_EQ(t.lookup(h), t.slots()[h % 1009]);
}

TEST(Maglev, RejectsSizeThatIsNotPrime) {
  EXPECT_THROW(MaglevTable::build(nodes(3), 0, kSeed), std::invalid_argument);
  EXPECT_THROW(MaglevTable::build(nodes(3), 1, kSeed), std::invalid_argument);
  EXPECT_THROW(MaglevTable::build(nodes(3), 65536, kSeed), std::invalid_argument);
}

// --- Golden values ----------------------------------------------------------
// Computed once from this implementation. If one of these changes, flows move
// between backends across an upgrade and mixed-version appliances behind ECMP
// disagree: change them only on purpose, and say so in the release notes.

TEST(MaglevGolden, HashBytes) {
  auto h = [](std::string_view s, uint64_t seed) { return hash_bytes(s.data(), s.size(), seed); };
  EXPECT_EQ(h("", 0), 0x55b3ad605530219fULL);
  EXPECT_EQ(h("a", 0), 0x505a29ef820f79f6ULL);
  EXPECT_EQ(h("198.51.100.21:30080", 0), 0x0c28c3c1e9fff2b2ULL);
  EXPECT_EQ(h("198.51.100.21:30080", kSeed), 0x1cd069ad39c2c824ULL);
  // A 5-tuple as a flow key: src, dst, sport, dport, proto (13 bytes).
  const uint8_t tuple[13] = {192, 0, 2, 1, 198, 51, 100, 21, 0x9c, 0x40, 0x75, 0x80, 6};
  EXPECT_EQ(hash_bytes(tuple, sizeof tuple, 0), 0x869ccc6713e9266eULL);
  uint8_t bytes64[64];
  for (int i = 0; i < 64; ++i) bytes64[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(hash_bytes(bytes64, sizeof bytes64, 1), 0x052af22946958179ULL);
}

TEST(MaglevGolden, Table) {
  // 198.51.0.1:30080 .. 198.51.0.10:30080 as indexes 0..9, M = 1009, seed "nplb".
  auto t = MaglevTable::build(nodes(10), 1009, kSeed);
  const std::vector<uint32_t> first16 = {7, 6, 5, 1, 8, 1, 9, 6, 3, 6, 7, 2, 6, 3, 9, 3};
  EXPECT_EQ(std::vector<uint32_t>(t.slots().begin(), t.slots().begin() + 16), first16);
  EXPECT_EQ(fingerprint(t.slots()), 0xcf692434ee6c73bcULL);
  // A large table, pinned whole.
  EXPECT_EQ(fingerprint(MaglevTable::build(nodes(1000), 100003, kSeed).slots()), 0x225607b9f7835ae3ULL);
}

// --- hash_bytes -------------------------------------------------------------

TEST(HashBytes, LengthSeedAndAlignmentMatter) {
  const uint8_t zeros[16] = {};
  std::set<uint64_t> seen;
  for (size_t len = 0; len <= 16; ++len) seen.insert(hash_bytes(zeros, len, 0));
  EXPECT_EQ(seen.size(), 17u) << "trailing zero bytes must change the hash";
  EXPECT_NE(hash_bytes("x", 1, 0), hash_bytes("x", 1, 1));
  // Same bytes at any address: same hash.
  uint8_t a[29], b[32];
  for (size_t i = 0; i < 29; ++i) a[i] = b[3 + i] = static_cast<uint8_t>(i * 7 + 1);
  EXPECT_EQ(hash_bytes(a, 29, 5), hash_bytes(b + 3, 29, 5));
}

// Strict avalanche: flipping any input bit flips each output bit with
// probability 1/2. Short keys (backend names) and flow tuples both matter.
TEST(HashBytes, Avalanche) {
  std::mt19937_64 rng(5);
  for (size_t len : {1, 4, 8, 13, 19, 37}) {
    constexpr int kTrials = 4000;
    std::vector<int> flips(len * 8 * 64, 0);
    for (int t = 0; t < kTrials; ++t) {
      uint8_t k[64];
      for (auto& x : k) x = static_cast<uint8_t>(rng());
      const uint64_t seed = rng();
      const uint64_t h = hash_bytes(k, len, seed);
      for (size_t bit = 0; bit < len * 8; ++bit) {
        k[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        const uint64_t d = h ^ hash_bytes(k, len, seed);
        k[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        for (int o = 0; o < 64; ++o) flips[bit * 64 + o] += static_cast<int>((d >> o) & 1);
      }
    }
    // 4000 trials: sd of a rate is 0.0079; 0.05 is over 6 sd.
    for (size_t i = 0; i < flips.size(); ++i)
      ASSERT_NEAR(flips[i] / double{kTrials}, 0.5, 0.05) << "len " << len << " in bit " << i / 64 << " out bit " << i % 64;
  }
}

TEST(HashBytes, SeedAvalanche) {
  // The seed is the table's identity: one seed bit must reshuffle everything.
  std::mt19937_64 rng(6);
  int total = 0;
  constexpr int kTrials = 2000;
  for (int t = 0; t < kTrials; ++t) {
    const uint64_t seed = rng();
    const int bit = static_cast<int>(rng() % 64);
    total += std::popcount(hash_bytes("198.51.100.21:30080", 19, seed) ^
                           hash_bytes("198.51.100.21:30080", 19, seed ^ (1ULL << bit)));
  }
  EXPECT_NEAR(total / double{kTrials}, 32.0, 0.5);
}

// --- Sizing -----------------------------------------------------------------

TEST(MaglevSize, ChooseSize) {
  EXPECT_EQ(MaglevTable::choose_size(1, 65537, 1u << 20), 65537u) << "min_size wins, already prime";
  EXPECT_EQ(MaglevTable::choose_size(0, 65537, 1u << 20), 65537u);
  EXPECT_EQ(MaglevTable::choose_size(1000, 65537, 1u << 20), 100003u) << "smallest prime >= 100000";
  EXPECT_EQ(MaglevTable::choose_size(10, 0, 1u << 20), 1009u);
  EXPECT_EQ(MaglevTable::choose_size(1, 65536, 1u << 20), 65537u) << "rounds up to a prime";
  EXPECT_EQ(MaglevTable::choose_size(0, 0, 100), 2u);
  // The cap.
  EXPECT_EQ(MaglevTable::choose_size(1000, 65537, 65537), 65537u);
  EXPECT_EQ(MaglevTable::choose_size(1000, 65537, 70000), 69997u) << "largest prime <= cap";
  EXPECT_EQ(MaglevTable::choose_size(2000, 0, 100000), 99991u);
  EXPECT_EQ(MaglevTable::choose_size(1, 100000, 100002), 99991u) << "no prime in [min, cap]: below the cap";
  EXPECT_EQ(MaglevTable::choose_size(5, 0, 0), 2u);
  EXPECT_EQ(MaglevTable::choose_size(SIZE_MAX, 0, 1000), 997u) << "no overflow in 100 * N";
  EXPECT_EQ(MaglevTable::choose_size(1, UINT32_MAX, UINT32_MAX), 4294967291u);
}

TEST(MaglevSize, IsPrimeMatchesASieve) {
  constexpr uint32_t kLimit = 200000;
  std::vector<bool> composite(kLimit + 1, false);
  composite[0] = composite[1] = true;
  for (uint32_t i = 2; i * i <= kLimit; ++i)
    if (!composite[i])
      for (uint32_t j = i * i; j <= kLimit; j += i) composite[j] = true;
  for (uint32_t n = 0; n <= kLimit; ++n) ASSERT_EQ(is_prime(n), !composite[n]) << n;
}

TEST(MaglevSize, IsPrimeLarge) {
  EXPECT_TRUE(is_prime(65537));
  EXPECT_TRUE(is_prime(100003));
  EXPECT_TRUE(is_prime(2147483647u));
  EXPECT_TRUE(is_prime(4294967291u));  // the largest 32-bit prime
  EXPECT_TRUE(is_prime(4294967279u));
  EXPECT_FALSE(is_prime(4294967295u));
  EXPECT_FALSE(is_prime(4293001441u));  // 65521^2: the loop bound must include sqrt
  EXPECT_FALSE(is_prime(561));          // Carmichael
  EXPECT_FALSE(is_prime(3215031751u));  // 151 * 751 * 28351, a strong pseudoprime to 2,3,5,7
}

}  // namespace
}  // namespace nplb
