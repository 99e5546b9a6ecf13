// Internet checksums (RFC 1071) and their incremental update (RFC 1624).
// Incremental updates keep a checksum that arrived bad bad: the appliance
// translates, it never repairs.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace nplb {

// One's-complement sum of `len` bytes folded to 16 bits, not inverted, in
// network byte order as it sits in memory (callers compare with the wire field).
uint32_t ones_complement_add(uint32_t sum, const void* data, size_t len);
uint16_t fold_checksum(uint32_t sum);  // folds carries and inverts

// Full IPv4 header checksum over ihl*4 bytes (checksum field included as it is).
// Returns the value that goes into the field (header with field zero), or 0 when
// verifying a header whose field is correct.
uint16_t ipv4_header_checksum(const void* header, size_t len);

// Full TCP/UDP checksum over an IPv4 pseudo header plus `len` L4 bytes.
// Addresses in network order as they appear in the packet.
uint16_t ipv4_l4_checksum(uint32_t src_be, uint32_t dst_be, uint8_t proto, const void* l4, size_t len);

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changing from
// old_be to new_be (all network byte order as stored in the packet).
inline uint16_t checksum_update16(uint16_t checksum_be, uint16_t old_be, uint16_t new_be) {
  uint32_t sum = static_cast<uint16_t>(~checksum_be);
  sum += static_cast<uint16_t>(~old_be);
  sum += new_be;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// The same for a 32-bit field (an IPv4 address).
inline uint16_t checksum_update32(uint16_t checksum_be, uint32_t old_be, uint32_t new_be) {
  uint32_t sum = static_cast<uint16_t>(~checksum_be);
  sum += static_cast<uint16_t>(~old_be) + static_cast<uint16_t>(~(old_be >> 16));
  sum += (new_be & 0xffff) + (new_be >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// RFC 1624's ~m + m' for a field changing from old_be to new_be, unfolded;
// several fields' differences add up, fold once, and apply with checksum_apply.
inline uint32_t checksum_diff16(uint16_t old_be, uint16_t new_be) {
  return uint32_t(static_cast<uint16_t>(~old_be)) + new_be;
}
inline uint32_t checksum_diff32(uint32_t old_be, uint32_t new_be) {
  return checksum_diff16(static_cast<uint16_t>(old_be), static_cast<uint16_t>(new_be)) +
         checksum_diff16(static_cast<uint16_t>(old_be >> 16), static_cast<uint16_t>(new_be >> 16));
}
inline uint16_t checksum_fold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}
// HC' = ~(~HC + difference).
// Both terms are at most 0xffff, so their sum is at most 0x1fffe and one
// end-around carry folds it (the general fold takes two).
inline uint16_t checksum_apply(uint16_t checksum_be, uint16_t difference) {
  uint32_t sum = uint32_t(static_cast<uint16_t>(~checksum_be)) + difference;
  return static_cast<uint16_t>(~(sum + (sum >> 16)));
}

// The difference of decrementing an IPv4 TTL, whatever its value above 0:
// the (TTL, protocol) word loses one in the TTL byte, so ~m + m' = ~one,
// with `one` that byte's 1 as this machine loads the word.
inline constexpr uint16_t kTtlDecrementDiff =
    static_cast<uint16_t>(~(std::endian::native == std::endian::little ? 0x0001 : 0x0100));

}  // namespace nplb
