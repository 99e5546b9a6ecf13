// Internet checksums: known vectors, the fast sum against a byte-by-byte
// reference, and RFC 1624 incremental updates against a from-scratch
// recomputation on random packets.
#include "dataplane/checksum.hpp"

#include <gtest/gtest.h>

#include <endian.h>

#include <array>
#include <cstring>
#include <random>
#include <vector>

namespace nplb {
namespace {

// A 16-bit value as stored in memory, read as the two wire bytes (hi, lo).
uint16_t wire_value(uint16_t memory_order) {
  uint8_t b[2];
  std::memcpy(b, &memory_order, 2);
  return static_cast<uint16_t>(b[0] << 8 | b[1]);
}

uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// RFC 1071 §1 done the slow way: big-endian 16-bit words, carries folded at
// the end. Returns the folded sum in wire (host-arithmetic) order.
uint16_t reference_sum(const uint8_t* p, size_t len) {
  uint64_t s = 0;
  for (size_t i = 0; i + 1 < len; i += 2) s += static_cast<uint64_t>(p[i] << 8 | p[i + 1]);
  if (len % 2) s += static_cast<uint64_t>(p[len - 1]) << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// One's complement equality: 0x0000 and 0xffff are both zero.
bool same_ones_complement(uint16_t a, uint16_t b) {
  return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
}

// --- Known vectors ---------------------------------------------------------

// checksum_apply folds once; the general fold (twice) must agree for every
// checksum and difference a flow entry can hold.
TEST(Checksum, ApplyFoldsOnceLikeTheGeneralFold) {
  auto reference = [](uint16_t checksum, uint16_t difference) {
    return static_cast<uint16_t>(~checksum_fold(uint32_t(static_cast<uint16_t>(~checksum)) + difference));
  };
  for (uint32_t checksum = 0; checksum <= 0xffff; checksum += 7)
    for (uint32_t difference : {0u, 1u, 0x7fffu, 0x8000u, 0xfffeu, 0xffffu, checksum, 0xffffu - checksum})
      ASSERT_EQ(checksum_apply(static_cast<uint16_t>(checksum), static_cast<uint16_t>(difference)),
                reference(static_cast<uint16_t>(checksum), static_cast<uint16_t>(difference)))
          << checksum << " + " << difference;
  std::mt19937 rng(7);
  for (int i = 0; i < 1'000'000; ++i) {
    uint16_t checksum = static_cast<uint16_t>(rng()), difference = static_cast<uint16_t>(rng());
    ASSERT_EQ(checksum_apply(checksum, difference), reference(checksum, difference));
  }
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (with carry 2 folded).
  const uint8_t bytes[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(wire_value(static_cast<uint16_t>(ones_complement_add(0, bytes, sizeof bytes))), 0xddf2);
  EXPECT_EQ(wire_value(fold_checksum(ones_complement_add(0, bytes, sizeof bytes))), 0x220d);
}

TEST(Checksum, Ipv4HeaderKnownVector) {
  // A well-known example header: 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
  uint8_t hdr[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                     0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  const uint16_t c = ipv4_header_checksum(hdr, sizeof hdr);
  EXPECT_EQ(wire_value(c), 0xb861);
  store16(hdr + 10, c);
  EXPECT_EQ(ipv4_header_checksum(hdr, sizeof hdr), 0) << "a correct header verifies to 0";
  hdr[15] ^= 1;
  EXPECT_NE(ipv4_header_checksum(hdr, sizeof hdr), 0);
}

// Vectors computed with an independent Python implementation of RFC 1071.
TEST(Checksum, UdpKnownVectorOddLength) {
  // 192.0.2.1:12345 -> 198.51.100.21:30080, payload "hello" (13 bytes: odd).
  uint8_t udp[13] = {0x30, 0x39, 0x75, 0x80, 0x00, 13, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'};
  const uint32_t src = htobe32(0xc0000201), dst = htobe32(0xc6336415);
  const uint16_t c = ipv4_l4_checksum(src, dst, 17, udp, sizeof udp);
  EXPECT_EQ(wire_value(c), 0x29fe);
  store16(udp + 6, c);
  EXPECT_EQ(ipv4_l4_checksum(src, dst, 17, udp, sizeof udp), 0);
}

TEST(Checksum, TcpSynKnownVector) {
  // 192.0.2.1:40000 -> 198.51.100.21:30080, seq 1, SYN, window 65535.
  uint8_t tcp[20] = {0x9c, 0x40, 0x75, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0};
  const uint32_t src = htobe32(0xc0000201), dst = htobe32(0xc6336415);
  EXPECT_EQ(wire_value(ipv4_l4_checksum(src, dst, 6, tcp, sizeof tcp)), 0xb1d6);
}

TEST(Checksum, EmptyAndZero) {
  EXPECT_EQ(ones_complement_add(0, nullptr, 0), 0u);
  EXPECT_EQ(fold_checksum(0), 0xffff);
  const uint8_t zeros[7] = {};
  EXPECT_EQ(ones_complement_add(0, zeros, sizeof zeros), 0u);
  // A running sum with carries above 16 bits is folded, not truncated.
  EXPECT_EQ(fold_checksum(0x0001fffe), 0x0000);
  EXPECT_EQ(fold_checksum(0x00020000), static_cast<uint16_t>(~2));
}

// --- The fast sum against the reference ------------------------------------

TEST(Checksum, MatchesReferenceAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(1071);
  std::vector<uint8_t> buf(2100 + 8);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len = 0; len <= 300; ++len) {
    for (size_t align = 0; align < 8; ++align) {
      const uint8_t* p = buf.data() + align;
      const auto got = static_cast<uint16_t>(ones_complement_add(0, p, len));
      ASSERT_EQ(wire_value(got), reference_sum(p, len)) << "len " << len << " align " << align;
    }
  }
  for (int i = 0; i < 200; ++i) {
    const size_t len = rng() % 2100, align = rng() % 8;
    const uint8_t* p = buf.data() + align;
    ASSERT_EQ(wire_value(static_cast<uint16_t>(ones_complement_add(0, p, len))), reference_sum(p, len));
  }
}

TEST(Checksum, AllOnesDataFoldsToNegativeZero) {
  // Many 0xffff words stress the end-around carry of the 64-bit accumulator.
  std::vector<uint8_t> ff(4096, 0xff);
  for (size_t len : {2u, 8u, 32u, 34u, 4096u})
    EXPECT_EQ(ones_complement_add(0, ff.data(), len), 0xffffu) << len;
  EXPECT_EQ(wire_value(static_cast<uint16_t>(ones_complement_add(0, ff.data(), 4095))), reference_sum(ff.data(), 4095));
}

TEST(Checksum, ChainingEvenPiecesEqualsWhole) {
  std::mt19937_64 rng(3);
  std::vector<uint8_t> buf(999);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t split = 0; split < buf.size(); split += 2) {
    uint32_t s = ones_complement_add(0, buf.data(), split);
    s = ones_complement_add(s, buf.data() + split, buf.size() - split);
    ASSERT_EQ(s, ones_complement_add(0, buf.data(), buf.size())) << split;
  }
}

// --- Random packets: incremental updates vs recomputation -------------------

struct Packet {
  std::vector<uint8_t> storage;
  uint8_t* ip = nullptr;
  size_t ihl_bytes = 0;
  uint8_t* l4 = nullptr;
  size_t l4_len = 0;
  uint8_t proto = 0;

  uint32_t src() const { return load32(ip + 12); }
  uint32_t dst() const { return load32(ip + 16); }
  size_t l4_check_offset() const { return proto == 6 ? 16 : 6; }
  uint16_t l4_check() const { return load16(l4 + l4_check_offset()); }
  void set_l4_check(uint16_t v) { store16(l4 + l4_check_offset(), v); }
  uint16_t ip_check() const { return load16(ip + 10); }

  // Verification: a correct checksum sums to 0 after inversion.
  uint16_t verify_ip() const { return ipv4_header_checksum(ip, ihl_bytes); }
  uint16_t verify_l4() const { return ipv4_l4_checksum(src(), dst(), proto, l4, l4_len); }

  // From scratch, with the field zeroed, as a sender computes them.
  uint16_t fresh_ip() const {
    std::vector<uint8_t> h(ip, ip + ihl_bytes);
    store16(h.data() + 10, 0);
    return ipv4_header_checksum(h.data(), h.size());
  }
  uint16_t fresh_l4() const {
    std::vector<uint8_t> seg(l4, l4 + l4_len);
    store16(seg.data() + l4_check_offset(), 0);
    return ipv4_l4_checksum(src(), dst(), proto, seg.data(), seg.size());
  }
};

// A random IPv4 packet (options included) carrying TCP or UDP with a payload
// of random, often odd, length, placed at a random alignment, with correct
// checksums (UDP's computed 0 sent as 0xffff, RFC 768).
Packet random_packet(std::mt19937_64& rng) {
  Packet pk;
  const size_t ihl = 5 + rng() % 11;  // 20..60 bytes
  pk.ihl_bytes = ihl * 4;
  pk.proto = rng() % 2 ? 6 : 17;
  const size_t l4_header = pk.proto == 6 ? 20 + 4 * (rng() % 11) : 8;
  const size_t payload = rng() % 4 == 0 ? rng() % 8 : rng() % 1500;
  pk.l4_len = l4_header + payload;
  const size_t align = rng() % 8;
  pk.storage.resize(align + pk.ihl_bytes + pk.l4_len);
  for (auto& b : pk.storage) b = static_cast<uint8_t>(rng());
  pk.ip = pk.storage.data() + align;
  pk.l4 = pk.ip + pk.ihl_bytes;
  pk.ip[0] = static_cast<uint8_t>(0x40 | ihl);
  const size_t total = pk.ihl_bytes + pk.l4_len;
  pk.ip[2] = static_cast<uint8_t>(total >> 8);
  pk.ip[3] = static_cast<uint8_t>(total);
  pk.ip[9] = pk.proto;
  if (pk.proto == 17) {
    pk.l4[4] = static_cast<uint8_t>(pk.l4_len >> 8);
    pk.l4[5] = static_cast<uint8_t>(pk.l4_len);
  } else {
    pk.l4[12] = static_cast<uint8_t>((l4_header / 4) << 4);
  }
  store16(pk.ip + 10, 0);
  store16(pk.ip + 10, ipv4_header_checksum(pk.ip, pk.ihl_bytes));
  pk.set_l4_check(0);
  uint16_t c = ipv4_l4_checksum(pk.src(), pk.dst(), pk.proto, pk.l4, pk.l4_len);
  if (pk.proto == 17 && c == 0) c = 0xffff;
  pk.set_l4_check(c);
  return pk;
}

// What the NAT does: rewrite addresses and ports, updating both checksums
// incrementally (RFC 1624), never recomputing.
void translate(Packet& pk, uint32_t new_src, uint32_t new_dst, uint16_t new_sport, uint16_t new_dport) {
  uint16_t ipc = pk.ip_check(), l4c = pk.l4_check();
  ipc = checksum_update32(ipc, pk.src(), new_src);
  ipc = checksum_update32(ipc, pk.dst(), new_dst);
  l4c = checksum_update32(l4c, pk.src(), new_src);  // the pseudo header
  l4c = checksum_update32(l4c, pk.dst(), new_dst);
  l4c = checksum_update16(l4c, load16(pk.l4), new_sport);
  l4c = checksum_update16(l4c, load16(pk.l4 + 2), new_dport);
  store32(pk.ip + 12, new_src);
  store32(pk.ip + 16, new_dst);
  store16(pk.l4, new_sport);
  store16(pk.l4 + 2, new_dport);
  store16(pk.ip + 10, ipc);
  pk.set_l4_check(l4c);
}

TEST(Checksum, IncrementalUpdateMatchesRecomputation) {
  std::mt19937_64 rng(1624);
  for (int i = 0; i < 5000; ++i) {
    Packet pk = random_packet(rng);
    ASSERT_EQ(pk.verify_ip(), 0);
    ASSERT_EQ(pk.verify_l4(), 0);
    // Several translations in a row (DNAT then SNAT, and back).
    for (int round = 0; round < 3; ++round) {
      const auto a = static_cast<uint32_t>(rng()), b = static_cast<uint32_t>(rng());
      // Now and then an address or port that does not change, or changes to 0.
      const uint16_t sp = rng() % 8 == 0 ? load16(pk.l4) : static_cast<uint16_t>(rng() % 8 == 0 ? 0 : rng());
      const uint16_t dp = static_cast<uint16_t>(rng());
      translate(pk, rng() % 8 == 0 ? pk.src() : a, rng() % 8 == 0 ? 0 : b, sp, dp);
      ASSERT_EQ(pk.verify_ip(), 0) << "packet " << i;
      ASSERT_EQ(pk.verify_l4(), 0) << "packet " << i;
      // The header sum is never +0 (version/IHL byte), so the incremental
      // result is exactly what a sender would compute, not just equivalent.
      ASSERT_EQ(pk.ip_check(), pk.fresh_ip()) << "packet " << i;
      if (pk.proto == 6) {
        ASSERT_EQ(pk.l4_check(), pk.fresh_l4()) << "packet " << i;
      } else {
        // UDP starts from 0xffff when the computed value was 0: equivalent.
        ASSERT_TRUE(same_ones_complement(pk.l4_check(), pk.fresh_l4())) << "packet " << i;
      }
    }
  }
}

TEST(Checksum, BadChecksumStaysBadAfterUpdate) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 2000; ++i) {
    Packet pk = random_packet(rng);
    // Corrupt both checksums by a non-zero one's complement amount.
    const auto delta = static_cast<uint16_t>(1 + rng() % 0xfffe);
    store16(pk.ip + 10, checksum_update16(pk.ip_check(), 0, delta));
    pk.set_l4_check(checksum_update16(pk.l4_check(), 0, delta));
    const uint16_t ip_error = pk.verify_ip(), l4_error = pk.verify_l4();
    ASSERT_NE(ip_error, 0);
    ASSERT_NE(l4_error, 0);
    translate(pk, static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()), static_cast<uint16_t>(rng()),
              static_cast<uint16_t>(rng()));
    // Never repaired: the same error travels with the packet.
    EXPECT_EQ(pk.verify_ip(), ip_error) << "packet " << i;
    EXPECT_EQ(pk.verify_l4(), l4_error) << "packet " << i;
  }
}

TEST(Checksum, CorruptedPayloadStaysDetected) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    Packet pk = random_packet(rng);
    if (pk.l4_len <= 20) continue;
    pk.l4[pk.l4_len - 1] ^= 0x5a;  // damage in transit
    ASSERT_NE(pk.verify_l4(), 0);
    translate(pk, static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()), static_cast<uint16_t>(rng()),
              static_cast<uint16_t>(rng()));
    EXPECT_NE(pk.verify_l4(), 0) << "packet " << i;
  }
}

// UDP and zero (RFC 768): "If the computed checksum is zero, it is transmitted
// as all ones". The pseudo header's protocol byte is non-zero, so the sum is
// never +0 and ipv4_l4_checksum never returns 0xffff; it does return 0 when
// the sum is 0xffff, and then the caller writes 0xffff, which verifies, since
// 0 and 0xffff are the same number in one's complement. A UDP packet that
// arrived with 0 has no checksum, and the NAT must leave it 0.
TEST(Checksum, UdpComputedZeroIsSentAsAllOnes) {
  // 192.0.2.1 -> 198.51.100.21, UDP with 2 payload bytes we solve for so that
  // the computed checksum is exactly 0.
  uint8_t udp[10] = {0x30, 0x39, 0x75, 0x80, 0x00, 10, 0x00, 0x00, 0x00, 0x00};
  const uint32_t src = htobe32(0xc0000201), dst = htobe32(0xc6336415);
  const uint16_t c = ipv4_l4_checksum(src, dst, 17, udp, sizeof udp);
  store16(udp + 8, c);  // the payload word now cancels the rest of the sum
  ASSERT_EQ(ipv4_l4_checksum(src, dst, 17, udp, sizeof udp), 0) << "computed checksum is 0";
  store16(udp + 6, 0xffff);
  EXPECT_EQ(ipv4_l4_checksum(src, dst, 17, udp, sizeof udp), 0) << "0xffff verifies";

  std::mt19937_64 rng(768);
  for (int i = 0; i < 100000; ++i) {
    uint8_t seg[16];
    for (auto& b : seg) b = static_cast<uint8_t>(rng());
    store16(seg + 6, 0);
    ASSERT_NE(ipv4_l4_checksum(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()), 17, seg, sizeof seg),
              0xffff);
  }
}

}  // namespace
}  // namespace nplb
