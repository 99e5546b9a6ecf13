// Parser bounds: every header of every well-formed frame cut at every byte
// never reads past the frame (run under ASan/UBSan too), and each malformed
// case of the robustness table gets the drop reason it names.
//
// Frames are copied into heap buffers of exactly their length, so a read one
// byte past the end is an ASan report, not a silent read of the vector's slack.
#include "dataplane/packet.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "tests/fixtures/packet_builder.hpp"

namespace nplb {
namespace {

using test::Bytes;
using test::ip4;
using test::PacketBuilder;

const test::Mac kDstMac = {0x02, 0, 0, 0, 0, 0x01};
const test::Mac kSrcMac = {0x02, 0, 0, 0, 0, 0xfe};
const uint32_t kClient = ip4(192, 0, 2, 7);
const uint32_t kVip = ip4(203, 0, 113, 10);
const std::array<uint8_t, 16> kV6Src = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const std::array<uint8_t, 16> kV6Dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

// Parses `len` bytes of `frame` from a heap copy of exactly `len` bytes.
ParsedFrame parse_exact(const Bytes& frame, size_t len, ParseOptions options = {}) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[len ? len : 1]);
  std::copy(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(len), copy.get());
  return parse_frame(copy.get(), static_cast<uint32_t>(len), options);
}
ParsedFrame parse(const Bytes& frame, ParseOptions options = {}) { return parse_exact(frame, frame.size(), options); }

// What must hold for any result on any input of `len` bytes.
void expect_within(const ParsedFrame& p, size_t len) {
  if (p.kind == FrameKind::drop) return;
  EXPECT_LE(p.l3_offset, len);
  EXPECT_LE(p.frame_len, len);
  if (p.kind == FrameKind::ipv4 || p.kind == FrameKind::ipv6) {
    EXPECT_LE(size_t(p.l4_offset) + p.l4_len, p.frame_len);
    if (p.has_ports) {
      EXPECT_GE(p.l4_len, 8u);
    }
  }
}

// IPv6 extension header: next, length in 8-byte units beyond the first 8.
Bytes ext(uint8_t next, uint8_t len_units = 0) {
  Bytes e(8 + len_units * 8u, 0);
  e[0] = next;
  e[1] = len_units;
  return e;
}
Bytes tcp_header_bytes(uint16_t sport, uint16_t dport, uint8_t flags) {
  Bytes t(20, 0);
  test::put16(t, 0, sport);
  test::put16(t, 2, dport);
  t[12] = 5 << 4;
  t[13] = flags;
  return t;
}
Bytes udp_header_bytes(uint16_t sport, uint16_t dport, uint16_t len = 8) {
  Bytes u(8, 0);
  test::put16(u, 0, sport);
  test::put16(u, 2, dport);
  test::put16(u, 4, len);
  return u;
}

PacketBuilder tcp_syn() {
  return PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).tcp(40000, 30080, test::kSyn);
}
PacketBuilder udp_dgram(Bytes payload = {1, 2, 3, 4}) {
  return PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).udp(40000, 30053).payload(std::move(payload));
}

// The frames every bounds sweep cuts: one per parser path.
std::vector<std::pair<const char*, Bytes>> well_formed_frames() {
  Bytes rr_options(40, 1);  // 40 bytes of NOPs: IHL 15
  rr_options.back() = 0;
  Bytes v6_ext_chain = ext(43);  // hop-by-hop -> routing -> TCP
  Bytes routing = ext(6, 1);
  test::append(v6_ext_chain, routing);
  test::append(v6_ext_chain, tcp_header_bytes(1, 2, test::kSyn));
  Bytes v6_frag(8, 0);  // fragment header, first fragment, then UDP
  v6_frag[0] = 17;
  test::append(v6_frag, udp_header_bytes(53, 53));
  return {
      {"tcp syn", tcp_syn().build()},
      {"tcp with options", tcp_syn().tcp_options({2, 4, 5, 0xb4, 1, 1, 4, 2}).payload({9, 9, 9}).build()},
      {"udp", udp_dgram().build()},
      {"udp empty", udp_dgram({}).build()},
      {"icmp echo", PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).icmp(8, 0, 1, 1).payload({1, 2}).build()},
      {"sctp", PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).raw(132, Bytes(16, 0)).build()},
      {"gre", PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).raw(47, Bytes(8, 0)).build()},
      {"ihl 6", tcp_syn().ip_options({1, 1, 1, 0}).build()},
      {"ihl 15", tcp_syn().ip_options(rr_options).build()},
      {"vlan", tcp_syn().vlan(100).build()},
      {"qinq", tcp_syn().vlan(100, 0x88a8).vlan(200).build()},
      {"first fragment", udp_dgram().frag(0x2000).build()},
      {"non-first fragment", udp_dgram().frag(185).build()},
      {"arp", PacketBuilder().eth(kDstMac, kSrcMac).arp(1, kSrcMac, kClient, {}, kVip).build()},
      {"ipv6 tcp", PacketBuilder().eth(kDstMac, kSrcMac).ipv6(kV6Src, kV6Dst, 6, tcp_header_bytes(1, 2, 2)).build()},
      {"ipv6 hbh+routing", PacketBuilder().eth(kDstMac, kSrcMac).ipv6(kV6Src, kV6Dst, 0, v6_ext_chain).build()},
      {"ipv6 fragment", PacketBuilder().eth(kDstMac, kSrcMac).ipv6(kV6Src, kV6Dst, 44, v6_frag).build()},
  };
}

// ---------------------------------------------------------------- bounds sweeps

TEST(ParserBounds, EveryFrameCutAtEveryByte) {
  for (const auto& [name, frame] : well_formed_frames()) {
    SCOPED_TRACE(name);
    ParsedFrame whole = parse(frame);
    EXPECT_NE(whole.kind, FrameKind::drop) << drop_reason_name(whole.drop_reason);
    for (size_t len = 0; len < frame.size(); ++len) {
      SCOPED_TRACE(len);
      ParsedFrame p = parse_exact(frame, len);
      expect_within(p, len);
      // A cut IPv4/IPv6 datagram no longer holds its stated length.
      if (whole.kind == FrameKind::ipv4 || whole.kind == FrameKind::ipv6) {
        EXPECT_EQ(p.kind, FrameKind::drop);
      }
    }
  }
}

// The same cuts with the IP length fixed up (and the header checksum
// recomputed), so the cut reaches the transport parser instead of bad_length.
TEST(ParserBounds, TransportCutAtEveryByteWithConsistentIpLength) {
  for (const auto& [name, original] : well_formed_frames()) {
    ParsedFrame whole = parse(original);
    if (whole.kind != FrameKind::ipv4 && whole.kind != FrameKind::ipv6) continue;
    SCOPED_TRACE(name);
    for (size_t len = whole.l4_offset; len < original.size(); ++len) {
      SCOPED_TRACE(len);
      Bytes frame(original.begin(), original.begin() + static_cast<ptrdiff_t>(len));
      size_t l3 = whole.l3_offset;
      if (whole.kind == FrameKind::ipv4) {
        test::put16(frame, l3 + 2, static_cast<uint16_t>(len - l3));
        test::put16(frame, l3 + 10, 0);
        test::put16(frame, l3 + 10, test::checksum_of(frame.data() + l3, test::ipv4_header_len(frame, l3)));
      } else {
        test::put16(frame, l3 + 4, static_cast<uint16_t>(len - l3 - 40));
      }
      ParsedFrame p = parse(frame);
      expect_within(p, len);
      if (p.kind != FrameKind::drop) {
        EXPECT_EQ(p.frame_len, len);
      }
    }
  }
}

TEST(ParserBounds, TcpAndUdpHeaderCutsAreBadL4Header) {
  for (size_t l4 = 0; l4 < 20; ++l4) {
    Bytes f = tcp_syn().total_length(static_cast<uint16_t>(20 + l4)).truncate(34 + l4).build();
    ParsedFrame p = parse(f);
    EXPECT_EQ(p.kind, FrameKind::drop) << l4;
    EXPECT_EQ(p.drop_reason, DropReason::bad_l4_header) << l4;
  }
  for (size_t l4 = 0; l4 < 8; ++l4) {
    Bytes f = udp_dgram({}).total_length(static_cast<uint16_t>(20 + l4)).truncate(34 + l4).build();
    ParsedFrame p = parse(f);
    EXPECT_EQ(p.drop_reason, DropReason::bad_l4_header) << l4;
  }
}

// The same short transport headers at the end of the mapped memory: neither
// parser reads a byte past the frame (a TCP header's data offset and flags
// are read only once the datagram holds 20 bytes of it).
TEST(ParserBounds, ShortTransportHeadersEndAtAGuardPage) {
  for (size_t l4 = 0; l4 < 20; ++l4) {
    SCOPED_TRACE(l4);
    for (const Bytes& f : {tcp_syn().total_length(static_cast<uint16_t>(20 + l4)).truncate(34 + l4).build(),
                           udp_dgram({}).total_length(static_cast<uint16_t>(20 + l4)).truncate(34 + l4).build()}) {
      test::GuardedFrame g(f);
      ParsedFrame common, general;
      // As a NIC that checked the header would say: the header checksum
      // (not refreshed for the shortened length) stops neither parser.
      bool accepted = parse_common_ipv4(g.bytes(), g.len(), ParseOptions{true}, common);
      parse_frame_into(g.bytes(), g.len(), ParseOptions{true}, general);
      expect_within(general, g.len());
      if (accepted) {  // then the general parser agrees (CommonShape.* holds the rest)
        EXPECT_EQ(general.kind, FrameKind::ipv4);
        EXPECT_EQ(general.l4_len, common.l4_len);
      }
    }
  }
}

// Random bytes behind a plausible Ethernet type: nothing read out of bounds,
// and every result within the frame.
TEST(ParserBounds, RandomFramesStayWithinBounds) {
  std::mt19937 rng(12345);
  const uint16_t types[] = {0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8};
  for (int i = 0; i < 200000; ++i) {
    size_t len = rng() % 128;
    Bytes f(len);
    for (auto& b : f) b = static_cast<uint8_t>(rng());
    if (len >= 14) test::put16(f, 12, types[rng() % 5]);
    if (len >= 15 && rng() % 2) f[14] = static_cast<uint8_t>((f[12] == 0x86 ? 0x60 : 0x40) | (f[14] & 0x0f));
    ParsedFrame p = parse(f, ParseOptions{.ip_checksum_verified = true});
    expect_within(p, len);
  }
}

// ---------------------------------------------------------------- Ethernet and VLAN

TEST(Parser, TooShortForEthernet) {
  for (size_t len : {0, 1, 13}) EXPECT_EQ(parse_exact(tcp_syn().build(), len).drop_reason, DropReason::too_short);
  EXPECT_EQ(parse(tcp_syn().truncate(24).build()).drop_reason, DropReason::too_short);
}

TEST(Parser, UnknownEtherType) {
  ParsedFrame p = parse(tcp_syn().ether_type(0x88cc).build());  // LLDP
  EXPECT_EQ(p.kind, FrameKind::drop);
  EXPECT_EQ(p.drop_reason, DropReason::unsupported_ethertype);
}

TEST(Parser, OneVlanTag) {
  ParsedFrame p = parse(tcp_syn().vlan(100).build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.vlan_tags, 1);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 38);
  EXPECT_TRUE(p.has_ports);
}

TEST(Parser, TwoVlanTagsQinQ) {
  ParsedFrame p = parse(tcp_syn().vlan(100, 0x88a8).vlan(200).build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.vlan_tags, 2);
  EXPECT_EQ(p.l3_offset, 22);
}

TEST(Parser, ThreeVlanTagsDropped) {
  ParsedFrame p = parse(tcp_syn().vlan(1).vlan(2).vlan(3).build());
  EXPECT_EQ(p.kind, FrameKind::drop);
  EXPECT_EQ(p.drop_reason, DropReason::bad_vlan);
}

TEST(Parser, TruncatedVlanTag) {
  Bytes f = tcp_syn().vlan(100).build();
  for (size_t len = 14; len < 18; ++len) EXPECT_EQ(parse_exact(f, len).drop_reason, DropReason::bad_vlan) << len;
}

// ---------------------------------------------------------------- IPv4 header

TEST(Parser, Ipv4Syn) {
  ParsedFrame p = parse(tcp_syn().build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_EQ(p.l4_len, 20);
  EXPECT_EQ(p.frame_len, 54u);
  EXPECT_EQ(p.protocol, 6);
  EXPECT_EQ(p.tcp_flags, test::kSyn);
  EXPECT_TRUE(p.has_ports);
  EXPECT_FALSE(p.is_fragment);
  // Ports as they sit in the packet (network order in memory).
  EXPECT_EQ(p.src_port_be, __builtin_bswap16(40000));
  EXPECT_EQ(p.dst_port_be, __builtin_bswap16(30080));
}

TEST(Parser, IpVersionNotFour) {
  for (uint8_t v : {0, 3, 5, 6, 15}) {
    ParsedFrame p = parse(tcp_syn().version(v).build());
    EXPECT_EQ(p.kind, FrameKind::drop) << int(v);
    EXPECT_EQ(p.drop_reason, DropReason::bad_ip_version) << int(v);
  }
}

TEST(Parser, IhlBelowFive) {
  for (uint8_t ihl : {0, 1, 4}) {
    ParsedFrame p = parse(tcp_syn().ihl(ihl).build());
    EXPECT_EQ(p.drop_reason, DropReason::bad_ip_header_length) << int(ihl);
  }
}

TEST(Parser, IhlBeyondPacket) {
  // IHL 15 (60 bytes) in a 40-byte datagram.
  ParsedFrame p = parse(tcp_syn().ihl(15).build());
  EXPECT_EQ(p.kind, FrameKind::drop);
  EXPECT_EQ(p.drop_reason, DropReason::bad_ip_header_length);
}

TEST(Parser, OptionsAtIhl5_6_15) {
  Bytes six = {1, 1, 1, 0};  // NOP NOP NOP EOL
  Bytes fifteen(40, 1);
  for (auto [options, l4_offset] : {std::pair<Bytes, int>{{}, 34}, {six, 38}, {fifteen, 74}}) {
    ParsedFrame p = parse(tcp_syn().ip_options(options).build());
    ASSERT_EQ(p.kind, FrameKind::ipv4) << options.size();
    EXPECT_EQ(p.l4_offset, l4_offset);
    EXPECT_EQ(p.l4_len, 20);
    EXPECT_EQ(p.dst_port_be, __builtin_bswap16(30080));
  }
}

TEST(Parser, TotalLengthBeyondFrame) {
  ParsedFrame p = parse(udp_dgram(Bytes(58, 0)).total_length(400).build());  // len=400 in 100 bytes
  EXPECT_EQ(p.kind, FrameKind::drop);
  EXPECT_EQ(p.drop_reason, DropReason::bad_length);
}

TEST(Parser, TotalLengthBelowHeader) {
  for (uint16_t len : {0, 19}) {
    ParsedFrame p = parse(tcp_syn().total_length(len).build());
    EXPECT_EQ(p.drop_reason, DropReason::bad_length) << len;
  }
  ParsedFrame options = parse(tcp_syn().ip_options({1, 1, 1, 0}).total_length(20).build());  // below IHL 6
  EXPECT_EQ(options.drop_reason, DropReason::bad_length);
}

TEST(Parser, EthernetPaddingTrimmed) {
  Bytes f = tcp_syn().pad_to(60).build();  // 60-byte frame, IP len 40
  ASSERT_EQ(f.size(), 60u);
  ParsedFrame p = parse(f);
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.frame_len, 54u);
  EXPECT_EQ(p.l4_len, 20);
}

// The header checksum check against the fixtures' RFC 1071 sum, for every
// header length (20 to 60 bytes) and random contents: a header with its
// checksum filled in passes, and any single flipped bit fails.
TEST(Parser, HeaderChecksumCheckAgreesWithRfc1071) {
  std::mt19937 rng(1071);
  for (uint32_t header_len = 20; header_len <= 60; header_len += 4) {
    for (int round = 0; round < 200; ++round) {
      std::vector<uint8_t> h(header_len);
      for (auto& b : h) b = static_cast<uint8_t>(rng());
      h[10] = h[11] = 0;
      uint16_t sum = test::checksum_of(h.data(), h.size());
      h[10] = static_cast<uint8_t>(sum >> 8);
      h[11] = static_cast<uint8_t>(sum);
      ASSERT_TRUE(ipv4_header_checksum_ok(h.data(), header_len)) << header_len;
      uint32_t bit = rng() % (header_len * 8);
      h[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      ASSERT_FALSE(ipv4_header_checksum_ok(h.data(), header_len)) << header_len << " bit " << bit;
    }
  }
}

TEST(Parser, BadHeaderChecksum) {
  Bytes f = tcp_syn().ip_checksum(0x1234).build();
  EXPECT_EQ(parse(f).drop_reason, DropReason::bad_ip_checksum);
  // Trusting the NIC's verdict skips the check.
  EXPECT_EQ(parse(f, ParseOptions{.ip_checksum_verified = true}).kind, FrameKind::ipv4);
}

// ---------------------------------------------------------------- fragments

TEST(Parser, FirstFragmentHasPorts) {
  ParsedFrame p = parse(udp_dgram().frag(0x2000).build());  // MF=1
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_TRUE(p.is_first_fragment);
  EXPECT_TRUE(p.has_ports);
}

TEST(Parser, NonFirstFragmentsNeverReadPorts) {
  for (uint16_t frag : {uint16_t{185}, uint16_t{1}, uint16_t{0x2000 | 185}}) {
    // The bytes after the IP header are payload, not a UDP header.
    ParsedFrame p = parse(udp_dgram().frag(frag).build());
    ASSERT_EQ(p.kind, FrameKind::ipv4) << frag;
    EXPECT_TRUE(p.is_fragment);
    EXPECT_FALSE(p.is_first_fragment);
    EXPECT_FALSE(p.has_ports);
    EXPECT_EQ(p.src_port_be, 0);
    EXPECT_EQ(p.dst_port_be, 0);
  }
  // A non-first fragment shorter than any transport header is still parsed.
  ParsedFrame tiny = parse(PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).raw(6, {1, 2}).frag(1).build());
  EXPECT_EQ(tiny.kind, FrameKind::ipv4);
  EXPECT_FALSE(tiny.has_ports);
}

TEST(Parser, DontFragmentIsNotAFragment) {
  ParsedFrame p = parse(tcp_syn().frag(0x4000).build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_FALSE(p.is_fragment);
}

// ---------------------------------------------------------------- TCP and UDP

TEST(Parser, TcpDataOffsetBelowFive) {
  for (uint8_t off : {0, 4}) EXPECT_EQ(parse(tcp_syn().data_offset(off).build()).drop_reason, DropReason::bad_l4_header);
}

TEST(Parser, TcpDataOffsetBeyondSegment) {
  EXPECT_EQ(parse(tcp_syn().data_offset(6).build()).drop_reason, DropReason::bad_l4_header);
  EXPECT_EQ(parse(tcp_syn().data_offset(15).payload(Bytes(39, 0)).build()).drop_reason, DropReason::bad_l4_header);
  // Exactly at the end is fine.
  EXPECT_EQ(parse(tcp_syn().data_offset(15).payload(Bytes(40, 0)).build()).kind, FrameKind::ipv4);
  EXPECT_EQ(parse(tcp_syn().tcp_options({1, 1, 1, 1}).build()).kind, FrameKind::ipv4);
}

TEST(Parser, TcpFlagsReported) {
  ParsedFrame p = parse(tcp_syn().tcp(1, 2, test::kFin | test::kAck | test::kPsh).build());
  EXPECT_EQ(p.tcp_flags, test::kFin | test::kAck | test::kPsh);
}

TEST(Parser, UdpLengthBelowEight) {
  for (uint16_t len : {0, 7}) EXPECT_EQ(parse(udp_dgram().udp_length(len).build()).drop_reason, DropReason::bad_l4_header);
}

TEST(Parser, UdpLengthBeyondIpPayload) {
  EXPECT_EQ(parse(udp_dgram().udp_length(13).build()).drop_reason, DropReason::bad_l4_header);
  EXPECT_EQ(parse(udp_dgram().udp_length(12).build()).kind, FrameKind::ipv4);
}

TEST(Parser, UdpEmptyPayload) {
  ParsedFrame p = parse(udp_dgram({}).build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.l4_len, 8);
  EXPECT_TRUE(p.has_ports);
}

TEST(Parser, IcmpHasNoPorts) {
  ParsedFrame p = parse(PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).icmp(8, 0, 7, 1).build());
  ASSERT_EQ(p.kind, FrameKind::ipv4);
  EXPECT_EQ(p.protocol, 1);
  EXPECT_FALSE(p.has_ports);
}

TEST(Parser, SctpNeedsTwelveBytes) {
  auto sctp = [](size_t n) {
    return parse(PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).raw(132, Bytes(n, 0)).build());
  };
  EXPECT_EQ(sctp(11).drop_reason, DropReason::bad_l4_header);
  EXPECT_TRUE(sctp(12).has_ports);
}

// ---------------------------------------------------------------- IPv6

Bytes v6_frame(uint8_t first_next, const Bytes& rest) {
  return PacketBuilder().eth(kDstMac, kSrcMac).ipv6(kV6Src, kV6Dst, first_next, rest).build();
}

TEST(Parser, Ipv6Tcp) {
  ParsedFrame p = parse(v6_frame(6, tcp_header_bytes(1234, 80, test::kSyn)));
  ASSERT_EQ(p.kind, FrameKind::ipv6);
  EXPECT_EQ(p.l4_offset, 54);
  EXPECT_EQ(p.protocol, 6);
  EXPECT_EQ(p.dst_port_be, __builtin_bswap16(80));
}

TEST(Parser, Ipv6HopByHopThenRouting) {
  Bytes rest = ext(43);
  test::append(rest, ext(17, 2));  // routing header, 24 bytes
  test::append(rest, udp_header_bytes(53, 5353));
  ParsedFrame p = parse(v6_frame(0, rest));
  ASSERT_EQ(p.kind, FrameKind::ipv6);
  EXPECT_EQ(p.protocol, 17);
  EXPECT_EQ(p.l4_offset, 14 + 40 + 8 + 24);
  EXPECT_EQ(p.dst_port_be, __builtin_bswap16(5353));
}

TEST(Parser, Ipv6ExtensionChainBound) {
  auto chain = [](int n) {
    Bytes rest;
    for (int i = 0; i < n; ++i) test::append(rest, ext(i + 1 < n ? 60 : 6));
    test::append(rest, tcp_header_bytes(1, 2, test::kSyn));
    return v6_frame(60, rest);
  };
  EXPECT_EQ(parse(chain(kMaxIpv6ExtensionHeaders)).kind, FrameKind::ipv6);
  ParsedFrame too_many = parse(chain(kMaxIpv6ExtensionHeaders + 1));
  EXPECT_EQ(too_many.kind, FrameKind::drop);
  EXPECT_EQ(too_many.drop_reason, DropReason::bad_l4_header);
}

TEST(Parser, Ipv6ExtensionBeyondPayload) {
  Bytes rest = ext(6, 3);  // says 32 bytes
  rest.resize(16);         // holds 16
  EXPECT_EQ(parse(v6_frame(0, rest)).drop_reason, DropReason::bad_l4_header);
  Bytes stub(4, 0);  // less than the 8 bytes of any extension header
  EXPECT_EQ(parse(v6_frame(0, stub)).drop_reason, DropReason::bad_l4_header);
}

TEST(Parser, Ipv6NonFirstFragment) {
  Bytes frag(8, 0);
  frag[0] = 17;
  test::put16(frag, 2, 185 << 3);
  test::append(frag, Bytes(16, 0xee));
  ParsedFrame p = parse(v6_frame(44, frag));
  ASSERT_EQ(p.kind, FrameKind::ipv6);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_FALSE(p.is_first_fragment);
  EXPECT_FALSE(p.has_ports);
}

TEST(Parser, Ipv6LengthAndVersion) {
  Bytes f = v6_frame(6, tcp_header_bytes(1, 2, 2));
  test::put16(f, 18, 100);  // payload length beyond the frame
  EXPECT_EQ(parse(f).drop_reason, DropReason::bad_length);
  Bytes v4_in_v6 = v6_frame(6, tcp_header_bytes(1, 2, 2));
  v4_in_v6[14] = 0x45;
  EXPECT_EQ(parse(v4_in_v6).drop_reason, DropReason::bad_ip_version);
  EXPECT_EQ(parse_exact(f, 14 + 39).drop_reason, DropReason::too_short);
}

// ---------------------------------------------------------------- ARP

TEST(Parser, ArpTooShort) {
  Bytes f = PacketBuilder().eth(kDstMac, kSrcMac).arp(1, kSrcMac, kClient, {}, kVip).build();
  ASSERT_EQ(f.size(), 42u);
  EXPECT_EQ(parse(f).kind, FrameKind::arp);
  ParsedFrame p = parse_exact(f, 41);
  EXPECT_EQ(p.kind, FrameKind::drop);
  EXPECT_EQ(p.drop_reason, DropReason::arp_ignored);
}

TEST(Parser, ArpBehindVlan) {
  ParsedFrame p = parse(PacketBuilder().eth(kDstMac, kSrcMac).vlan(7).arp(1, kSrcMac, kClient, {}, kVip).build());
  ASSERT_EQ(p.kind, FrameKind::arp);
  EXPECT_EQ(p.l3_offset, 18);
}

// ---------------------------------------------------------------- the common-shape shortcut

bool same_parse(const ParsedFrame& a, const ParsedFrame& b) {
  return a.kind == b.kind && a.drop_reason == b.drop_reason && a.vlan_tags == b.vlan_tags &&
         a.l3_offset == b.l3_offset && a.l4_offset == b.l4_offset && a.frame_len == b.frame_len &&
         a.l4_len == b.l4_len && a.protocol == b.protocol && a.tcp_flags == b.tcp_flags &&
         a.is_fragment == b.is_fragment && a.is_first_fragment == b.is_first_fragment && a.has_ports == b.has_ports &&
         a.src_port_be == b.src_port_be && a.dst_port_be == b.dst_port_be;
}

// The worker tries parse_common_ipv4 first: whatever it accepts must parse
// exactly as the general parser does, and it must accept the common shapes
// (else it is dead weight). Frames of both transports, with payloads and
// padding, then mutated a byte or a length at a time; heap copies of exact
// length, so a read past the end is an ASan report.
TEST(CommonShape, AgreesWithTheGeneralParserOnMutatedFrames) {
  std::mt19937 rng(2026);
  size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 300000; ++i) {
    PacketBuilder b;
    b.eth(kDstMac, kSrcMac).ipv4(kClient, kVip);
    if (rng() % 2)
      b.tcp(static_cast<uint16_t>(rng()), 30080, static_cast<uint8_t>(rng() % 2 ? test::kAck : rng()));
    else
      b.udp(static_cast<uint16_t>(rng()), 30080);
    b.payload(Bytes(rng() % 24, 0xab));
    Bytes f = b.build();
    f.resize(f.size() + rng() % 8, 0);  // Ethernet padding
    int mutations = i % 4 == 0 ? 0 : 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) {
      if (rng() % 4 == 0 && f.size() > 1) {
        f.resize(rng() % f.size());  // cut
      } else if (!f.empty()) {
        // Mostly the bytes the shortcut decides on: EtherType, IPv4 and L4 headers.
        size_t at = rng() % 2 ? 12 + rng() % 36 : rng() % f.size();
        if (at < f.size()) f[at] = static_cast<uint8_t>(rng());
      }
    }
    for (bool verified : {false, true}) {
      ParseOptions options{.ip_checksum_verified = verified};
      std::unique_ptr<uint8_t[]> copy(new uint8_t[f.size() ? f.size() : 1]);
      std::copy(f.begin(), f.end(), copy.get());
      ParsedFrame fast;
      if (!parse_common_ipv4(copy.get(), static_cast<uint32_t>(f.size()), options, fast)) {
        ++rejected;
        continue;
      }
      ++accepted;
      ParsedFrame general = parse_frame(copy.get(), static_cast<uint32_t>(f.size()), options);
      ASSERT_TRUE(same_parse(fast, general)) << "frame " << i << " of " << f.size() << " bytes";
      ASSERT_EQ(fast.kind, FrameKind::ipv4);
    }
  }
  // Every unmutated frame, and many mutated ones (payload bytes), take the shortcut.
  EXPECT_GT(accepted, 300000u / 4 * 2);
  EXPECT_GT(rejected, 100000u);
}

TEST(CommonShape, LeavesEverythingElseToTheGeneralParser) {
  ParsedFrame out;
  auto rejects = [&](const Bytes& f, ParseOptions options = {}) {
    return !parse_common_ipv4(f.data(), static_cast<uint32_t>(f.size()), options, out);
  };
  EXPECT_FALSE(rejects(tcp_syn().build()));
  EXPECT_FALSE(rejects(PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).udp(5000, 30080).build()));
  EXPECT_TRUE(rejects(PacketBuilder().eth(kDstMac, kSrcMac).vlan(10).ipv4(kClient, kVip).tcp(1, 2, test::kSyn).build()));
  EXPECT_TRUE(rejects(tcp_syn().ip_options(Bytes(4, 1)).build()));                       // IHL 6
  EXPECT_TRUE(rejects(tcp_syn().frag(0x2000).build()));                                  // MF
  EXPECT_TRUE(rejects(tcp_syn().frag(0x0001).build()));                                  // an offset
  EXPECT_FALSE(rejects(tcp_syn().frag(0x4000).build()));                                 // DF alone: not a fragment
  EXPECT_TRUE(rejects(tcp_syn().ip_checksum(0x1234).build()));                           // bad header checksum...
  EXPECT_FALSE(rejects(tcp_syn().ip_checksum(0x1234).build(), ParseOptions{.ip_checksum_verified = true}));  // ...unless the NIC checked it
  EXPECT_TRUE(rejects(PacketBuilder().eth(kDstMac, kSrcMac).ipv4(kClient, kVip).icmp(8, 0, 1, 1).build()));
  EXPECT_TRUE(rejects(tcp_syn().data_offset(4).build()));
  EXPECT_TRUE(rejects(tcp_syn().total_length(200).build()));
}

}  // namespace
}  // namespace nplb
