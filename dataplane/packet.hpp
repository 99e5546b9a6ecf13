// Frame parsing: Ethernet (with up to two 802.1Q/802.1ad tags), ARP, IPv4,
// IPv6 (extension headers walked with a bound), TCP, UDP, SCTP, ICMP.
//
// The parser takes (bytes, length) and bounds-checks every header before it
// reads it (Katran's `if (hdr + 1 > data_end)`), so it runs in unit tests and
// fuzzers without EAL. It never writes; it reports offsets into the frame.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace nplb
