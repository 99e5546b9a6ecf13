// The worker lcore's loop: poll every port's RX queue of this worker in
// bursts, process, transmit in bursts, report a quiescent state, expire the
// flows the clock says are due, back off when idle. Runs to completion; it stops when told.
#pragma once

#include <atomic>
#include <cstdint>

#include "processor.hpp"

struct rte_ring;
struct rte_rcu_qsbr;

namespace nplb {

inline constexpr uint16_t kBurstSize = 32;

struct alignas(64) WorkerRuntime {
  WorkerState* state = nullptr;
  uint16_t queue = 0;                 // RX and TX queue index on every port
  uint16_t port_count = 0;
  uint16_t port_ids[kMaxPorts] = {};  // DPDK port id of each configured port
  const std::atomic<const Snapshot*>* published = nullptr;
  const NeighborTable* neighbors = nullptr;
  rte_rcu_qsbr* rcu = nullptr;
  rte_ring* inject = nullptr;         // frames the control thread wants sent (mbuf->port = port index)
  rte_ring* to_kernel = nullptr;      // frames for the kernel's tap (mbuf->port = input port index)
  const std::atomic<bool>* stop = nullptr;
  uint64_t idle_spin_tsc = 0;         // spin this long without packets before sleeping
  uint32_t idle_sleep_us = 100;
  uint32_t pipeline_above = BurstPipeline::kCacheResidentConnections;  // dataplane.flows.pipeline_above
  // Written by the worker, read by the control thread for --exit-when-idle.
  alignas(64) std::atomic<uint64_t> last_rx_tsc{0};
  std::atomic<bool> running{false};
};

// rte_eal_remote_launch entry point; `arg` is a WorkerRuntime*.
int run_worker(void* arg);

}  // namespace nplb
