// Addresses and protocol numbers shared by the data plane and the control plane.
// Wire fields are kept in network byte order where they sit in packets; these
// types hold host-order values and convert at the edges.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nplb {

enum class IpFamily : uint8_t { v4 = 4, v6 = 6 };

// IANA protocol numbers of the transports a NodePort service may use.
enum class L4Protocol : uint8_t { icmp = 1, tcp = 6, udp = 17, icmpv6 = 58, sctp = 132 };

std::string_view protocol_name(L4Protocol p);  // "TCP", "UDP", "SCTP", "ICMP"
std::optional<L4Protocol> parse_protocol(std::string_view kubernetes_name);

// An IPv4 or IPv6 address. IPv4 lives in the first four bytes of `bytes` in
// network order, the rest zero, so comparisons and hashing are plain byte work.
struct IpAddr {
  IpFamily family = IpFamily::v4;
  std::array<uint8_t, 16> bytes{};

  static IpAddr v4(uint32_t host_order);
  static IpAddr v4_be(uint32_t network_order);
  uint32_t v4_host() const;  // only for family v4
  uint32_t v4_be() const;
  bool is_v4() const { return family == IpFamily::v4; }
  bool is_unspecified() const;
  std::string str() const;

  auto operator<=>(const IpAddr&) const = default;
  bool operator==(const IpAddr&) const = default;
};

// Strict parse: dotted quad without leading zeros, or RFC 4291 text. No
// surrounding spaces, no zone index, no prefix.
std::optional<IpAddr> parse_ip(std::string_view text);

struct Cidr {
  IpAddr address;
  uint8_t prefix_len = 0;

  bool contains(const IpAddr& ip) const;
  bool has_host_bits() const;  // 10.0.0.1/8: host bits set beyond the prefix
  std::string str() const;
  bool operator==(const Cidr&) const = default;
};

// "198.51.100.1/24" (interface form: host bits allowed) or "10.0.0.0/8".
std::optional<Cidr> parse_cidr(std::string_view text);

struct MacAddr {
  std::array<uint8_t, 6> bytes{};
  std::string str() const;
  bool is_zero() const;
  bool is_multicast() const { return (bytes[0] & 1) != 0; }
  bool operator==(const MacAddr&) const = default;
};

std::optional<MacAddr> parse_mac(std::string_view text);  // "02:00:00:00:00:01"

}  // namespace nplb
