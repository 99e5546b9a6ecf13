// Return traffic to the worker that owns the connection, with no shared
// state and no flow director: the worker picks a SNAT port for which the
// reply's RSS hash (Toeplitz, with the key the appliance programs into the
// NIC) lands on its own RX queue. A reply (backend -> SNAT:port) then
// arrives where the connection lives.
//
// PMDs without Toeplitz RSS (net_af_packet, net_memif, net_pcap) cannot be
// steered: the appliance runs one worker per such port (a start-time check).
#pragma once

#include <rte_thash.h>

#include <array>
#include <cstdint>
#include <vector>

namespace nplb {

// 40 bytes: the Toeplitz key length of most NICs (i40e, ixgbe, mlx5 accept
// it). Programmed at start, so the software model below is exact.
inline constexpr std::array<uint8_t, 40> kRssKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

struct RssSteering {
  bool enabled = false;
  uint16_t queue = 0;               // this worker's RX queue
  uint16_t queues = 1;              // RX queues per port (= workers)
  std::vector<uint16_t> reta;       // redirection table: hash % size -> queue
  std::array<uint8_t, 40> key = kRssKey;

  // The RX queue a packet (src, dst, sport, dport) lands on; all fields in
  // network byte order as in the packet.
  uint16_t queue_of(uint32_t src_be, uint32_t dst_be, uint16_t sport_be, uint16_t dport_be) const {
    rte_ipv4_tuple t{};
    t.src_addr = __builtin_bswap32(src_be);
    t.dst_addr = __builtin_bswap32(dst_be);
    t.sport = __builtin_bswap16(sport_be);
    t.dport = __builtin_bswap16(dport_be);
    uint32_t hash = rte_softrss(reinterpret_cast<uint32_t*>(&t), RTE_THASH_V4_L4_LEN, key.data());
    return reta[hash % reta.size()];
  }

  // Would the reply from backend:backend_port to snat:snat_port reach us?
  bool reply_lands_here(uint32_t backend_be, uint32_t snat_be, uint16_t backend_port_be, uint16_t snat_port) const {
    return !enabled || queue_of(backend_be, snat_be, backend_port_be, __builtin_bswap16(snat_port)) == queue;
  }
};

}  // namespace nplb
