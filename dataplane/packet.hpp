// Frame parsing: Ethernet (with up to two 802.1Q/802.1ad tags), ARP, IPv4,
// IPv6 (extension headers walked with a bound), TCP, UDP, SCTP, ICMP.
//
// The parser takes (bytes, length) and bounds-checks every header before it
// reads it (Katran's `if (hdr + 1 > data_end)`), so it runs in unit tests and
// fuzzers without EAL. It never writes; it reports offsets into the frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "counters.hpp"
#include "net_types.hpp"

namespace nplb {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;

inline constexpr size_t kEthernetHeaderLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kIpv4MinHeaderLen = 20;
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kTcpMinHeaderLen = 20;
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr size_t kArpIpv4Len = 28;
inline constexpr int kMaxIpv6ExtensionHeaders = 8;

// TCP flags (RFC 9293 section 3.1).
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;

enum class FrameKind : uint8_t { drop, arp, ipv4, ipv6 };

// What the parser learned. Offsets are from the start of the frame.
struct ParsedFrame {
  FrameKind kind = FrameKind::drop;
  DropReason drop_reason = DropReason::too_short;  // valid when kind == drop
  uint8_t vlan_tags = 0;
  uint16_t l3_offset = 0;
  uint16_t l4_offset = 0;
  uint32_t frame_len = 0;  // frame length the IP datagram accounts for (padding trimmed)
  uint16_t l4_len = 0;     // bytes from l4_offset to the end of the IP datagram
  uint8_t protocol = 0;    // IP protocol / IPv6 final next header
  uint8_t tcp_flags = 0;
  bool is_fragment = false;
  bool is_first_fragment = false;
  bool has_ports = false;  // TCP, UDP or SCTP with a complete header
  uint16_t src_port_be = 0;
  uint16_t dst_port_be = 0;
};

struct ParseOptions {
  // The NIC verified the IPv4 header checksum as good (RTE_MBUF_F_RX_IP_CKSUM_GOOD):
  // no need to recompute it.
  bool ip_checksum_verified = false;
};

ParsedFrame parse_frame(const uint8_t* frame, uint32_t len, ParseOptions options = {});
// The same into `out` (the fast path: no struct copy).
void parse_frame_into(const uint8_t* frame, uint32_t len, ParseOptions options, ParsedFrame& out);

// Network-order loads and stores that do not assume alignment.
inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t load_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// RFC 1071 over an IPv4 header (a multiple of 4 bytes, at least 20): zero
// when the header with its checksum field sums to all ones. The 20 bytes
// every header has are summed from three straight loads (GCC left the loop
// rolled: a third of the common-shape parse's instructions); options, rare,
// word by word.
inline bool ipv4_header_checksum_ok(const uint8_t* ip, uint32_t header_len) {
  uint64_t w0, w1;
  uint32_t w2;
  std::memcpy(&w0, ip, 8);
  std::memcpy(&w1, ip + 8, 8);
  std::memcpy(&w2, ip + 16, 4);
  uint64_t sum = ((w0 & 0xffffffff) + (w0 >> 32)) + ((w1 & 0xffffffff) + (w1 >> 32)) + w2;
  for (uint32_t i = 20; i < header_len; i += 4) {
    uint32_t word;
    std::memcpy(&word, ip + i, 4);
    sum += word;
  }
  // The folded sum is all ones exactly when sum is a nonzero multiple of
  // 0xffff (2^16 = 1 modulo 0xffff). One fold of its three 16-bit parts
  // keeps it modulo 0xffff and leaves at most 2 * 0xffff + 15: one short
  // step where the end-around carries were four dependent ones.
  uint64_t parts = (sum & 0xffff) + ((sum >> 16) & 0xffff) + (sum >> 32);
  return parts == 0xffff || parts == 2 * 0xffff;
}

// A TCP or UDP header whole and consistent within the `l4_len` bytes of
// transport the datagram holds (TCP: 20 bytes at least, a data offset
// inside; UDP: a length inside); TCP's flags into tcp_flags. Any other
// protocol: false. The common-shape parse and the worker's fast lane share it.
inline bool common_transport_ok(uint8_t protocol, const uint8_t* l4, uint32_t l4_len, uint8_t& tcp_flags) {
  if (protocol == static_cast<uint8_t>(L4Protocol::tcp)) {
    // Bytes 12-13 of the header only once the datagram holds 20 of it.
    if (l4_len < kTcpMinHeaderLen) return false;
    uint32_t data_offset = (l4[12] >> 4) * 4u;
    if (data_offset < kTcpMinHeaderLen || data_offset > l4_len) return false;
    tcp_flags = l4[13];
    return true;
  }
  if (protocol == static_cast<uint8_t>(L4Protocol::udp)) {
    uint32_t udp_len = load_be16(l4 + 4);
    return udp_len >= kUdpHeaderLen && udp_len <= l4_len;
  }
  return false;
}

// The shape nearly every frame a load balancer forwards has: untagged
// IPv4 without options, not a fragment, TCP or UDP with a sound header (and
// a good IPv4 header checksum, unless the NIC checked it). Fills `out`
// exactly as parse_frame_into would and returns true; returns false for
// anything else, leaving `out` to parse_frame_into. The same checks in a
// few wide loads (tests/unit/packet_test.cpp, CommonShape.*, holds it to the
// general parser).
inline bool parse_common_ipv4(const uint8_t* frame, uint32_t len, ParseOptions options, ParsedFrame& out) {
  constexpr uint32_t kL3 = kEthernetHeaderLen, kL4 = kEthernetHeaderLen + kIpv4MinHeaderLen;
  if (len < kL4 + kUdpHeaderLen) return false;
  // Bytes 12-19: EtherType, version/IHL, TOS, total length, identification.
  uint64_t head;
  std::memcpy(&head, frame + 12, 8);
  if ((head & 0xffffff) != 0x450008) return false;  // 0x0800, then 0x45 (version 4, 20-byte header)
  uint32_t total_len = __builtin_bswap16(static_cast<uint16_t>(head >> 32));
  if (total_len < kIpv4MinHeaderLen + kUdpHeaderLen || kL3 + total_len > len) return false;
  // Bytes 20-23: flags/fragment offset, TTL, protocol. MF or an offset: a fragment.
  uint32_t frag_ttl_proto;
  std::memcpy(&frag_ttl_proto, frame + 20, 4);
  if (frag_ttl_proto & 0xff3f) return false;
  if (!options.ip_checksum_verified && !ipv4_header_checksum_ok(frame + kL3, kIpv4MinHeaderLen)) return false;
  uint8_t protocol = static_cast<uint8_t>(frag_ttl_proto >> 24);
  uint32_t l4_len = total_len - kIpv4MinHeaderLen;
  const uint8_t* l4 = frame + kL4;
  uint8_t tcp_flags = 0;
  if (!common_transport_ok(protocol, l4, l4_len, tcp_flags)) return false;
  uint32_t ports;
  std::memcpy(&ports, l4, 4);
  out = ParsedFrame{};
  out.kind = FrameKind::ipv4;
  out.l3_offset = kL3;
  out.l4_offset = kL4;
  out.frame_len = kL3 + total_len;
  out.l4_len = static_cast<uint16_t>(l4_len);
  out.protocol = protocol;
  out.tcp_flags = tcp_flags;
  out.has_ports = true;
  out.src_port_be = static_cast<uint16_t>(ports);
  out.dst_port_be = static_cast<uint16_t>(ports >> 16);
  return true;
}

}  // namespace nplb
