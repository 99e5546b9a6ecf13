// Maglev consistent hashing (Eisenbud et al., NSDI'16, section 3.4).
//
// The lookup table depends only on the *set* of backends and the seed: backends
// are sorted by their key before the permutation fill, so the order in which a
// file lists them never changes which backend a flow gets, and appliances with
// the same services agree on every flow.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace nplb {

// A backend as Maglev sees it: a stable key ("198.51.100.21:30080") and the
// index the caller uses for it (into the snapshot's backend array).
struct MaglevBackend {
  std::string key;
  uint32_t index = 0;
};

class MaglevTable {
 public:
  static constexpr uint32_t kNoBackend = UINT32_MAX;
  // A backend's offset hashes its key with the seed, its skip with the seed
  // xor this tweak ("nplbSKIP"): two independent hashes from one function.
  static constexpr uint64_t kSkipSeedTweak = 0x6e706c62534b4950ULL;

  // The smallest prime >= max(min_size, 100 * backends), capped at max_size
  // (the cap itself need not be prime; the next prime below it is taken).
  static uint32_t choose_size(size_t backend_count, uint32_t min_size, uint32_t max_size);

  // Builds the table of `size` slots (must be prime). With no backends every
  // slot holds kNoBackend.
  static MaglevTable build(std::span<const MaglevBackend> backends, uint32_t size, uint64_t seed);

  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  // The backend index for a flow hash.
  uint32_t lookup(uint64_t flow_hash) const { return slots_[flow_hash % slots_.size()]; }
  const std::vector<uint32_t>& slots() const { return slots_; }

 private:
  std::vector<uint32_t> slots_;
};

bool is_prime(uint32_t n);

// Seeded 64-bit hash of bytes, platform independent (the same on every
// appliance and CPU), used for Maglev permutations and flow hashing.
uint64_t hash_bytes(const void* data, size_t len, uint64_t seed);

}  // namespace nplb
