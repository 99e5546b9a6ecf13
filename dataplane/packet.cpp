#include "packet.hpp"

#include <cstring>

namespace nplb {
namespace {

// Every function fills the caller's ParsedFrame in place: returning it by
// value made callers copy it with wide loads over the narrow stores that had
// just filled it, a store-forwarding stall per packet.
void dropped(ParsedFrame& f, DropReason reason) {
  f.kind = FrameKind::drop;
  f.drop_reason = reason;
}

// Parses the transport header at f.l4_offset; f.l4_len bytes are available.
void parse_l4(const uint8_t* frame, ParsedFrame& f) {
  const uint8_t* l4 = frame + f.l4_offset;
  switch (f.protocol) {
    case static_cast<uint8_t>(L4Protocol::tcp): {
      if (f.l4_len < kTcpMinHeaderLen) return dropped(f, DropReason::bad_l4_header);
      // RFC 9293 3.1: data offset counts 32-bit words, at least 5, and the header
      // it announces must be inside the segment.
      unsigned data_offset = (l4[12] >> 4) * 4u;
      if (data_offset < kTcpMinHeaderLen || data_offset > f.l4_len) return dropped(f, DropReason::bad_l4_header);
      f.tcp_flags = l4[13];
      break;
    }
    case static_cast<uint8_t>(L4Protocol::udp): {
      if (f.l4_len < kUdpHeaderLen) return dropped(f, DropReason::bad_l4_header);
      // RFC 768: length covers header and data; below 8 or beyond the IP
      // payload the datagram is malformed.
      uint16_t udp_len = load_be16(l4 + 4);
      if (udp_len < kUdpHeaderLen || udp_len > f.l4_len) return dropped(f, DropReason::bad_l4_header);
      break;
    }
    case static_cast<uint8_t>(L4Protocol::sctp):
      if (f.l4_len < 12) return dropped(f, DropReason::bad_l4_header);
      break;
    default:
      return;  // ICMP and others carry no ports; the processor decides
  }
  f.has_ports = true;
  f.src_port_be = static_cast<uint16_t>(l4[0] | l4[1] << 8);
  f.dst_port_be = static_cast<uint16_t>(l4[2] | l4[3] << 8);
  return;
}

void parse_ipv4(const uint8_t* frame, uint32_t len, ParsedFrame& f, ParseOptions options) {
  const uint8_t* ip = frame + f.l3_offset;
  uint32_t available = len - f.l3_offset;
  if (available < kIpv4MinHeaderLen) return dropped(f, DropReason::too_short);
  if ((ip[0] >> 4) != 4) return dropped(f, DropReason::bad_ip_version);
  // RFC 791: IHL counts 32-bit words, minimum 5. Options (IHL 6..15) are
  // forwarded as they are: the appliance routes on addresses and ports only.
  uint32_t header_len = (ip[0] & 0x0f) * 4u;
  if (header_len < kIpv4MinHeaderLen || header_len > available) return dropped(f, DropReason::bad_ip_header_length);
  uint32_t total_len = load_be16(ip + 2);
  if (total_len < header_len || total_len > available) return dropped(f, DropReason::bad_length);
  if (!options.ip_checksum_verified && !ipv4_header_checksum_ok(ip, header_len))
    return dropped(f, DropReason::bad_ip_checksum);

  f.kind = FrameKind::ipv4;
  f.frame_len = f.l3_offset + total_len;  // Ethernet padding beyond the datagram is trimmed
  f.protocol = ip[9];
  f.l4_offset = static_cast<uint16_t>(f.l3_offset + header_len);
  f.l4_len = static_cast<uint16_t>(total_len - header_len);
  uint16_t frag = load_be16(ip + 6);
  uint16_t offset = frag & 0x1fff;
  bool more_fragments = (frag & 0x2000) != 0;
  if (offset != 0 || more_fragments) {
    f.is_fragment = true;
    f.is_first_fragment = offset == 0;
    // Ports are only in the first fragment; never read them elsewhere.
    if (!f.is_first_fragment) return;
  }
  return parse_l4(frame, f);
}

bool is_ipv6_extension_header(uint8_t next) {
  // RFC 8200 4.1: hop-by-hop, routing, fragment, destination options; plus
  // mobility (135) and HIP/shim6 (139, 140) chained the same way.
  return next == 0 || next == 43 || next == 44 || next == 60 || next == 135 || next == 139 || next == 140;
}

void parse_ipv6(const uint8_t* frame, uint32_t len, ParsedFrame& f) {
  const uint8_t* ip = frame + f.l3_offset;
  uint32_t available = len - f.l3_offset;
  if (available < kIpv6HeaderLen) return dropped(f, DropReason::too_short);
  if ((ip[0] >> 4) != 6) return dropped(f, DropReason::bad_ip_version);
  uint32_t payload_len = load_be16(ip + 4);
  if (kIpv6HeaderLen + payload_len > available) return dropped(f, DropReason::bad_length);
  f.kind = FrameKind::ipv6;
  f.frame_len = f.l3_offset + kIpv6HeaderLen + payload_len;

  uint8_t next = ip[6];
  uint32_t offset = kIpv6HeaderLen;
  uint32_t end = kIpv6HeaderLen + payload_len;
  for (int walked = 0; is_ipv6_extension_header(next); ++walked) {
    if (walked == kMaxIpv6ExtensionHeaders || offset + 8 > end) return dropped(f, DropReason::bad_l4_header);
    const uint8_t* ext = ip + offset;
    if (next == 44) {  // fragment header: fixed 8 bytes
      uint16_t frag = load_be16(ext + 2);
      f.is_fragment = true;
      f.is_first_fragment = (frag & 0xfff8) == 0;
      next = ext[0];
      offset += 8;
      if (!f.is_first_fragment) {
        f.protocol = next;
        f.l4_offset = static_cast<uint16_t>(f.l3_offset + offset);
        f.l4_len = static_cast<uint16_t>(end - offset);
        return;
      }
      continue;
    }
    uint32_t ext_len = (ext[1] + 1u) * 8u;
    next = ext[0];
    offset += ext_len;
    if (offset > end) return dropped(f, DropReason::bad_l4_header);
  }
  f.protocol = next;
  f.l4_offset = static_cast<uint16_t>(f.l3_offset + offset);
  f.l4_len = static_cast<uint16_t>(end - offset);
  return parse_l4(frame, f);
}

}  // namespace

void parse_frame_into(const uint8_t* frame, uint32_t len, ParseOptions options, ParsedFrame& f) {
  f = ParsedFrame{};
  if (len < kEthernetHeaderLen) return dropped(f, DropReason::too_short);
  uint16_t ether_type = load_be16(frame + 12);
  uint32_t offset = kEthernetHeaderLen;
  while (ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ) {
    if (f.vlan_tags == 2 || offset + kVlanTagLen > len) return dropped(f, DropReason::bad_vlan);
    ether_type = load_be16(frame + offset + 2);
    offset += kVlanTagLen;
    ++f.vlan_tags;
  }
  f.l3_offset = static_cast<uint16_t>(offset);
  f.frame_len = len;
  switch (ether_type) {
    case kEtherTypeArp:
      if (len - offset < kArpIpv4Len) return dropped(f, DropReason::arp_ignored);
      f.kind = FrameKind::arp;
      return;
    case kEtherTypeIpv4:
      return parse_ipv4(frame, len, f, options);
    case kEtherTypeIpv6:
      return parse_ipv6(frame, len, f);
    default:
      return dropped(f, DropReason::unsupported_ethertype);
  }
}

ParsedFrame parse_frame(const uint8_t* frame, uint32_t len, ParseOptions options) {
  ParsedFrame f;
  parse_frame_into(frame, len, options, f);
  return f;
}

}  // namespace nplb
