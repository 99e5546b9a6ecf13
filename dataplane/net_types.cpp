#include "net_types.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace nplb {

std::string_view protocol_name(L4Protocol p) {
  switch (p) {
    case L4Protocol::tcp: return "TCP";
    case L4Protocol::udp: return "UDP";
    case L4Protocol::sctp: return "SCTP";
    case L4Protocol::icmp: return "ICMP";
    case L4Protocol::icmpv6: return "ICMPv6";
  }
  return "?";
}

std::optional<L4Protocol> parse_protocol(std::string_view name) {
  if (name == "TCP") return L4Protocol::tcp;
  if (name == "UDP") return L4Protocol::udp;
  if (name == "SCTP") return L4Protocol::sctp;
  return std::nullopt;
}

IpAddr IpAddr::v4(uint32_t host_order) { return v4_be(htonl(host_order)); }

IpAddr IpAddr::v4_be(uint32_t network_order) {
  IpAddr a;
  a.family = IpFamily::v4;
  std::memcpy(a.bytes.data(), &network_order, 4);
  return a;
}

uint32_t IpAddr::v4_be() const {
  uint32_t be;
  std::memcpy(&be, bytes.data(), 4);
  return be;
}

uint32_t IpAddr::v4_host() const { return ntohl(v4_be()); }

bool IpAddr::is_unspecified() const {
  for (uint8_t b : bytes)
    if (b != 0) return false;
  return true;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<IpAddr> parse_ip(std::string_view text) {
  // inet_pton stops at a NUL: "1.2.3.4\0junk" must not read as 1.2.3.4.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddr a;
  if (text.find(':') == std::string_view::npos) {
    // inet_pton(AF_INET) already refuses octal, hex and short forms; it also
    // refuses leading zeros on glibc, but say so explicitly: "010.0.0.1" is
    // ambiguous (octal to some parsers), and Kubernetes rejects it.
    for (size_t i = 0; i < text.size(); ++i)
      if (text[i] == '0' && (i == 0 || text[i - 1] == '.') && i + 1 < text.size() && text[i + 1] != '.')
        return std::nullopt;
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return std::nullopt;
    a.family = IpFamily::v4;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  a.family = IpFamily::v6;
  return a;
}

static int max_prefix(const IpAddr& a) { return a.is_v4() ? 32 : 128; }

bool Cidr::contains(const IpAddr& ip) const {
  if (ip.family != address.family) return false;
  int bits = prefix_len;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((ip.bytes[i] & mask) != (address.bytes[i] & mask)) return false;
  }
  return true;
}

bool Cidr::has_host_bits() const {
  int total = max_prefix(address);
  for (int bit = prefix_len; bit < total; ++bit)
    if (address.bytes[bit / 8] & (0x80 >> (bit % 8))) return true;
  return false;
}

std::string Cidr::str() const { return address.str() + "/" + std::to_string(prefix_len); }

std::optional<Cidr> parse_cidr(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return std::nullopt;
  auto len_text = text.substr(slash + 1);
  if (len_text.empty() || len_text.size() > 3) return std::nullopt;
  int len = 0;
  for (char c : len_text) {
    if (c < '0' || c > '9') return std::nullopt;
    len = len * 10 + (c - '0');
  }
  if (len_text.size() > 1 && len_text[0] == '0') return std::nullopt;
  if (len > max_prefix(*ip)) return std::nullopt;
  return Cidr{*ip, static_cast<uint8_t>(len)};
}

std::string MacAddr::str() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2], bytes[3],
                bytes[4], bytes[5]);
  return buf;
}

bool MacAddr::is_zero() const {
  for (uint8_t b : bytes)
    if (b) return false;
  return true;
}

std::optional<MacAddr> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  MacAddr m;
  for (int i = 0; i < 6; ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':') return std::nullopt;
    m.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return m;
}

}  // namespace nplb
