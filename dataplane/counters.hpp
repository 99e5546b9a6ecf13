// Every packet the data plane does not forward has exactly one reason, and
// every reason is one entry of this list: the enum, the names in the final
// counters JSON and the metrics all come from it (VPP's error-list style).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace nplb {

#define NPLB_DROP_REASONS(X)                                                                  \
  X(too_short, "frame shorter than its headers")                                              \
  X(segmented, "frame in several mbufs: nplb does not enable scattered RX")                   \
  X(unsupported_ethertype, "not ARP, IPv4 or IPv6")                                           \
  X(bad_vlan, "VLAN tag stack deeper than two, or truncated")                                 \
  X(bad_ip_version, "IP version field disagrees with the ethertype")                          \
  X(bad_ip_header_length, "IHL below 5 or beyond the packet")                                 \
  X(bad_length, "IP total length beyond the frame, or below the header")                      \
  X(bad_ip_checksum, "IPv4 header checksum wrong")                                            \
  X(ttl_exceeded, "TTL or hop limit <= 1: forwarding would expire it")                        \
  X(fragment, "IP fragment: ports are not in every fragment, so fragments are not balanced")  \
  X(martian_source, "source is 0.0.0.0, broadcast, multicast, loopback or one of ours")       \
  X(bad_l4_header, "TCP/UDP header truncated, data offset or UDP length wrong")               \
  X(ipv6_not_supported, "IPv6: parsed, not yet forwarded in nat mode")                        \
  X(not_for_us, "destination is no address of the appliance")                                 \
  X(to_appliance, "for an appliance address, but no local handler (kernel path comes later)")   \
  X(no_service, "no service on this frontend, protocol and port (refused: RST / ICMP)")        \
  X(unsupported_protocol, "transport not balanced (not TCP or UDP)")                          \
  X(no_backend, "the service has no usable backend (refused: TCP RST / ICMP port unreachable)") \
  X(backend_removed, "the connection's backend left the service (on_backend_removed: reset)")   \
  X(invalid_tcp_flags, "illegal TCP flag combination (SYN+FIN, SYN+RST, none)")               \
  X(no_flow, "TCP packet that cannot open a connection, without flow state")                 \
  X(no_reverse_flow, "packet to a SNAT address that belongs to no flow")                      \
  X(flow_table_full, "no room for a new flow")                                                \
  X(snat_exhausted, "no free SNAT port toward this backend")                                  \
  X(no_route, "no port reaches the destination")                                              \
  X(neighbor_unresolved, "next hop MAC not yet known (an ARP request was sent)")              \
  X(arp_ignored, "ARP not for us, or malformed")                                              \
  X(icmp_ignored, "ICMP not handled (not an echo request to us)")                             \
  X(tx_full, "TX queue full")                                                                 \
  X(exception_ring_full, "control thread's ring full")

enum class DropReason : uint8_t {
#define NPLB_X(name, text) name,
  NPLB_DROP_REASONS(NPLB_X)
#undef NPLB_X
      count
};

inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::count);

inline constexpr std::array<std::string_view, kDropReasonCount> kDropReasonNames = {
#define NPLB_X(name, text) #name,
    NPLB_DROP_REASONS(NPLB_X)
#undef NPLB_X
};

inline constexpr std::array<std::string_view, kDropReasonCount> kDropReasonHelp = {
#define NPLB_X(name, text) text,
    NPLB_DROP_REASONS(NPLB_X)
#undef NPLB_X
};

inline std::string_view drop_reason_name(DropReason r) { return kDropReasonNames[static_cast<size_t>(r)]; }

}  // namespace nplb
