// nplb-bench: the packet path measured in-process, without EAL, on plain
// byte buffers laid out like mbuf data (see docs/benchmarks.md).
//
// Benchmark names are tracked from release to release; keep them:
//   baseline                                    the worker's parse + MAC swap only
//   established/flows:1024                      ACKs of live connections (both directions)
//   established/flows:1048576
//   established/flows:10485760                  about 2.4 GiB; left out by --nplb_no_10m or NPLB_BENCH_10M=0
//   established_workers/flows:1048576/threads:N one WorkerState per thread
//   new_flows                                   SYNs: miss, Maglev, SNAT port, insert
//   maglev_build/slots:65537/backends:1000
//
// Every packet benchmark runs bursts of 32 frames of 60 bytes (64 on the
// wire with the FCS) drawn pseudo-randomly from its population, restores
// each burst from a template pool (32 x 64-byte memcpy, also done by the
// baseline), and reports `cycles_per_packet`: TSC cycles over the timed
// loop divided by packets. Mpps is items_per_second.
#include <benchmark/benchmark.h>
#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "control/model.hpp"
#include "control/snapshot_builder.hpp"
#include "dataplane/checksum.hpp"
#include "dataplane/huge_pages.hpp"
#include "dataplane/maglev.hpp"
#include "dataplane/processor.hpp"
#include "dataplane/snat_pool.hpp"

// ---------------------------------------------------------------- page backing
//
// The flow tables allocate their pages themselves (dataplane/huge_pages.hpp):
// the reserved 2 MiB pool first, then transparent huge pages, then 4 KiB
// pages. --nplb_pages=auto (default) is what the appliance does;
// hugetlb insists on the reserved pool (the bench stops if a table did not
// get it), thp skips the pool, 4k uses plain pages: the same bursts on each
// show what the pages are worth. Each packet benchmark's label says which
// pages its flow table got.

namespace nplb::bench {
namespace {

// ---------------------------------------------------------------- settings

bool g_ten_million = true;
bool g_require_hugetlb = false;
bool g_rx_checksum_verified = false;  // as if the NIC had checked the IPv4 header checksum
bool g_expiry = true;                 // w.expire(now) per burst, as the worker loop does
double g_tsc_hz = 0;

constexpr uint16_t kBurst = 32;
constexpr uint32_t kFrameLen = 60;       // 64 on the wire with the FCS the NIC strips
constexpr uint32_t kSlot = 64;           // template bytes restored per packet (one cache line)
constexpr uint32_t kPoolPackets = 1u << 20;  // 64 MiB of templates per population

// An mbuf-like layout: 128-byte struct, 128-byte headroom, data room.
constexpr size_t kMbufStride = 128 + 128 + 2048 + 128;
constexpr size_t kMbufDataOffset = 256;

double measure_tsc_hz() {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  uint64_t c1 = __rdtsc();
  auto t1 = std::chrono::steady_clock::now();
  return double(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// ---------------------------------------------------------------- the network
//
// One port, one-armed: nodes and SNAT addresses on 198.51.100.0/24, clients
// (10.0.0.0/8) behind the gateway 198.51.100.254. One NodePort service
// (TCP 30080 on VIP 203.0.113.10) over 64 nodes; 4 SNAT addresses, so one
// worker has 4 x 64 x 64512 SNAT ports: enough for 10M connections.

constexpr uint32_t kVip = 0xcb00710a;        // 203.0.113.10
constexpr uint32_t kGateway = 0xc63364fe;    // 198.51.100.254
constexpr uint32_t kFirstNode = 0xc633640b;  // 198.51.100.11
constexpr uint32_t kFirstSnat = 0xc6336402;  // 198.51.100.2
constexpr int kNodes = 64;
constexpr int kSnats = 4;
constexpr uint16_t kNodePort = 30080;
constexpr std::array<uint8_t, 6> kPortMac{0x02, 0, 0, 0, 0, 0x01};
constexpr std::array<uint8_t, 6> kGatewayMac{0x02, 0, 0, 0, 0, 0xfe};

std::array<uint8_t, 6> node_mac(uint32_t node_ip) {
  return {0x02, 0, 0, 0, 0x01, static_cast<uint8_t>(node_ip)};
}

struct Network {
  ApplianceConfig config;
  Model model;
  StableIds ids;
  BuiltSnapshot built;
  NeighborTable neighbors{4096};

  Network() {
    PortConfig port;
    port.name = "p0";
    port.device = "bench";
    port.addresses.push_back(*parse_cidr("198.51.100.1/24"));
    port.mac = MacAddr{kPortMac};
    port.gateway = IpAddr::v4(kGateway);
    config.dataplane.ports.push_back(port);
    for (int i = 0; i < kSnats; ++i) config.forwarding.snat.push_back(IpAddr::v4(kFirstSnat + i));
    model.frontends.push_back(IpAddr::v4(kVip));

    ResolvedService svc;
    svc.namespace_ = "default";
    svc.name = "web";
    ResolvedServicePort sp;
    sp.spec.name = "http";
    sp.spec.protocol = L4Protocol::tcp;
    sp.spec.port = 80;
    sp.spec.target_port = uint16_t{8080};
    sp.spec.node_port = kNodePort;
    for (int i = 0; i < kNodes; ++i) {
      std::string name = "n" + std::to_string(i);
      model.nodes.push_back(ResolvedNode{name, IpAddr::v4(kFirstNode + i)});
      sp.backends.push_back(ResolvedBackend{IpAddr::v4(kFirstNode + i), kNodePort, name});
      neighbors.update(__builtin_bswap32(kFirstNode + i), MacAddr{node_mac(kFirstNode + i)}, true);
    }
    neighbors.update(__builtin_bswap32(kGateway), MacAddr{kGatewayMac}, true);
    svc.ports.push_back(sp);
    model.services.push_back(svc);
    built = build_snapshot(config, model, {MacAddr{kPortMac}}, ids, 1);
  }
  const Snapshot& snapshot() const { return *built.snapshot; }
};

const Network& network() {
  static Network net;
  return net;
}

// ---------------------------------------------------------------- frames

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

// A 60-byte Ethernet/IPv4/TCP frame (no options, 6 bytes of padding), with
// valid checksums. Addresses and ports in host order.
void build_tcp(uint8_t* f, const std::array<uint8_t, 6>& src_mac, uint32_t src, uint32_t dst, uint16_t sport,
               uint16_t dport, uint8_t flags, uint32_t seq) {
  std::memset(f, 0, kSlot);
  std::memcpy(f, kPortMac.data(), 6);
  std::memcpy(f + 6, src_mac.data(), 6);
  put16(f + 12, kEtherTypeIpv4);
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  put16(ip + 2, 40);
  put16(ip + 4, static_cast<uint16_t>(seq));
  put16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = 6;
  put32(ip + 12, src);
  put32(ip + 16, dst);
  uint16_t ip_sum = ipv4_header_checksum(ip, 20);
  std::memcpy(ip + 10, &ip_sum, 2);
  uint8_t* tcp = ip + 20;
  put16(tcp, sport);
  put16(tcp + 2, dport);
  put32(tcp + 4, seq);
  put32(tcp + 8, flags & kTcpAck ? 0x12345678 : 0);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  put16(tcp + 14, 65535);
  uint16_t l4_sum = ipv4_l4_checksum(__builtin_bswap32(src), __builtin_bswap32(dst), 6, tcp, 20);
  std::memcpy(tcp + 16, &l4_sum, 2);
}

bool checksums_valid(const uint8_t* f) {
  const uint8_t* ip = f + 14;
  uint32_t src, dst;
  std::memcpy(&src, ip + 12, 4);
  std::memcpy(&dst, ip + 16, 4);
  return ipv4_header_checksum(ip, 20) == 0 && ipv4_l4_checksum(src, dst, 6, ip + 20, 20) == 0;
}

// The client of connection `c` of population `seed`: distinct (address,
// port) for every c < 2^24.
uint32_t client_ip(uint64_t c) { return 0x0a000000u | static_cast<uint32_t>((c * 0x9e3779b1u) & 0xffffffu); }
uint16_t client_port(uint64_t c, uint64_t seed) {
  return static_cast<uint16_t>(1024 + mix64(c ^ (seed << 40)) % 64000);
}

// Cache-line aligned bytes for templates and mbuf-like buffers (plain heap:
// --nplb_pages concerns the flow tables only).
struct AlignedFree {
  void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t{64}); }
};
using AlignedBytes = std::unique_ptr<uint8_t, AlignedFree>;
AlignedBytes aligned_bytes(size_t n) { return AlignedBytes(static_cast<uint8_t*>(::operator new(n, std::align_val_t{64}))); }

// 32 mbuf-like buffers a burst is restored into.
struct MbufArea {
  AlignedBytes bytes = aligned_bytes(kMbufStride * kBurst);
  BurstPacket pkts[kBurst];
  MbufArea() {
    ParseOptions options;
    options.ip_checksum_verified = g_rx_checksum_verified;
    for (uint16_t i = 0; i < kBurst; ++i) {
      pkts[i].frame = bytes.get() + i * kMbufStride + kMbufDataOffset;
      pkts[i].options = options;
    }
  }
  // Restores the burst's bytes and lengths from 32 consecutive templates.
  void restore(const uint8_t* templates) {
    for (uint16_t i = 0; i < kBurst; ++i) {
      std::memcpy(pkts[i].frame, templates + i * kSlot, kSlot);
      pkts[i].len = kFrameLen;
    }
  }
};

// The worker's way: bursts through a BurstPipeline (three in flight), each
// restored into the buffers of its pipeline slot.
struct PipelinedBursts {
  BurstPipeline pipeline;
  MbufArea areas[BurstPipeline::kDepth];
  void push(WorkerState& w, const Snapshot& s, const NeighborTable& neighbors, const uint8_t* templates,
            uint64_t now) {
    BurstPipeline::Burst& b = pipeline.next();
    MbufArea& area = areas[pipeline.index_of(b)];
    area.restore(templates);
    for (uint16_t i = 0; i < kBurst; ++i) b.pkts[i] = area.pkts[i];
    b.n = kBurst;
    b.in_port = 0;
    pipeline.push(w, s, neighbors, now, [](const BurstPipeline::Burst&) {});
  }
  void drain(WorkerState& w, const NeighborTable& neighbors, uint64_t now) {
    pipeline.drain(w, neighbors, now, [](const BurstPipeline::Burst&) {});
  }
};

struct Templates {
  AlignedBytes bytes;
  uint32_t packets = 0;  // a multiple of kBurst
  explicit Templates(uint32_t n) : bytes(aligned_bytes(size_t(n) * kSlot)), packets(n) {}
  uint8_t* at(uint32_t i) { return bytes.get() + size_t(i) * kSlot; }
  const uint8_t* burst(uint64_t b) const { return bytes.get() + (b * kBurst % packets) * kSlot; }
};

WorkerState* new_worker(uint32_t id, uint32_t workers, uint32_t capacity) {
  WorkerConfig wc;
  wc.id = id;
  wc.flow_capacity = capacity;
  const ApplianceConfig& config = network().config;
  snat_slice(config.forwarding.snat_ports.first, config.forwarding.snat_ports.last, id, workers, wc.snat_first,
             wc.snat_last);
  auto* w = new WorkerState(wc);
  FlowTimeoutsTsc t;
  const FlowTimeouts& ms = config.dataplane.flows.timeouts;
  t.tcp_established = static_cast<uint64_t>(double(ms.tcp_established) * g_tsc_hz / 1000);
  t.tcp_transitory = static_cast<uint64_t>(double(ms.tcp_transitory) * g_tsc_hz / 1000);
  t.udp = static_cast<uint64_t>(double(ms.udp) * g_tsc_hz / 1000);
  t.tcp_embryonic_flood = std::min(t.tcp_transitory, static_cast<uint64_t>(g_tsc_hz));
  t.sweep = expiry_sweep_tsc(t, static_cast<uint64_t>(g_tsc_hz));  // as the appliance paces it
  w->flows.set_timeouts(t);
  return w;
}

uint64_t forwarded_plus_drops(const WorkerState& w, uint64_t& drops) {
  drops = 0;
  for (uint64_t d : w.counters.drops) drops += d;
  return w.counters.forwarded;
}

std::string drop_summary(const WorkerState& w) {
  std::string s;
  for (size_t r = 0; r < kDropReasonCount; ++r)
    if (w.counters.drops[r])
      s += std::string(kDropReasonNames[r]) + "=" + std::to_string(w.counters.drops[r]) + " ";
  return s;
}

// ---------------------------------------------------------------- established population
//
// `connections` connections opened through the real path: each client's SYN
// (translated, so the SNAT address and port are the ones the worker chose),
// then the node's SYN-ACK (the connection becomes established). The pool
// then holds ACKs of random connections, half client -> VIP, half node ->
// SNAT (the reply direction).
struct Population {
  std::unique_ptr<WorkerState> worker;
  std::unique_ptr<Templates> pool;
  MbufArea area;
  std::unique_ptr<PipelinedBursts> pipelined = std::make_unique<PipelinedBursts>();
  uint64_t next_burst = 0;
  uint32_t connections = 0;
  double setup_seconds = 0;
};

std::unique_ptr<Population> build_population(uint32_t connections, uint32_t worker_id, uint32_t workers) {
  auto start = std::chrono::steady_clock::now();
  const Network& net = network();
  auto pop = std::make_unique<Population>();
  pop->connections = connections;
  pop->worker.reset(new_worker(worker_id, workers, connections));
  WorkerState& w = *pop->worker;
  const uint64_t seed = worker_id + 1;

  struct Reply {
    uint32_t node, snat;  // host order
    uint16_t snat_port;
  };
  std::vector<Reply> replies(connections);
  MbufArea& area = pop->area;
  for (uint32_t first = 0; first < connections; first += kBurst) {
    uint16_t n = static_cast<uint16_t>(std::min<uint32_t>(kBurst, connections - first));
    for (uint16_t i = 0; i < n; ++i) {
      uint64_t c = first + i;
      build_tcp(area.pkts[i].frame, kGatewayMac, client_ip(c), kVip, client_port(c, seed), kNodePort, kTcpSyn,
                static_cast<uint32_t>(c));
      area.pkts[i].len = kFrameLen;
    }
    process_burst(w, net.snapshot(), net.neighbors, area.pkts, n, 0, __rdtsc());
    for (uint16_t i = 0; i < n; ++i) {
      const uint8_t* f = area.pkts[i].frame;
      if (area.pkts[i].outcome.action != Action::forward || !checksums_valid(f))
        throw std::runtime_error("population SYN not forwarded: " + drop_summary(w));
      replies[first + i] = Reply{load_be32(f + 30), load_be32(f + 26), load_be16(f + 34)};
    }
    for (uint16_t i = 0; i < n; ++i) {
      const Reply& r = replies[first + i];
      build_tcp(area.pkts[i].frame, node_mac(r.node), r.node, r.snat, kNodePort, r.snat_port, kTcpSyn | kTcpAck,
                first + i);
      area.pkts[i].len = kFrameLen;
    }
    process_burst(w, net.snapshot(), net.neighbors, area.pkts, n, 0, __rdtsc());
    for (uint16_t i = 0; i < n; ++i)
      if (area.pkts[i].outcome.action != Action::forward || !checksums_valid(area.pkts[i].frame))
        throw std::runtime_error("population SYN-ACK not forwarded: " + drop_summary(w));
  }
  if (w.flows.connections() != connections) throw std::runtime_error("population short of connections");

  pop->pool = std::make_unique<Templates>(kPoolPackets);
  uint64_t rng = 0x6e706c62 ^ seed;
  for (uint32_t j = 0; j < kPoolPackets; ++j) {
    uint64_t r = mix64(rng++);
    uint32_t c = static_cast<uint32_t>((r >> 1) % connections);
    if (r & 1) {
      const Reply& rep = replies[c];
      build_tcp(pop->pool->at(j), node_mac(rep.node), rep.node, rep.snat, kNodePort, rep.snat_port, kTcpAck,
                j);
    } else {
      build_tcp(pop->pool->at(j), kGatewayMac, client_ip(c), kVip, client_port(c, seed), kNodePort, kTcpAck, j);
    }
  }
  pop->setup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return pop;
}

std::mutex g_populations_lock;

// Populations live for the whole run: the bench calls each function several
// times (iteration estimate, repetitions).
Population& population(uint32_t connections, uint32_t worker_id = 0, uint32_t workers = 1) {
  static std::vector<std::pair<std::tuple<uint32_t, uint32_t, uint32_t>, std::unique_ptr<Population>>> all;
  auto key = std::make_tuple(connections, worker_id, workers);
  {
    std::lock_guard<std::mutex> guard(g_populations_lock);
    for (auto& [k, p] : all)
      if (k == key) return *p;
  }
  auto built = build_population(connections, worker_id, workers);  // threads build theirs in parallel
  std::lock_guard<std::mutex> guard(g_populations_lock);
  all.emplace_back(key, std::move(built));
  return *all.back().second;
}

// This thread's CPU time: unlike the TSC, it stops while the thread is
// descheduled, so on a shared machine it shows what preemption added.
uint64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void report_packets(benchmark::State& state, uint64_t cycles, uint64_t packets, bool threaded, uint64_t cpu_ns) {
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  auto flags = threaded ? benchmark::Counter::kAvgThreads : benchmark::Counter::kDefaults;
  double cpp = packets ? double(cycles) / double(packets) : 0;
  state.counters["cycles_per_packet"] = benchmark::Counter(cpp, flags);
  state.counters["cpu_cycles_per_packet"] =
      benchmark::Counter(packets ? double(cpu_ns) * g_tsc_hz / 1e9 / double(packets) : 0, flags);
  if (threaded) {
    // Sum over threads of packets per wall second: the aggregate rate.
    state.counters["aggregate_Mpps"] = benchmark::Counter(cycles ? double(packets) * g_tsc_hz / double(cycles) / 1e6 : 0);
  }
}

// The flow table's pages, as the benchmark's label.
void label_pages(benchmark::State& state, const WorkerState& w) {
  PageBacking backing = w.flows.page_backing();
  bool big = uint64_t(w.flows.entry_count()) * sizeof(FlowEntry) >= (2u << 20);  // smaller ones stay on 4 KiB pages
  if (g_require_hugetlb && big && !is_reserved_pool(backing)) {
    state.SkipWithError("--nplb_pages=hugetlb: the flow table did not get the reserved pool; see the note above");
    return;
  }
  state.SetLabel(std::string("pages:") + page_backing_name(backing));
}

// ---------------------------------------------------------------- benchmarks

// The same bursts as established/flows:1024 through a loop that only parses
// and swaps MACs: what any forwarder pays. The restore is the same memcpy.
void bm_baseline(benchmark::State& state) {
  Population& pop = population(1024);
  MbufArea& area = pop.area;
  uint64_t forwarded = 0;
  uint64_t cpu0 = thread_cpu_ns();
  uint64_t c0 = __rdtsc();
  for (auto _ : state) {
    area.restore(pop.pool->burst(pop.next_burst++));
    uint64_t now = __rdtsc();
    benchmark::DoNotOptimize(now);
    for (uint16_t i = 0; i < kBurst; ++i) {
      BurstPacket& p = area.pkts[i];
      ParsedFrame parsed;  // the worker's parse: the common shape first, the general parser otherwise
      if (!parse_common_ipv4(p.frame, p.len, p.options, parsed)) parse_frame_into(p.frame, p.len, p.options, parsed);
      if (parsed.kind == FrameKind::ipv4) {
        uint8_t mac[6];
        std::memcpy(mac, p.frame, 6);
        std::memcpy(p.frame, p.frame + 6, 6);
        std::memcpy(p.frame + 6, mac, 6);
        p.len = parsed.frame_len;
        ++forwarded;
      }
    }
    benchmark::ClobberMemory();
  }
  uint64_t cycles = __rdtsc() - c0;
  uint64_t packets = state.iterations() * kBurst;
  uint64_t cpu_ns = thread_cpu_ns() - cpu0;
  if (forwarded != packets) state.SkipWithError("baseline: a frame did not parse as IPv4");
  report_packets(state, cycles, packets, false, cpu_ns);
}

// pipelined: what the worker runs (BurstPipeline); else one process_burst
// per burst, each completed before the next is classified.
void run_established(benchmark::State& state, Population& pop, bool threaded, bool pipelined = true) {
  const Network& net = network();
  WorkerState& w = *pop.worker;
  MbufArea& area = pop.area;
  PipelinedBursts& pipe = *pop.pipelined;
  uint64_t drops_before;
  uint64_t forwarded_before = forwarded_plus_drops(w, drops_before);
  uint64_t cpu0 = thread_cpu_ns();
  uint64_t c0 = __rdtsc();
  for (auto _ : state) {
    uint64_t now = __rdtsc();
    if (pipelined) {
      pipe.push(w, net.snapshot(), net.neighbors, pop.pool->burst(pop.next_burst++), now);
    } else {
      area.restore(pop.pool->burst(pop.next_burst++));
      process_burst(w, net.snapshot(), net.neighbors, area.pkts, kBurst, 0, now);
    }
    if (g_expiry) w.expire(now);
  }
  pipe.drain(w, net.neighbors, __rdtsc());
  uint64_t cycles = __rdtsc() - c0;
  uint64_t cpu_ns = thread_cpu_ns() - cpu0;
  uint64_t packets = state.iterations() * kBurst;
  uint64_t drops;
  uint64_t forwarded = forwarded_plus_drops(w, drops) - forwarded_before;
  if (forwarded != packets || drops != drops_before)
    state.SkipWithError(("established: not every packet was forwarded: " + drop_summary(w)).c_str());
  state.counters["flows"] = benchmark::Counter(pop.connections, threaded ? benchmark::Counter::kAvgThreads : benchmark::Counter::kDefaults);
  label_pages(state, w);
  report_packets(state, cycles, packets, threaded, cpu_ns);
}

void bm_established(benchmark::State& state, uint32_t connections) {
  run_established(state, population(connections), false);
}

void bm_established_one_burst(benchmark::State& state, uint32_t connections) {
  run_established(state, population(connections), false, false);
}

void bm_established_workers(benchmark::State& state, uint32_t connections) {
  Population& pop = population(connections, static_cast<uint32_t>(state.thread_index()),
                               static_cast<uint32_t>(state.threads()));
  run_established(state, pop, true);
}

// New connections: SYNs of fresh client tuples into a table that holds
// 512Ki connections (the default capacity is 1Mi). Every 32Ki new
// connections, outside the timed region, the oldest ones beyond 512Ki are
// closed (SNAT port released, entries freed): the table never fills, and
// what is freed is cold, as under a real SYN load.
struct NewFlows {
  std::unique_ptr<WorkerState> worker;
  Templates pool{kPoolPackets};
  MbufArea area;
  PipelinedBursts pipelined;
  uint64_t head = 0;  // next pool position to send (absolute)
  uint64_t tail = 0;  // oldest connection still open (absolute)
  static constexpr uint32_t kCapacity = 1u << 20;
  static constexpr uint32_t kLive = 1u << 19;
  static constexpr uint32_t kRecycleBursts = 1024;

  NewFlows() {
    worker.reset(new_worker(0, 1, kCapacity));
    const uint64_t seed = 0x5359;  // "SY"
    for (uint32_t j = 0; j < kPoolPackets; ++j)
      build_tcp(pool.at(j), kGatewayMac, client_ip(j), kVip, client_port(j, seed), kNodePort, kTcpSyn, j);
    while (head < kLive) send_burst();
  }
  void send_burst() {
    const Network& net = network();
    area.restore(pool.burst(head / kBurst));
    process_burst(*worker, net.snapshot(), net.neighbors, area.pkts, kBurst, 0, __rdtsc());
    head += kBurst;
  }
  void recycle() {
    WorkerState& w = *worker;
    while (head - tail > kLive) {
      const uint8_t* f = pool.at(static_cast<uint32_t>(tail++ % kPoolPackets));
      FlowKeyV4 key;
      std::memcpy(&key.src_be, f + 26, 4);
      std::memcpy(&key.dst_be, f + 30, 4);
      std::memcpy(&key.src_port_be, f + 34, 2);
      std::memcpy(&key.dst_port_be, f + 36, 2);
      key.protocol = 6;
      uint32_t index = w.flows.lookup(key, flow_key_hash(key));
      if (index == FlowTable::kNoEntry) continue;  // expired already
      const FlowEntry& e = w.flows.entry(index);
      w.snat.release(e.snat_pool, __builtin_bswap16(e.new_src_port_be));
      w.flows.remove_connection(index);
    }
  }
};

void bm_new_flows(benchmark::State& state) {
  static NewFlows nf;
  const Network& net = network();
  WorkerState& w = *nf.worker;
  PipelinedBursts& pipe = nf.pipelined;
  nf.recycle();
  uint64_t created_before = w.counters.flows_created;
  uint64_t cycles = 0, bursts = 0, cpu_ns = 0;
  uint64_t cpu0 = thread_cpu_ns();
  uint64_t c0 = __rdtsc();
  for (auto _ : state) {
    uint64_t now = __rdtsc();
    pipe.push(w, net.snapshot(), net.neighbors, nf.pool.burst(nf.head / kBurst), now);
    if (g_expiry) w.expire(now);
    nf.head += kBurst;
    if (++bursts % NewFlows::kRecycleBursts == 0) {
      pipe.drain(w, net.neighbors, __rdtsc());
      cycles += __rdtsc() - c0;
      cpu_ns += thread_cpu_ns() - cpu0;
      state.PauseTiming();
      nf.recycle();
      state.ResumeTiming();
      cpu0 = thread_cpu_ns();
      c0 = __rdtsc();
    }
  }
  pipe.drain(w, net.neighbors, __rdtsc());
  cycles += __rdtsc() - c0;
  cpu_ns += thread_cpu_ns() - cpu0;
  uint64_t packets = state.iterations() * kBurst;
  if (w.counters.flows_created - created_before != packets)
    state.SkipWithError(("new_flows: not every SYN opened a connection: " + drop_summary(w)).c_str());
  state.counters["flows_live"] = w.flows.connections();
  label_pages(state, w);
  report_packets(state, cycles, packets, false, cpu_ns);
}

void bm_maglev_build(benchmark::State& state, uint32_t slots, uint32_t backends) {
  std::vector<MaglevBackend> list;
  for (uint32_t i = 0; i < backends; ++i)
    list.push_back(MaglevBackend{IpAddr::v4(0x0a010000u + i * 7 + 1).str(), i});
  uint64_t seed = MaglevConfig{}.seed;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    MaglevTable table = MaglevTable::build(list, slots, seed);
    benchmark::DoNotOptimize(table.slots().data());
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  state.counters["ms"] = benchmark::Counter(ms / double(state.iterations()));
}

uint64_t meminfo_kib(const char* key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + n, nullptr, 10);
  return 0;
}

// Says what the reserved pool holds against what the benchmarks need, and
// the exact command when it is short (scripts/bench.sh reserves it itself).
void hugepage_note() {
  // The four 1Mi-connection tables (established, the two threads' own,
  // new_flows') and the 10Mi one if it runs.
  uint64_t mib = (4 * FlowTable::bytes_for(1048576u) + (g_ten_million ? FlowTable::bytes_for(10485760u) : 0)) >> 20;
  uint64_t pages_needed = mib / 2 + 16;
  uint64_t free_pages = meminfo_kib("HugePages_Free:");
  if (free_pages >= pages_needed) {
    std::fprintf(stderr, "nplb-bench: %llu free 2 MiB pages reserved; flow tables take them\n",
                 static_cast<unsigned long long>(free_pages));
    return;
  }
  std::fprintf(stderr,
               "nplb-bench: only %llu free 2 MiB pages reserved, the flow tables need about %llu: tables that do "
               "not fit go on transparent huge pages (each benchmark's label says). For the reserved pool, as "
               "root: echo %llu > /proc/sys/vm/nr_hugepages (or run scripts/bench.sh, which does)\n",
               static_cast<unsigned long long>(free_pages), static_cast<unsigned long long>(pages_needed),
               static_cast<unsigned long long>(meminfo_kib("HugePages_Total:") + pages_needed - free_pages));
}

void register_all() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("baseline", bm_baseline);
  for (uint32_t flows : {1024u, 1048576u})
    RegisterBenchmark(("established/flows:" + std::to_string(flows)).c_str(), bm_established, flows);
  // The same bursts one at a time: what the burst pipeline buys.
  RegisterBenchmark("established_one_burst/flows:1048576", bm_established_one_burst, 1048576u);
  if (g_ten_million) {
    // 36.7M entries x 64 B + 5.2M buckets x 16 B + templates: about 2.4 GiB,
    // built when the benchmark first runs (not when a filter leaves it out).
    if (meminfo_kib("MemAvailable:") < (3ull << 20)) {
      std::fprintf(stderr, "nplb-bench: established/flows:10485760 needs about 3 GiB free; skipped\n");
    } else {
      RegisterBenchmark("established/flows:10485760", bm_established, 10485760u);
    }
  }
  RegisterBenchmark("established_workers/flows:1048576", bm_established_workers, 1048576u)->Threads(1)->Threads(2);
  RegisterBenchmark("new_flows", bm_new_flows);
  RegisterBenchmark("maglev_build/slots:65537/backends:1000", bm_maglev_build, 65537u, 1000u)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace nplb::bench

int main(int argc, char** argv) {
  using namespace nplb::bench;
  auto env_on = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::strcmp(v, "0") != 0;
  };
  std::string pages = std::getenv("NPLB_BENCH_PAGES") ? std::getenv("NPLB_BENCH_PAGES") : "auto";
  if (const char* v = std::getenv("NPLB_BENCH_10M"); v && std::strcmp(v, "0") == 0) g_ten_million = false;
  g_rx_checksum_verified = env_on("NPLB_BENCH_RX_CKSUM");
  if (env_on("NPLB_BENCH_NO_EXPIRY")) g_expiry = false;
  // Our flags, taken out before Google Benchmark sees the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nplb_10m") {  // the default; kept for scripts that ask for it
      g_ten_million = true;
    } else if (a == "--nplb_no_10m") {
      g_ten_million = false;
    } else if (a.rfind("--nplb_pages=", 0) == 0) {
      pages = a.substr(13);
    } else if (a == "--nplb_rx_cksum") {
      g_rx_checksum_verified = true;
    } else if (a == "--nplb_no_expiry") {
      g_expiry = false;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  if (pages == "auto" || pages == "hugetlb") {
    g_require_hugetlb = pages == "hugetlb";
    nplb::set_page_policy(nplb::PagePolicy::any);
  } else if (pages == "thp") {
    nplb::set_page_policy(nplb::PagePolicy::no_hugetlb);
  } else if (pages == "4k") {
    nplb::set_page_policy(nplb::PagePolicy::normal_only);
  } else {
    std::fprintf(stderr, "nplb-bench: --nplb_pages must be auto, hugetlb, thp or 4k\n");
    return 1;
  }
  if (pages == "auto" || pages == "hugetlb") hugepage_note();

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  g_tsc_hz = measure_tsc_hz();
  register_all();
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("tsc_ghz", std::to_string(g_tsc_hz / 1e9));
  benchmark::AddCustomContext("pages", pages);
  benchmark::AddCustomContext("rx_ip_checksum", g_rx_checksum_verified ? "verified by NIC (skipped)" : "software");
  benchmark::AddCustomContext("expiry", g_expiry ? "paced (a pass per quarter of the shortest timeout)" : "off");
  benchmark::AddCustomContext("burst", std::to_string(kBurst) + " x " + std::to_string(kFrameLen + 4) +
                                           "-byte TCP frames, " + std::to_string(kPoolPackets) + " templates");
  try {
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nplb-bench: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
