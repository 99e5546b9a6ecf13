// Internet checksum (RFC 1071) over buffers and the IPv4 pseudo header.
//
// RFC 1071 §2(B): the sum is independent of byte order, "the sum of 16-bit
// integers can be computed in either byte order". We therefore load words in
// the host's order straight from memory and the result comes out in network
// order as it sits in the packet, with no swap on either end.
//
// RFC 1071 §2(C): "parallel summation" — on a 64-bit machine, sum 64-bit words
// with end-around carry; folding 64 -> 32 -> 16 bits afterwards gives the same
// one's complement sum (2^16 - 1 divides 2^64 - 1).
#include "checksum.hpp"

#include <cstring>

namespace nplb {

namespace {

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // unaligned-safe; compiles to one load
  return v;
}

inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// a + b with the carry out of bit 63 added back in (one's complement addition).
inline uint64_t add_carry(uint64_t a, uint64_t b) {
  uint64_t s = a + b;
  return s + (s < b);
}

// Folds a 64-bit one's complement sum to 16 bits. Zero stays zero; any other
// multiple of 0xffff becomes 0xffff (negative zero), as RFC 1071 sums do.
inline uint32_t fold64(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);  // <= 2^33 - 2
  s = (s & 0xffffffffu) + (s >> 32);  // <= 2^32 - 1
  s = (s & 0xffff) + (s >> 16);       // <= 0x1fffe
  s = (s & 0xffff) + (s >> 16);       // <= 0xffff
  return static_cast<uint32_t>(s);
}

}  // namespace

// Chaining calls sums consecutive pieces of one buffer only if every piece but
// the last has an even length (word boundaries are counted from `data`).
uint32_t ones_complement_add(uint32_t sum, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t s = sum;

  // Four independent accumulators would buy little at packet-header sizes;
  // one carry chain over 32-byte strides keeps the loop short and branch-light.
  while (len >= 32) {
    s = add_carry(s, load64(p));
    s = add_carry(s, load64(p + 8));
    s = add_carry(s, load64(p + 16));
    s = add_carry(s, load64(p + 24));
    p += 32;
    len -= 32;
  }
  while (len >= 8) {
    s = add_carry(s, load64(p));
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    s = add_carry(s, load32(p));
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    s = add_carry(s, load16(p));
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    // RFC 1071 §4.1: an odd trailing byte is padded with a zero byte after
    // it, i.e. it is the first (high-order on the wire) byte of a word.
    const uint8_t last[2] = {*p, 0};
    s = add_carry(s, load16(last));
  }
  return fold64(s);
}

uint16_t fold_checksum(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t ipv4_header_checksum(const void* header, size_t len) {
  return fold_checksum(ones_complement_add(0, header, len));
}

// On UDP's zero: the pseudo header holds a non-zero protocol, so the sum is
// never +0 and this function never returns 0xffff; it returns 0 when the sum
// is 0xffff. RFC 768 reserves a transmitted 0 for "no checksum", so a UDP
// sender writes 0xffff in that case (the same value in one's complement), and
// a packet that arrived with 0 carries no checksum to update. Both are the
// caller's decisions; this function only computes.
uint16_t ipv4_l4_checksum(uint32_t src_be, uint32_t dst_be, uint8_t proto, const void* l4, size_t len) {
  // RFC 793 §3.1 / RFC 768: the pseudo header is source address, destination
  // address, a zero byte, the protocol and the TCP/UDP length (16 bits),
  // 12 bytes laid out as on the wire.
  uint8_t pseudo[12];
  std::memcpy(pseudo, &src_be, 4);
  std::memcpy(pseudo + 4, &dst_be, 4);
  pseudo[8] = 0;
  pseudo[9] = proto;
  pseudo[10] = static_cast<uint8_t>(len >> 8);
  pseudo[11] = static_cast<uint8_t>(len);
  uint32_t sum = ones_complement_add(0, pseudo, sizeof pseudo);
  // The pseudo header's 12 bytes are even, so the L4 words keep their parity.
  sum = ones_complement_add(sum, l4, len);
  return fold_checksum(sum);
}

}  // namespace nplb
