// SNAT port choice for RSS steering, checked against an independent model of
// the Toeplitz hash (Microsoft's RSS specification, written out bit by bit
// here rather than taken from DPDK), so a reply really lands on the queue of
// the worker that chose the port.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "dataplane/rss_steering.hpp"
#include "dataplane/snat_pool.hpp"

namespace nplb {
namespace {

// Toeplitz: for every set bit of the input (MSB first), XOR in the 32-bit
// window of the key that starts at that bit.
uint32_t toeplitz(const uint8_t* input, size_t len, const uint8_t* key, size_t key_len) {
  uint32_t result = 0;
  for (size_t i = 0; i < len * 8; ++i) {
    if (!(input[i / 8] & (0x80 >> (i % 8)))) continue;
    uint32_t window = 0;
    for (size_t b = 0; b < 32; ++b) {
      size_t k = i + b;
      window = window << 1 | ((k / 8 < key_len && (key[k / 8] & (0x80 >> (k % 8)))) ? 1 : 0);
    }
    result ^= window;
  }
  return result;
}

uint32_t model_hash(uint32_t src_be, uint32_t dst_be, uint16_t sport_be, uint16_t dport_be) {
  uint8_t in[12];
  std::memcpy(in, &src_be, 4);  // network order: the bytes as on the wire
  std::memcpy(in + 4, &dst_be, 4);
  std::memcpy(in + 8, &sport_be, 2);
  std::memcpy(in + 10, &dport_be, 2);
  return toeplitz(in, sizeof in, kRssKey.data(), kRssKey.size());
}

TEST(RssSteering, ModelMatchesTheRssSpecificationVector) {
  // Microsoft RSS verification suite, IPv4 with TCP ports:
  // 66.9.149.187:2794 -> 161.142.100.80:1766 hashes to 0x51ccc178 with the default key.
  uint32_t src = __builtin_bswap32(0x420995bb), dst = __builtin_bswap32(0xa18e6450);
  EXPECT_EQ(model_hash(src, dst, __builtin_bswap16(2794), __builtin_bswap16(1766)), 0x51ccc178u);
}

TEST(RssSteering, SoftwareHashAgreesWithTheModel) {
  RssSteering rss;
  rss.enabled = true;
  rss.queues = 4;
  for (uint16_t i = 0; i < 128; ++i) rss.reta.push_back(i % 4);
  std::mt19937 rng(7);
  for (int n = 0; n < 5000; ++n) {
    uint32_t src = rng(), dst = rng();
    uint16_t sport = static_cast<uint16_t>(rng()), dport = static_cast<uint16_t>(rng());
    uint32_t hash = model_hash(src, dst, sport, dport);
    EXPECT_EQ(rss.queue_of(src, dst, sport, dport), rss.reta[hash % rss.reta.size()]);
  }
}

TEST(RssSteering, ChosenPortsSendRepliesToTheChoosingWorkerOnly) {
  constexpr uint16_t kWorkers = 4;
  const uint32_t backend = __builtin_bswap32(0xc6336415);  // 198.51.100.21
  const uint32_t snat = __builtin_bswap32(0xc6336402);     // 198.51.100.2
  const uint16_t node_port = __builtin_bswap16(30080);
  std::set<uint16_t> taken;
  for (uint16_t w = 0; w < kWorkers; ++w) {
    RssSteering rss;
    rss.enabled = true;
    rss.queue = w;
    rss.queues = kWorkers;
    for (uint16_t i = 0; i < 512; ++i) rss.reta.push_back(i % kWorkers);
    SnatPorts ports(1024, 65535, 4);  // every worker sees the whole range
    uint32_t pool = ports.pool_for(SnatPoolKey{snat, backend, node_port, 6, 0});
    auto fits = [&](uint16_t port) { return rss.reply_lands_here(backend, snat, node_port, port); };
    for (int n = 0; n < 2000; ++n) {
      uint16_t port = ports.acquire_if(pool, fits, 64u * kWorkers);
      ASSERT_NE(port, 0) << "worker " << w << " ran out after " << n << " ports";
      uint32_t hash = model_hash(backend, snat, node_port, __builtin_bswap16(port));
      EXPECT_EQ(hash % 512 % kWorkers, w) << "port " << port;
      // Ports are owned by exactly one worker: replies cannot be ambiguous.
      EXPECT_TRUE(taken.insert(port).second) << "port " << port << " chosen by two workers";
    }
  }
}

TEST(RssSteering, DisabledAcceptsEveryPort) {
  RssSteering rss;
  EXPECT_TRUE(rss.reply_lands_here(1, 2, 3, 4));
}

}  // namespace
}  // namespace nplb
