// Addresses, prefixes, MACs and protocol names: the strict text forms the
// configuration and the Kubernetes objects use.
#include "dataplane/net_types.hpp"

#include <gtest/gtest.h>

#include <string>

namespace nplb {
namespace {

// --- parse_ip ----------------------------------------------------------------

TEST(ParseIp, ValidV4) {
  struct Case {
    const char* text;
    uint32_t host;
  };
  for (auto c : {Case{"192.0.2.1", 0xc0000201}, Case{"0.0.0.0", 0}, Case{"255.255.255.255", 0xffffffff},
                 Case{"198.51.100.0", 0xc6336400}, Case{"10.0.0.10", 0x0a00000a}, Case{"203.0.113.100", 0xcb007164}}) {
    auto ip = parse_ip(c.text);
    ASSERT_TRUE(ip) << c.text;
    EXPECT_TRUE(ip->is_v4());
    EXPECT_EQ(ip->family, IpFamily::v4);
    EXPECT_EQ(ip->v4_host(), c.host) << c.text;
    EXPECT_EQ(ip->str(), c.text) << "round trip";
    // The 12 bytes after an IPv4 address stay zero: comparisons and hashing
    // are plain byte work.
    for (size_t i = 4; i < 16; ++i) EXPECT_EQ(ip->bytes[i], 0) << c.text;
  }
}

TEST(ParseIp, ValidV6) {
  struct Case {
    const char* text;
    const char* canonical;
  };
  for (auto c : {Case{"::", "::"}, Case{"::1", "::1"}, Case{"2001:db8::1", "2001:db8::1"},
                 Case{"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},  // leading zeros are fine in v6
                 Case{"2001:DB8::A", "2001:db8::a"}, Case{"fe80::1", "fe80::1"},
                 Case{"::ffff:192.0.2.1", "::ffff:192.0.2.1"}}) {
    auto ip = parse_ip(c.text);
    ASSERT_TRUE(ip) << c.text;
    EXPECT_FALSE(ip->is_v4()) << c.text;
    EXPECT_EQ(ip->family, IpFamily::v6);
    EXPECT_EQ(ip->str(), c.canonical);
  }
  auto ip = parse_ip("2001:db8::1");
  EXPECT_EQ(ip->bytes[0], 0x20);
  EXPECT_EQ(ip->bytes[1], 0x01);
  EXPECT_EQ(ip->bytes[15], 0x01);
}

TEST(ParseIp, RejectsLeadingZerosInV4) {
  // "010.0.0.1" is octal 8.0.0.1 to inet_aton and some other parsers;
  // Kubernetes rejects such addresses, and so do we.
  for (const char* t : {"01.2.3.4", "1.02.3.4", "1.2.03.4", "1.2.3.04", "1.2.3.00", "00.0.0.0", "010.0.0.1"})
    EXPECT_FALSE(parse_ip(t)) << t;
  // A single 0 is a number, not a leading zero.
  EXPECT_TRUE(parse_ip("10.0.0.0"));
  EXPECT_TRUE(parse_ip("100.100.100.100"));
}

TEST(ParseIp, RejectsGarbage) {
  for (const char* t : {"", "1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1..2.3", "1.2.3.", ".1.2.3",
                        "0x1.2.3.4", "-1.2.3.4", "+1.2.3.4", "a.b.c.d", "1.2.3.4/24", "localhost",
                        "2001:db8:::1", "2001:db8::1::2", "12345::1", "g::1", ":", ":::", "fe80::1%eth0",
                        "[::1]", "1.2.3.4:80", "2001:db8::/32"})
    EXPECT_FALSE(parse_ip(t)) << '"' << t << '"';
  // Longer than any address text.
  EXPECT_FALSE(parse_ip(std::string(100, '1')));
}

TEST(ParseIp, RejectsSurroundingSpaces) {
  for (const char* t : {" 1.2.3.4", "1.2.3.4 ", "\t1.2.3.4", "1.2.3.4\n", "1.2 .3.4", " ::1", "::1 "})
    EXPECT_FALSE(parse_ip(t)) << '"' << t << '"';
}

// Needs a fix in dataplane/net_types.cpp: parse_ip copies the view into a C
// string for inet_pton, which stops at the first NUL, so "1.2.3.4\0junk"
// (possible from a YAML "\0" escape) is accepted as 1.2.3.4. Enable once
// parse_ip rejects a view that contains '\0'.
TEST(ParseIp, RejectsEmbeddedNul) {
  EXPECT_FALSE(parse_ip(std::string("1.2.3.4\0junk", 12)));
  EXPECT_FALSE(parse_ip(std::string("::1\0", 4)));
}

TEST(IpAddr, ConstructorsAndAccessors) {
  const IpAddr a = IpAddr::v4(0xc0000201);
  EXPECT_EQ(a.str(), "192.0.2.1");
  EXPECT_EQ(a.v4_host(), 0xc0000201u);
  EXPECT_EQ(a.bytes[0], 192);
  EXPECT_EQ(a.bytes[3], 1);
  EXPECT_EQ(IpAddr::v4_be(a.v4_be()), a);
  EXPECT_EQ(*parse_ip("192.0.2.1"), a);
  EXPECT_TRUE(IpAddr::v4(0).is_unspecified());
  EXPECT_TRUE(parse_ip("::")->is_unspecified());
  EXPECT_FALSE(a.is_unspecified());
  // Address order is numeric order within a family.
  EXPECT_LT(*parse_ip("192.0.2.1"), *parse_ip("192.0.2.10"));
  EXPECT_LT(*parse_ip("9.255.255.255"), *parse_ip("10.0.0.0"));
  // The same bytes in different families are different addresses.
  EXPECT_NE(*parse_ip("::"), IpAddr::v4(0));
}

// --- parse_cidr ----------------------------------------------------------------

TEST(ParseCidr, PrefixBounds) {
  EXPECT_EQ(parse_cidr("0.0.0.0/0")->prefix_len, 0);
  EXPECT_EQ(parse_cidr("192.0.2.1/32")->prefix_len, 32);
  EXPECT_FALSE(parse_cidr("192.0.2.1/33"));
  EXPECT_EQ(parse_cidr("::/0")->prefix_len, 0);
  EXPECT_EQ(parse_cidr("2001:db8::1/128")->prefix_len, 128);
  EXPECT_FALSE(parse_cidr("2001:db8::1/129"));
  EXPECT_FALSE(parse_cidr("192.0.2.0/1000"));
  for (const char* t : {"192.0.2.0", "192.0.2.0/", "/24", "192.0.2.0/024", "192.0.2.0/-1", "192.0.2.0/+24",
                        "192.0.2.0/ 24", "192.0.2.0 /24", "192.0.2.0/24 ", "192.0.2.0/2a", "192.0.2.0/24/8",
                        "192.0.2/24", "01.0.0.0/8", "", "/"})
    EXPECT_FALSE(parse_cidr(t)) << '"' << t << '"';
}

TEST(ParseCidr, RoundTripKeepsHostBits) {
  // Interface form: the address keeps its host bits.
  auto c = parse_cidr("198.51.100.1/24");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->address, *parse_ip("198.51.100.1"));
  EXPECT_EQ(c->str(), "198.51.100.1/24");
  EXPECT_EQ(parse_cidr("2001:db8::1/64")->str(), "2001:db8::1/64");
}

TEST(ParseCidr, HasHostBits) {
  EXPECT_FALSE(parse_cidr("10.0.0.0/8")->has_host_bits());
  EXPECT_TRUE(parse_cidr("10.0.0.1/8")->has_host_bits());
  EXPECT_FALSE(parse_cidr("10.128.0.0/9")->has_host_bits());
  EXPECT_TRUE(parse_cidr("10.64.0.0/9")->has_host_bits());
  EXPECT_FALSE(parse_cidr("192.0.2.1/32")->has_host_bits());
  EXPECT_FALSE(parse_cidr("0.0.0.0/0")->has_host_bits());
  EXPECT_TRUE(parse_cidr("0.0.0.1/0")->has_host_bits());
  EXPECT_TRUE(parse_cidr("192.0.2.1/31")->has_host_bits());
  EXPECT_FALSE(parse_cidr("2001:db8::/32")->has_host_bits());
  EXPECT_TRUE(parse_cidr("2001:db8::1/64")->has_host_bits());
  EXPECT_FALSE(parse_cidr("2001:db8::1/128")->has_host_bits());
}

TEST(ParseCidr, Contains) {
  const Cidr net = *parse_cidr("198.51.100.0/24");
  EXPECT_TRUE(net.contains(*parse_ip("198.51.100.0")));
  EXPECT_TRUE(net.contains(*parse_ip("198.51.100.255")));
  EXPECT_FALSE(net.contains(*parse_ip("198.51.101.0")));
  EXPECT_FALSE(net.contains(*parse_ip("198.51.99.255")));
  // The interface form contains its whole subnet.
  EXPECT_TRUE(parse_cidr("198.51.100.1/24")->contains(*parse_ip("198.51.100.200")));
  // Prefixes that end inside a byte.
  const Cidr odd = *parse_cidr("198.18.0.0/15");
  EXPECT_TRUE(odd.contains(*parse_ip("198.18.0.1")));
  EXPECT_TRUE(odd.contains(*parse_ip("198.19.255.255")));
  EXPECT_FALSE(odd.contains(*parse_ip("198.20.0.0")));
  EXPECT_FALSE(odd.contains(*parse_ip("198.17.255.255")));
  // /32 and /0.
  EXPECT_TRUE(parse_cidr("192.0.2.1/32")->contains(*parse_ip("192.0.2.1")));
  EXPECT_FALSE(parse_cidr("192.0.2.1/32")->contains(*parse_ip("192.0.2.2")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(*parse_ip("203.0.113.7")));
  // Families never mix, not even ::/0 and IPv4.
  EXPECT_FALSE(parse_cidr("0.0.0.0/0")->contains(*parse_ip("::1")));
  EXPECT_FALSE(parse_cidr("::/0")->contains(*parse_ip("192.0.2.1")));
  // IPv6.
  const Cidr v6 = *parse_cidr("2001:db8::/32");
  EXPECT_TRUE(v6.contains(*parse_ip("2001:db8:ffff::1")));
  EXPECT_FALSE(v6.contains(*parse_ip("2001:db9::1")));
  EXPECT_TRUE(parse_cidr("2001:db8::/127")->contains(*parse_ip("2001:db8::1")));
  EXPECT_FALSE(parse_cidr("2001:db8::/127")->contains(*parse_ip("2001:db8::2")));
}

// --- parse_mac -----------------------------------------------------------------

TEST(ParseMac, Valid) {
  auto m = parse_mac("02:00:00:00:00:01");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, (std::array<uint8_t, 6>{2, 0, 0, 0, 0, 1}));
  EXPECT_EQ(m->str(), "02:00:00:00:00:01");
  EXPECT_FALSE(m->is_zero());
  EXPECT_FALSE(m->is_multicast());
  // Upper case is accepted; output is lower case.
  EXPECT_EQ(parse_mac("AA:BB:CC:DD:EE:FF")->str(), "aa:bb:cc:dd:ee:ff");
  EXPECT_EQ(parse_mac("aA:0b:C0:dD:e1:F2")->str(), "aa:0b:c0:dd:e1:f2");
  EXPECT_TRUE(parse_mac("00:00:00:00:00:00")->is_zero());
  EXPECT_TRUE(parse_mac("ff:ff:ff:ff:ff:ff")->is_multicast());
  EXPECT_TRUE(parse_mac("01:00:5e:00:00:01")->is_multicast());
  EXPECT_TRUE(parse_mac("33:33:00:00:00:01")->is_multicast());
}

TEST(ParseMac, Invalid) {
  for (const char* t : {"", "02:00:00:00:00", "02:00:00:00:00:01:02", "02-00-00-00-00-01", "0200.0000.0001",
                        "020000000001", "2:0:0:0:0:1", "02:00:00:00:00:0g", "02:00:00:00:00:01 ", " 02:00:00:00:00:01",
                        "02:00:00:00:00:1", "02:00:00:00:000:1", "02:00:00:00:00-01", "0x:00:00:00:00:01",
                        "02::00:00:00:00:1"})
    EXPECT_FALSE(parse_mac(t)) << '"' << t << '"';
}

// --- Protocols -------------------------------------------------------------------

TEST(Protocol, NamesAndNumbers) {
  EXPECT_EQ(static_cast<int>(L4Protocol::tcp), 6);
  EXPECT_EQ(static_cast<int>(L4Protocol::udp), 17);
  EXPECT_EQ(static_cast<int>(L4Protocol::sctp), 132);
  EXPECT_EQ(static_cast<int>(L4Protocol::icmp), 1);
  EXPECT_EQ(protocol_name(L4Protocol::tcp), "TCP");
  EXPECT_EQ(protocol_name(L4Protocol::udp), "UDP");
  EXPECT_EQ(protocol_name(L4Protocol::sctp), "SCTP");
  EXPECT_EQ(protocol_name(L4Protocol::icmp), "ICMP");
  EXPECT_EQ(protocol_name(L4Protocol::icmpv6), "ICMPv6");
}

TEST(Protocol, ParseKubernetesNames) {
  // A Service port's protocol: TCP, UDP or SCTP, spelled exactly so.
  for (auto p : {L4Protocol::tcp, L4Protocol::udp, L4Protocol::sctp}) EXPECT_EQ(parse_protocol(protocol_name(p)), p);
  for (const char* t : {"tcp", "Tcp", "udp", "sctp", "ICMP", "HTTP", "", " TCP", "TCP "})
    EXPECT_FALSE(parse_protocol(t)) << '"' << t << '"';
}

}  // namespace
}  // namespace nplb
