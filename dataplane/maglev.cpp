// Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI'16, §3.4) and the hash it is built from.
#include "maglev.hpp"

#include <algorithm>
#include <stdexcept>

namespace nplb {

namespace {

// Odd 64-bit constants: the fractional parts of the square roots of 2, 3, 5,
// 7, 11, 13 and 17 (as SHA-512 uses them), the even ones with the low bit set.
// Nothing up the sleeve; odd so that multiplying by them is a bijection.
constexpr uint64_t kInitial = 0x6a09e667f3bcc909ULL;  // sqrt(2)
constexpr uint64_t kWordMul1 = 0xbb67ae8584caa73bULL;  // sqrt(3)
constexpr uint64_t kWordMul2 = 0xa54ff53a5f1d36f1ULL;  // sqrt(7)
constexpr uint64_t kStateMul = 0x9b05688c2b3e6c1fULL;  // sqrt(13)
constexpr uint64_t kLengthMul = 0x510e527fade682d1ULL;  // sqrt(11)
constexpr uint64_t kFinalMul1 = 0x3c6ef372fe94f82bULL;  // sqrt(5)
constexpr uint64_t kFinalMul2 = 0x1f83d9abfb41bd6bULL;  // sqrt(17)

constexpr uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads spelled out byte by byte: the same value on every CPU.
// GCC and Clang turn the full 8-byte form into a single load on x86 and arm64.
inline uint64_t load_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

inline uint64_t load_le64(const uint8_t* p) {
  return static_cast<uint64_t>(p[0]) | static_cast<uint64_t>(p[1]) << 8 | static_cast<uint64_t>(p[2]) << 16 |
         static_cast<uint64_t>(p[3]) << 24 | static_cast<uint64_t>(p[4]) << 32 |
         static_cast<uint64_t>(p[5]) << 40 | static_cast<uint64_t>(p[6]) << 48 |
         static_cast<uint64_t>(p[7]) << 56;
}

// Folds one input word into the state. The word is scrambled on its own first
// (multiply, xorshift, multiply), so every input bit reaches the high half of
// the word before it meets the state; the state then rotates and multiplies,
// so word order matters and differences keep spreading word after word.
inline uint64_t absorb(uint64_t h, uint64_t w) {
  w *= kWordMul1;
  w ^= w >> 29;
  w *= kWordMul2;
  h ^= w;
  return rotl(h, 27) * kStateMul + kLengthMul;
}

// Final avalanche: xorshift-multiply rounds so that the low bits (which the
// table size's modulo mostly looks at) depend on every state bit.
inline uint64_t finalize(uint64_t h) {
  h ^= h >> 32;
  h *= kFinalMul1;
  h ^= h >> 29;
  h *= kFinalMul2;
  h ^= h >> 32;
  return h;
}

// The inverse of a modulo the prime m (0 < a < m), by the extended Euclidean
// algorithm.
uint64_t inverse_mod(uint64_t a, uint64_t m) {
  int64_t t = 0, new_t = 1;
  int64_t r = static_cast<int64_t>(m), new_r = static_cast<int64_t>(a);
  while (new_r != 0) {
    const int64_t q = r / new_r;
    const int64_t t2 = t - q * new_t;
    t = new_t;
    new_t = t2;
    const int64_t r2 = r - q * new_r;
    r = new_r;
    new_r = r2;
  }
  return static_cast<uint64_t>(t < 0 ? t + static_cast<int64_t>(m) : t);
}

}  // namespace

uint64_t hash_bytes(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  // The length enters the initial state, so keys that differ only by
  // trailing zero bytes (which the tail's zero padding would hide) differ.
  // kInitial keeps the all-zero state (seed 0, empty key) away from the
  // finalizer's fixed point at 0.
  uint64_t h = seed ^ kInitial ^ (static_cast<uint64_t>(len) * kLengthMul);
  size_t n = len;
  while (n >= 8) {
    h = absorb(h, load_le64(p));
    p += 8;
    n -= 8;
  }
  if (n > 0) h = absorb(h, load_le(p, n));
  return finalize(h);
}

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n < 4) return true;  // 2, 3
  if (n % 2 == 0 || n % 3 == 0) return false;
  // Every prime above 3 is 6k - 1 or 6k + 1. d * d fits in 64 bits.
  for (uint64_t d = 5; d * d <= n; d += 6)
    if (n % d == 0 || n % (d + 2) == 0) return false;
  return true;
}

uint32_t MaglevTable::choose_size(size_t backend_count, uint32_t min_size, uint32_t max_size) {
  // A cap below 2 leaves no prime to take: 2 is the smallest table there is.
  const uint64_t cap = std::max<uint32_t>(max_size, 2);
  // 100 slots per backend: the paper's bound for at most 1% imbalance.
  const uint64_t per_backend = backend_count > UINT32_MAX / 100 ? uint64_t{UINT32_MAX} + 1 : backend_count * 100;
  const uint64_t want = std::max<uint64_t>(min_size, per_backend);
  if (want <= cap) {
    for (uint64_t n = std::max<uint64_t>(want, 2); n <= cap; ++n)
      if (is_prime(static_cast<uint32_t>(n))) return static_cast<uint32_t>(n);
  }
  // The cap applies: the largest prime at or below it (2 is prime, so this ends).
  for (uint64_t n = cap;; --n)
    if (is_prime(static_cast<uint32_t>(n))) return static_cast<uint32_t>(n);
}

MaglevTable MaglevTable::build(std::span<const MaglevBackend> backends, uint32_t size, uint64_t seed) {
  if (!is_prime(size)) throw std::invalid_argument("Maglev table size must be prime: " + std::to_string(size));

  MaglevTable table;
  table.slots_.assign(size, kNoBackend);
  if (backends.empty()) return table;

  // Sort by key (then index, so that which duplicate survives does not depend
  // on input order either) and keep one backend per key: the table is then a
  // function of the set of keys and the seed alone.
  std::vector<const MaglevBackend*> order;
  order.reserve(backends.size());
  for (const auto& b : backends) order.push_back(&b);
  std::sort(order.begin(), order.end(), [](const MaglevBackend* a, const MaglevBackend* b) {
    if (a->key != b->key) return a->key < b->key;
    return a->index < b->index;
  });
  order.erase(std::unique(order.begin(), order.end(),
                          [](const MaglevBackend* a, const MaglevBackend* b) { return a->key == b->key; }),
              order.end());

  // §3.4: offset = h1(name) mod M, skip = h2(name) mod (M - 1) + 1, and
  // permutation[i][j] = (offset + j * skip) mod M. M prime makes every
  // permutation a full cycle. We never store the permutations: each backend
  // keeps its next candidate and advances it by skip, with a compare and a
  // subtraction in place of the modulo.
  struct Cursor {
    uint32_t next;   // the backend's next preferred slot
    uint32_t skip;
    uint32_t index;  // what the slot gets
  };
  const size_t n = order.size();
  std::vector<Cursor> cursors(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& key = order[i]->key;
    const uint64_t h1 = hash_bytes(key.data(), key.size(), seed);
    const uint64_t h2 = hash_bytes(key.data(), key.size(), seed ^ MaglevTable::kSkipSeedTweak);
    cursors[i].next = static_cast<uint32_t>(h1 % size);
    cursors[i].skip = size > 1 ? static_cast<uint32_t>(h2 % (size - 1) + 1) : 1;
    cursors[i].index = order[i]->index;
  }

  // Occupancy as a bitmap: 8 KiB for M = 65537, so the probing loop's reads
  // stay in L1 while the slot array only takes stores.
  std::vector<uint64_t> taken((size + 63) / 64, 0);
  auto is_taken = [&](uint64_t s) { return (taken[s >> 6] >> (s & 63)) & 1; };
  uint32_t* slots = table.slots_.data();
  const uint64_t m = size;

  // Round robin: each backend in turn takes its next preferred free slot,
  // until all M are taken (with more backends than slots, some get none).
  //
  // Probing costs about M/F candidates per turn when F slots are free, so
  // the last few slots cost most of the build (M * ln M probes in all, more
  // than half of them for the last 1%). Once at most kTail slots are free we
  // switch to an exact shortcut: backend i's walk from `next` reaches slot s
  // after ((s - next) mod M) * skip^-1 mod M steps, so the slot it takes is the
  // free slot with the fewest steps. Same table, F^2/2 multiplications instead
  // of M * H(F) probes.
  constexpr uint32_t kTail = 64;
  const uint32_t probe_until = size > kTail ? size - kTail : 0;
  uint32_t filled = 0;
  size_t turn = 0;  // whose turn it is, into cursors
  while (filled < probe_until) {
    Cursor& c = cursors[turn];
    uint64_t s = c.next;
    while (is_taken(s)) {
      s += c.skip;
      if (s >= m) s -= m;
    }
    taken[s >> 6] |= uint64_t{1} << (s & 63);
    slots[s] = c.index;
    s += c.skip;
    if (s >= m) s -= m;
    c.next = static_cast<uint32_t>(s);
    ++filled;
    if (++turn == n) turn = 0;
  }

  std::vector<uint32_t> free_slots;
  free_slots.reserve(size - filled);
  for (uint32_t s = 0; s < size; ++s)
    if (!is_taken(s)) free_slots.push_back(s);
  while (!free_slots.empty()) {
    Cursor& c = cursors[turn];
    const uint64_t inv = inverse_mod(c.skip, size);
    size_t best = 0;
    uint64_t best_steps = UINT64_MAX;
    for (size_t k = 0; k < free_slots.size(); ++k) {
      uint64_t d = free_slots[k] + m - c.next;
      if (d >= m) d -= m;
      const uint64_t steps = d * inv % m;
      if (steps < best_steps) {
        best_steps = steps;
        best = k;
      }
    }
    const uint64_t s = free_slots[best];
    free_slots[best] = free_slots.back();
    free_slots.pop_back();
    slots[s] = c.index;
    uint64_t next = s + c.skip;
    if (next >= m) next -= m;
    c.next = static_cast<uint32_t>(next);
    if (++turn == n) turn = 0;
  }
  return table;
}

}  // namespace nplb
