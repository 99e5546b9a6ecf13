#include "control/appliance.hpp"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <regex>
#include <thread>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/api_server.hpp"
#include "control/config_loader.hpp"
#include "control/control_nap.hpp"
#include "control/file_watcher.hpp"
#include "control/health_checker.hpp"
#include "control/json_writer.hpp"
#include "control/snapshot_builder.hpp"
#include "dataplane/worker.hpp"

namespace nplb {
namespace {

std::atomic<bool> g_stop_requested{false};
std::atomic<bool> g_reload_requested{false};

void on_stop_signal(int) { g_stop_requested.store(true); }
void on_reload_signal(int) { g_reload_requested.store(true); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &sa, nullptr);
}

std::string utc_now_iso8601() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What the last reload did, for the API and nplbctl.
struct ReloadRecord {
  std::string time;
  std::string trigger = "start";
  bool ok = true;       // applied, and nothing was rejected
  bool applied = true;  // a new snapshot was published
  uint64_t generation = 0;
  std::vector<std::string> errors;
  std::vector<std::string> changes;
  std::vector<std::string> restart_required;
};

void write_string_array(JsonWriter& j, const std::vector<std::string>& items) {
  j.begin_array();
  for (const std::string& item : items) j.value(item);
  j.end_array();
}

bool is_pci_address(const std::string& device) {
  static const std::regex pci(R"(^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7](,.*)?$)");
  return std::regex_match(device, pci);
}

// "net_pcap0,rx_pcap=in.pcap" -> "net_pcap0"; "03:00.0" -> "0000:03:00.0".
std::string device_name(const std::string& device) {
  std::string name = device.substr(0, device.find(','));
  if (is_pci_address(device) && name.size() == 7) name = "0000:" + name;
  return name;
}

// The kernel interface of a port's exception path: "nplb-NAME", cut to
// the kernel's 15 characters.
std::string kernel_iface_name(const PortConfig& port) { return ("nplb-" + port.name).substr(0, 15); }

// Gives the kernel interface its address and brings it up (ioctl, control
// thread only).
void configure_kernel_iface(const std::string& iface, const Cidr& address) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  ifreq req{};
  std::strncpy(req.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&req.ifr_addr);
  sin->sin_family = AF_INET;
  uint32_t addr_be = address.address.v4_be();
  std::memcpy(&sin->sin_addr, &addr_be, 4);
  int rc = ioctl(fd, SIOCSIFADDR, &req);
  if (rc == 0) {
    uint32_t mask = address.prefix_len == 0 ? 0 : htonl(~uint32_t(0) << (32 - address.prefix_len));
    std::memcpy(&sin->sin_addr, &mask, 4);
    rc = ioctl(fd, SIOCSIFNETMASK, &req);
  }
  if (rc == 0) rc = ioctl(fd, SIOCGIFFLAGS, &req);
  if (rc == 0) {
    req.ifr_flags |= IFF_UP | IFF_RUNNING;
    rc = ioctl(fd, SIOCSIFFLAGS, &req);
  }
  int err = errno;
  close(fd);
  if (rc != 0) throw std::runtime_error(iface + ": " + std::strerror(err));
}

struct StartError {
  std::vector<ConfigError> errors;
};

[[noreturn]] void fail(const SourceLocation& where, const std::string& message) {
  throw StartError{{ConfigError{where, message}}};
}

// What the control thread keeps about each next hop it resolves.
struct ResolutionState {
  uint64_t last_request_tsc = 0;
};

class Appliance {
 public:
  Appliance(ConfigLoader& loader, LoadResult loaded, const RunOptions& options)
      : loader_(loader), active_(std::move(loaded)), config_(*active_.config), options_(options) {}
  ~Appliance() { shutdown(); }

  int run();

 private:
  void init_eal();
  void check_lcores();
  void create_mempool();
  void setup_ports();
  void start_workers();
  void control_loop();
  uint32_t handle_worker_events();
  void setup_taps();
  uint32_t exchange_kernel_frames();
  void resolve_next_hops(uint64_t now, bool periodic);
  void request_arp(uint16_t port, uint32_t target_be);
  bool idle_long_enough(uint64_t now) const;
  std::string counters_json() const;
  void shutdown();

  // Reload: build off the fast path, publish, wait out the workers, free.
  ReloadRecord reload(const std::string& trigger);
  void publish(BuiltSnapshot built);
  void watch_config_files();
  void start_api();
  // Health: targets from the model, verdicts into the snapshot.
  void update_health_targets();
  void handle_health_changes();
  BackendRotation judge(const ResolvedService& svc, const ResolvedServicePort& port, const ResolvedBackend& b) const;
  void refresh_address_health();
  BuiltSnapshot build(const ApplianceConfig& effective, const Model& model, uint64_t generation);
  std::string health_key(const ResolvedService& svc, const ResolvedServicePort& port, const ResolvedBackend& b) const;
  const HealthStatus* health_of(const ResolvedService& svc, const ResolvedServicePort& port,
                                const ResolvedBackend& b) const;
  std::string address_state(const IpAddr& address) const;
  std::string status_json() const;
  std::string services_json() const;
  std::string reload_json(const ReloadRecord& r) const;
  std::string nodes_json() const;
  std::string endpoints_json() const;

  ConfigLoader& loader_;
  LoadResult active_;              // the model being served (and the config it came with)
  const ApplianceConfig config_;   // as started: settings that only take effect at start
  RunOptions options_;
  ReloadRecord last_reload_;
  MaglevCache maglev_cache_;
  uint64_t generation_ = 1;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<FileWatcher> watcher_;
  std::unique_ptr<HealthChecker> health_;
  std::set<std::string> drained_nodes_;  // operator's drains (POST /v1/drain)
  // Per address, from its probes: down when every probe of it is down.
  // UDP and SCTP ports (no connect to probe) follow their address.
  std::map<IpAddr, HealthState> address_health_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  bool eal_ready_ = false;
  bool ports_started_ = false;
  std::vector<uint16_t> port_ids_;
  std::vector<MacAddr> port_macs_;
  std::vector<unsigned> worker_lcores_;
  rte_mempool* mempool_ = nullptr;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<rte_ring*> inject_rings_;
  std::vector<rte_ring*> kernel_rings_;  // per worker: frames for the kernel
  std::vector<int> tap_ids_;             // per data port: its tap's DPDK port id, or -1
  uint64_t kernel_rx_ = 0, kernel_tx_ = 0, kernel_dropped_ = 0;

  NeighborTable neighbors_{4096};
  StableIds ids_;
  BuiltSnapshot current_;
  std::atomic<const Snapshot*> published_{nullptr};
  std::atomic<bool> stop_workers_{false};
  std::vector<std::unique_ptr<WorkerState>> workers_;
  std::vector<std::unique_ptr<WorkerRuntime>> runtimes_;
  std::map<uint32_t, ResolutionState> resolution_;
  uint64_t arp_answer_due_tsc_ = 0;  // until then the control loop naps short (ControlNap)
  uint64_t tsc_hz_ = 0;
  uint64_t started_tsc_ = 0;
  uint16_t reta_size_ = 0;  // with several workers: the RSS table every port got
};

void Appliance::init_eal() {
  std::vector<std::string> args{"nplb"};
  for (const std::string& a : config_.dataplane.eal) args.push_back(a);
  bool any_pci = false;
  for (const PortConfig& p : config_.dataplane.ports) {
    if (is_pci_address(p.device)) {
      args.push_back("-a");
      any_pci = true;
    } else {
      args.push_back("--vdev");
    }
    args.push_back(p.device);
  }
  // A tap per port with a kernel address: the exception path.
  for (size_t i = 0; i < config_.dataplane.ports.size(); ++i)
    if (config_.dataplane.ports[i].kernel_address) {
      args.push_back("--vdev");
      args.push_back("net_tap_nplb" + std::to_string(i) + ",iface=" + kernel_iface_name(config_.dataplane.ports[i]));
    }
  // Only the configured NICs: never take over every PCI device bound to DPDK.
  if (!any_pci) args.push_back("--no-pci");
  for (const std::string& a : options_.extra_eal) args.push_back(a);

  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string joined;
  for (const std::string& a : args) joined += " " + a;
  spdlog::info("EAL:{}", joined);
  // EAL prints its usage text on stdout when an argument is wrong; stdout is
  // kept for JSON, so point it at stderr while EAL starts.
  std::fflush(stdout);
  int saved_stdout = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  int eal_rc = rte_eal_init(static_cast<int>(args.size()), argv.data());
  std::fflush(stdout);
  dup2(saved_stdout, STDOUT_FILENO);
  close(saved_stdout);
  if (eal_rc < 0)
    fail(config_.dataplane.eal_where, std::string("dataplane.eal: EAL initialisation failed: ") + rte_strerror(rte_errno));
  eal_ready_ = true;
  tsc_hz_ = rte_get_tsc_hz();
  started_tsc_ = rte_rdtsc();
}

void Appliance::check_lcores() {
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (worker_lcores_.size() == config_.dataplane.workers) break;
    worker_lcores_.push_back(lcore);
  }
  if (worker_lcores_.size() < config_.dataplane.workers)
    fail(config_.dataplane.workers_where,
         "dataplane.workers: " + std::to_string(config_.dataplane.workers) + " workers need " +
             std::to_string(config_.dataplane.workers + 1) + " lcores (one main lcore for the control thread), EAL has " +
             std::to_string(rte_lcore_count()) + " (set -l or --lcores in dataplane.eal)");
}

void Appliance::create_mempool() {
  const DataplaneConfig& dp = config_.dataplane;
  // Every RX and TX descriptor may hold an mbuf, each worker may hold a burst
  // per port plus its TX buffers, and every lcore's mempool cache may hold some.
  constexpr unsigned kCache = 256;
  uint64_t taps = 0;
  for (const PortConfig& p : dp.ports) taps += p.kernel_address ? 1 : 0;
  uint64_t needed = uint64_t(dp.ports.size()) * dp.workers * (dp.rx_descriptors + dp.tx_descriptors) +
                    taps * (512 + 512 + 2 * 1024) +
                    uint64_t(dp.workers) * kBurstSize * (3 * dp.ports.size() + 1) + uint64_t(kCache) * (dp.workers + 1) + 64;
  if (dp.mbufs < needed)
    fail(dp.mbufs_where,
         "dataplane.mbufs: " + std::to_string(dp.mbufs) + " mbufs are too few for " + std::to_string(dp.ports.size()) +
             " ports x " + std::to_string(dp.workers) + " queues x (" + std::to_string(dp.rx_descriptors) + " + " +
             std::to_string(dp.tx_descriptors) + ") descriptors plus bursts and caches: need at least " +
             std::to_string(needed));
  mempool_ = rte_pktmbuf_pool_create("nplb_mbufs", dp.mbufs, kCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  if (!mempool_)
    fail(dp.mbufs_where,
         "dataplane.mbufs: cannot allocate " + std::to_string(dp.mbufs) + " mbufs: " + rte_strerror(rte_errno) +
             " (raise -m in dataplane.eal or reserve hugepages)");
}

void Appliance::setup_ports() {
  const DataplaneConfig& dp = config_.dataplane;
  uint16_t queues = static_cast<uint16_t>(dp.workers);
  for (const PortConfig& pc : dp.ports) {
    std::string name = device_name(pc.device);
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0)
      fail(pc.device_where, "dataplane.ports." + pc.name + ".device: no DPDK port named \"" + name +
                         "\" (the driver did not probe it; see the EAL messages above)");
    rte_eth_dev_info info;
    if (rte_eth_dev_info_get(id, &info) != 0) fail(pc.where, "dataplane.ports." + pc.name + ": cannot query the device");
    if (info.max_rx_queues < queues || info.max_tx_queues < queues)
      fail(pc.device_where, "dataplane.ports." + pc.name + ".device: " + std::to_string(dp.workers) +
                         " workers need as many RX and TX queues; the device has " + std::to_string(info.max_rx_queues) +
                         " RX and " + std::to_string(info.max_tx_queues) + " TX (net_af_packet: add qpairs=N)");
    rte_eth_conf conf{};
    static uint8_t rss_key[kRssKey.size()];
    std::memcpy(rss_key, kRssKey.data(), kRssKey.size());
    if (queues > 1) {
      // Replies must reach the worker that owns their connection: that
      // takes Toeplitz RSS over the 4-tuple with our key, and a RETA we
      // know. PMDs without it (af_packet, memif, pcap) run one worker.
      constexpr uint64_t kNeeded = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP;
      if ((info.flow_type_rss_offloads & kNeeded) != kNeeded || info.reta_size == 0 ||
          (info.hash_key_size != 0 && info.hash_key_size < kRssKey.size()))
        fail(pc.device_where, "dataplane.ports." + pc.name + ".device: " + std::to_string(dp.workers) +
                                  " workers need Toeplitz RSS over TCP/UDP ports with a 40-byte key, which " +
                                  (info.driver_name ? info.driver_name : "this driver") +
                                  " does not offer; run one worker (replies could not reach the worker owning "
                                  "their connection)");
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf = kNeeded | (RTE_ETH_RSS_IPV4 & info.flow_type_rss_offloads);
      conf.rx_adv_conf.rss_conf.rss_key = rss_key;
      conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<uint8_t>(kRssKey.size());
      reta_size_ = info.reta_size;
    }
    if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
    int rc = rte_eth_dev_configure(id, queues, queues, &conf);
    if (rc != 0) fail(pc.where, "dataplane.ports." + pc.name + ": configure failed: " + rte_strerror(-rc));
    uint16_t rxd = dp.rx_descriptors, txd = dp.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxd, &txd);
    for (uint16_t q = 0; q < queues; ++q) {
      rc = rte_eth_rx_queue_setup(id, q, rxd, rte_eth_dev_socket_id(id), nullptr, mempool_);
      if (rc != 0) fail(pc.where, "dataplane.ports." + pc.name + ": RX queue setup failed: " + rte_strerror(-rc));
      rc = rte_eth_tx_queue_setup(id, q, txd, rte_eth_dev_socket_id(id), nullptr);
      if (rc != 0) fail(pc.where, "dataplane.ports." + pc.name + ": TX queue setup failed: " + rte_strerror(-rc));
    }
    MacAddr mac;
    if (pc.mac) {
      mac = *pc.mac;
      rte_ether_addr addr;
      std::memcpy(addr.addr_bytes, mac.bytes.data(), 6);
      if (rte_eth_dev_default_mac_addr_set(id, &addr) != 0)
        spdlog::info("port {}: the driver keeps its own MAC; frames use {} and the port listens promiscuously", pc.name,
                     mac.str());
    } else {
      rte_ether_addr addr;
      rte_eth_macaddr_get(id, &addr);
      std::memcpy(mac.bytes.data(), addr.addr_bytes, 6);
    }
    rc = rte_eth_dev_start(id);
    if (rc != 0) fail(pc.where, "dataplane.ports." + pc.name + ": start failed: " + rte_strerror(-rc));
    if (queues > 1) {
      // The RETA the software model assumes: entry i -> queue i mod workers.
      std::vector<rte_eth_rss_reta_entry64> reta((info.reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) /
                                                 RTE_ETH_RETA_GROUP_SIZE);
      for (uint16_t i = 0; i < info.reta_size; ++i) {
        reta[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
        reta[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = static_cast<uint16_t>(i % queues);
      }
      rc = rte_eth_dev_rss_reta_update(id, reta.data(), info.reta_size);
      if (rc != 0)
        fail(pc.device_where, "dataplane.ports." + pc.name + ".device: cannot program the RSS redirection table: " +
                                  rte_strerror(-rc));
      if (reta_size_ != info.reta_size)
        fail(pc.device_where, "dataplane.ports." + pc.name +
                                  ".device: every port needs the same RSS table size with several workers");
    }
    rte_eth_promiscuous_enable(id);
    port_ids_.push_back(id);
    port_macs_.push_back(mac);
    spdlog::info("port {} ({}) up: DPDK port {}, MAC {}, {} queue(s), {} RX / {} TX descriptors", pc.name, name, id,
                 mac.str(), queues, rxd, txd);
  }
  ports_started_ = true;
}

void Appliance::setup_taps() {
  tap_ids_.assign(config_.dataplane.ports.size(), -1);
  for (size_t i = 0; i < config_.dataplane.ports.size(); ++i) {
    const PortConfig& pc = config_.dataplane.ports[i];
    if (!pc.kernel_address) continue;
    std::string name = "net_tap_nplb" + std::to_string(i);
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0)
      fail(pc.kernel_address_where, "dataplane.ports." + pc.name +
                                        ".kernel_address: cannot create the tap interface (is /dev/net/tun there?)");
    rte_eth_conf conf{};
    int rc = rte_eth_dev_configure(id, 1, 1, &conf);
    if (rc == 0) rc = rte_eth_rx_queue_setup(id, 0, 512, rte_eth_dev_socket_id(id), nullptr, mempool_);
    if (rc == 0) rc = rte_eth_tx_queue_setup(id, 0, 512, rte_eth_dev_socket_id(id), nullptr);
    // The kernel interface shares the port's MAC: frames cross between the
    // two untouched, and ARP answers agree whoever sends them.
    rte_ether_addr mac;
    std::memcpy(mac.addr_bytes, port_macs_[i].bytes.data(), 6);
    if (rc == 0) rc = rte_eth_dev_default_mac_addr_set(id, &mac);
    if (rc == 0) rc = rte_eth_dev_start(id);
    if (rc != 0)
      fail(pc.kernel_address_where,
           "dataplane.ports." + pc.name + ".kernel_address: tap setup failed: " + rte_strerror(-rc));
    try {
      configure_kernel_iface(kernel_iface_name(pc), *pc.kernel_address);
    } catch (const std::exception& e) {
      fail(pc.kernel_address_where, "dataplane.ports." + pc.name + ".kernel_address: " + e.what());
    }
    tap_ids_[i] = id;
    spdlog::info("port {}: kernel path through {} ({})", pc.name, kernel_iface_name(pc), pc.kernel_address->str());
  }
}

uint32_t Appliance::exchange_kernel_frames() {
  uint32_t moved = 0;
  rte_mbuf* pkts[kBurstSize];
  // Workers -> kernel.
  for (rte_ring* ring : kernel_rings_) {
    unsigned n = rte_ring_sc_dequeue_burst(ring, reinterpret_cast<void**>(pkts), kBurstSize, nullptr);
    moved += n;
    for (unsigned i = 0; i < n; ++i) {
      uint16_t port = pkts[i]->port;
      if (port < tap_ids_.size() && tap_ids_[port] >= 0 &&
          rte_eth_tx_burst(static_cast<uint16_t>(tap_ids_[port]), 0, &pkts[i], 1) == 1) {
        ++kernel_rx_;
        continue;
      }
      ++kernel_dropped_;
      rte_pktmbuf_free(pkts[i]);
    }
  }
  // Kernel -> wire, through worker 0's TX queue.
  for (size_t port = 0; port < tap_ids_.size(); ++port) {
    if (tap_ids_[port] < 0) continue;
    uint16_t n = rte_eth_rx_burst(static_cast<uint16_t>(tap_ids_[port]), 0, pkts, kBurstSize);
    moved += n;
    for (uint16_t i = 0; i < n; ++i) {
      pkts[i]->port = static_cast<uint16_t>(port);
      if (rte_ring_sp_enqueue(inject_rings_[0], pkts[i]) == 0) {
        ++kernel_tx_;
      } else {
        ++kernel_dropped_;
        rte_pktmbuf_free(pkts[i]);
      }
    }
  }
  return moved;
}

void Appliance::start_workers() {
  const DataplaneConfig& dp = config_.dataplane;
  size_t rcu_size = rte_rcu_qsbr_get_memsize(dp.workers);
  rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("nplb_rcu", rcu_size, RTE_CACHE_LINE_SIZE));
  if (!rcu_ || rte_rcu_qsbr_init(rcu_, dp.workers) != 0)
    fail(SourceLocation{config_.config_file, 0, 0}, "cannot allocate the RCU state");

  for (uint32_t w = 0; w < dp.workers; ++w) {
    WorkerConfig wc;
    wc.id = w;
    wc.flow_capacity = dp.flows.capacity;
    // The table on the worker's socket: a lookup per packet from the other
    // socket's memory would cost a remote access each.
    unsigned socket = rte_lcore_to_socket_id(worker_lcores_[w]);
    wc.numa_node = socket == unsigned(SOCKET_ID_ANY) ? -1 : static_cast<int>(socket);
    if (dp.workers > 1 && reta_size_ > 0) {
      // Ownership by reply hash: every worker may use every port whose
      // reply lands on its queue, so no port is ever used by two workers.
      wc.snat_first = config_.forwarding.snat_ports.first;
      wc.snat_last = config_.forwarding.snat_ports.last;
      wc.rss.enabled = true;
      wc.rss.queue = static_cast<uint16_t>(w);
      wc.rss.queues = static_cast<uint16_t>(dp.workers);
      for (uint16_t i = 0; i < reta_size_; ++i) wc.rss.reta.push_back(static_cast<uint16_t>(i % dp.workers));
    } else {
      snat_slice(config_.forwarding.snat_ports.first, config_.forwarding.snat_ports.last, w, dp.workers,
                 wc.snat_first, wc.snat_last);
    }
    auto state = std::make_unique<WorkerState>(wc);
    FlowTimeoutsTsc t;
    t.tcp_established = config_.dataplane.flows.timeouts.tcp_established * tsc_hz_ / 1000;
    t.tcp_transitory = config_.dataplane.flows.timeouts.tcp_transitory * tsc_hz_ / 1000;
    t.udp = config_.dataplane.flows.timeouts.udp * tsc_hz_ / 1000;
    // Under a new-flow flood a SYN that got no answer within a second is
    // most likely spoofed: its slot is worth more to the next client.
    t.tcp_embryonic_flood = std::min(t.tcp_transitory, tsc_hz_);
    t.sweep = expiry_sweep_tsc(t, tsc_hz_);
    state->flows.set_timeouts(t);
    spdlog::info("worker {}: flow table for {} connections on {} pages of NUMA node {}{}", w, dp.flows.capacity,
                 page_backing_name(state->flows.page_backing()), wc.numa_node,
                 is_reserved_pool(state->flows.page_backing())
                     ? ""
                     : " (reserve 2 MiB pages for the reserved pool: echo N > /proc/sys/vm/nr_hugepages)");

    std::string ring_name = "nplb_inject_" + std::to_string(w);
    rte_ring* ring = rte_ring_create(ring_name.c_str(), 1024, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!ring) fail(SourceLocation{config_.config_file, 0, 0}, "cannot create ring " + ring_name);
    inject_rings_.push_back(ring);
    std::string kernel_ring_name = "nplb_kernel_" + std::to_string(w);
    rte_ring* kernel_ring =
        rte_ring_create(kernel_ring_name.c_str(), 1024, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!kernel_ring) fail(SourceLocation{config_.config_file, 0, 0}, "cannot create ring " + kernel_ring_name);
    kernel_rings_.push_back(kernel_ring);

    auto rt = std::make_unique<WorkerRuntime>();
    rt->state = state.get();
    rt->queue = static_cast<uint16_t>(w);
    rt->port_count = static_cast<uint16_t>(port_ids_.size());
    for (size_t p = 0; p < port_ids_.size(); ++p) rt->port_ids[p] = port_ids_[p];
    rt->published = &published_;
    rt->neighbors = &neighbors_;
    rt->rcu = rcu_;
    rt->inject = ring;
    rt->to_kernel = kernel_ring;
    rt->stop = &stop_workers_;
    rt->idle_spin_tsc = dp.idle.spin * tsc_hz_ / 1000;
    rt->idle_sleep_us = dp.idle.sleep_us;
    static_assert(FlowConfig{}.pipeline_above == BurstPipeline::kCacheResidentConnections);
    rt->pipeline_above = dp.flows.pipeline_above;
    rt->last_rx_tsc.store(started_tsc_);
    workers_.push_back(std::move(state));
    runtimes_.push_back(std::move(rt));
  }
  for (uint32_t w = 0; w < dp.workers; ++w) {
    int rc = rte_eal_remote_launch(run_worker, runtimes_[w].get(), worker_lcores_[w]);
    if (rc != 0) fail(config_.dataplane.workers_where, "cannot launch worker on lcore " + std::to_string(worker_lcores_[w]));
    spdlog::info("worker {} on lcore {}", w, worker_lcores_[w]);
  }
}

void Appliance::request_arp(uint16_t port, uint32_t target_be) {
  if (port >= port_ids_.size() || inject_rings_.empty()) return;
  arp_answer_due_tsc_ = rte_rdtsc() + tsc_hz_ / 100;  // a LAN answers within a few ms
  const PortConfig& pc = config_.dataplane.ports[port];
  // The sender address: the port's address on the target's subnet.
  uint32_t sender_be = 0;
  for (const Cidr& c : pc.addresses)
    if (c.address.is_v4() && (sender_be == 0 || c.contains(IpAddr::v4_be(target_be)))) sender_be = c.address.v4_be();
  rte_mbuf* m = rte_pktmbuf_alloc(mempool_);
  if (!m) return;
  uint8_t* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, 60));
  if (!f) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memset(f, 0, 60);
  std::memset(f, 0xff, 6);
  std::memcpy(f + 6, port_macs_[port].bytes.data(), 6);
  f[12] = 0x08, f[13] = 0x06;
  uint8_t* arp = f + 14;
  arp[1] = 1;                // Ethernet
  arp[2] = 0x08, arp[3] = 0;  // IPv4
  arp[4] = 6, arp[5] = 4;
  arp[7] = 1;  // request
  std::memcpy(arp + 8, port_macs_[port].bytes.data(), 6);
  std::memcpy(arp + 14, &sender_be, 4);
  std::memcpy(arp + 24, &target_be, 4);
  m->port = port;
  if (rte_ring_sp_enqueue(inject_rings_[0], m) != 0) rte_pktmbuf_free(m);
}

void Appliance::resolve_next_hops(uint64_t now, bool periodic) {
  const Snapshot* s = published_.load();
  if (!s) return;
  auto want = [&](uint16_t port, uint32_t next_hop) {
    if (next_hop == 0) return;
    ResolutionState& r = resolution_[next_hop];
    bool known = neighbors_.contains(next_hop);
    uint64_t interval = known ? 60 * tsc_hz_ : tsc_hz_;  // refresh known ones every minute
    if (neighbors_.is_static(next_hop)) return;
    if (r.last_request_tsc != 0 && now - r.last_request_tsc < interval) return;
    r.last_request_tsc = now;
    request_arp(port, next_hop);
  };
  if (!periodic) return;
  for (const BackendView& b : s->backends)
    if (b.route.found) want(b.route.port, b.route.next_hop_be);
  for (uint16_t p = 0; p < s->ports.size(); ++p) want(p, s->ports[p].gateway_be);
}

uint32_t Appliance::handle_worker_events() {
  uint64_t now = rte_rdtsc();
  uint32_t handled = 0;
  for (auto& w : workers_) {
    WorkerEvent e;
    for (int budget = 0; budget < 1024 && w->events.pop(e); ++budget) {
      ++handled;
      switch (e.kind) {
        case WorkerEvent::Kind::arp_learned:
          if (!neighbors_.update(e.ip_be, e.mac, false))
            spdlog::warn("neighbour table full: {} not learned", IpAddr::v4_be(e.ip_be).str());
          break;
        case WorkerEvent::Kind::next_hop_wanted: {
          if (neighbors_.contains(e.ip_be)) break;
          ResolutionState& r = resolution_[e.ip_be];
          // At most five requests a second per next hop.
          if (r.last_request_tsc != 0 && now - r.last_request_tsc < tsc_hz_ / 5) break;
          r.last_request_tsc = now;
          request_arp(e.port, e.ip_be);
          break;
        }
      }
    }
  }
  return handled;
}

bool Appliance::idle_long_enough(uint64_t now) const {
  uint64_t last = 0;
  for (const auto& rt : runtimes_) last = std::max(last, rt->last_rx_tsc.load(std::memory_order_relaxed));
  return now > last && (now - last) * 1000 / tsc_hz_ >= static_cast<uint64_t>(options_.exit_when_idle_ms);
}

void Appliance::control_loop() {
  uint64_t last_periodic = 0;
  ControlNap nap;
  while (!g_stop_requested.load()) {
    uint64_t now = rte_rdtsc();
    bool worked = handle_worker_events() > 0;
    worked |= exchange_kernel_frames() > 0;
    if (api_) api_->poll(0);
    if (health_) {
      health_->poll(0);
      handle_health_changes();
    }
    if (g_reload_requested.exchange(false)) reload("signal");
    if (watcher_ && watcher_->changed()) reload("inotify");
    if (now - last_periodic >= tsc_hz_ / 4) {
      resolve_next_hops(now, true);
      last_periodic = now;
    }
    if (options_.exit_when_idle_ms >= 0 && idle_long_enough(now)) {
      spdlog::info("every RX queue idle for {} ms: stopping", options_.exit_when_idle_ms);
      break;
    }
    // Short naps while there is work: a neighbour a worker learned must
    // reach the table before the reply it will carry (a node answers within
    // ~100 us on a LAN); longer ones when idle (ControlNap).
    worked |= now < arp_answer_due_tsc_;
    std::this_thread::sleep_for(std::chrono::microseconds(nap.next(worked)));
  }
  if (g_stop_requested.load()) spdlog::info("stop requested by signal");
}

std::string Appliance::counters_json() const {
  auto sum = [&](auto field) {
    uint64_t total = 0;
    for (const auto& w : workers_) total += field(*w);
    return total;
  };
  JsonWriter j;
  j.begin_object();
  j.key("ports").begin_object();
  for (size_t p = 0; p < config_.dataplane.ports.size(); ++p) {
    j.key(config_.dataplane.ports[p].name).begin_object();
    j.key("rx").value(sum([p](const WorkerState& w) { return w.counters.port_rx[p]; }));
    j.key("tx").value(sum([p](const WorkerState& w) { return w.counters.port_tx[p]; }));
    j.key("dropped").value(sum([p](const WorkerState& w) { return w.counters.port_dropped[p]; }));
    j.end_object();
  }
  j.end_object();
  j.key("drops").begin_object();
  for (size_t r = 0; r < kDropReasonCount; ++r)
    j.key(kDropReasonNames[r]).value(sum([r](const WorkerState& w) { return w.counters.drops[r]; }));
  j.end_object();
  j.key("flows_created").value(sum([](const WorkerState& w) { return w.counters.flows_created; }));
  j.key("flows_expired").value(sum([](const WorkerState& w) { return w.counters.flows_expired; }));
  j.key("flows_evicted").value(sum([](const WorkerState& w) { return w.counters.flows_evicted; }));
  j.key("flows_rolled_back").value(sum([](const WorkerState& w) { return w.counters.flows_rolled_back; }));
  j.key("flows_active").value(sum([](const WorkerState& w) { return uint64_t(w.flows.connections()); }));
  j.key("forwarded").value(sum([](const WorkerState& w) { return w.counters.forwarded; }));
  j.key("arp_replies").value(sum([](const WorkerState& w) { return w.counters.arp_replies; }));
  j.key("arp_learned").value(sum([](const WorkerState& w) { return w.counters.arp_learned; }));
  j.key("icmp_echo_replies").value(sum([](const WorkerState& w) { return w.counters.icmp_echo_replies; }));
  j.key("flows_moved").value(sum([](const WorkerState& w) { return w.counters.flows_moved; }));
  j.key("rejects_sent").value(sum([](const WorkerState& w) { return w.counters.rejects_sent; }));
  j.key("rejects_rate_limited").value(sum([](const WorkerState& w) { return w.counters.rejects_rate_limited; }));
  j.key("flood_windows_100ms").value(sum([](const WorkerState& w) { return w.counters.flood_windows; }));
  j.key("generation").value(generation_);
  j.key("kernel").begin_object();
  j.key("to_kernel").value(kernel_rx_);
  j.key("from_kernel").value(kernel_tx_);
  j.key("dropped").value(kernel_dropped_);
  j.end_object();
  j.key("services").begin_object();
  for (const auto& [label, id] : current_.service_labels) {
    j.key(label).begin_object();
    j.key("packets").value(sum([id](const WorkerState& w) { return w.service_packets[id]; }));
    j.end_object();
  }
  j.end_object();
  j.key("backends").begin_object();
  std::map<std::string, uint32_t> backends(current_.backend_labels.begin(), current_.backend_labels.end());
  for (const auto& [label, id] : backends) {
    j.key(label).begin_object();
    j.key("packets").value(sum([id](const WorkerState& w) { return w.backend_packets[id]; }));
    j.end_object();
  }
  j.end_object();
  j.end_object();
  return j.str();
}

void Appliance::shutdown() {
  if (!eal_ready_) return;
  stop_workers_.store(true);
  rte_eal_mp_wait_lcore();
  if (ports_started_) {
    for (size_t p = 0; p < port_ids_.size(); ++p) {
      rte_eth_dev_stop(port_ids_[p]);
      rte_eth_dev_close(port_ids_[p]);
    }
    ports_started_ = false;
  }
  for (int tap : tap_ids_)
    if (tap >= 0) {
      rte_eth_dev_stop(static_cast<uint16_t>(tap));
      rte_eth_dev_close(static_cast<uint16_t>(tap));
    }
  tap_ids_.clear();
  for (rte_ring* r : kernel_rings_) {
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
  }
  kernel_rings_.clear();
  for (rte_ring* r : inject_rings_) {
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
  }
  inject_rings_.clear();
  rte_free(rcu_);
  rcu_ = nullptr;
  rte_mempool_free(mempool_);
  mempool_ = nullptr;
  rte_eal_cleanup();
  eal_ready_ = false;
}

BuiltSnapshot Appliance::build(const ApplianceConfig& effective, const Model& model, uint64_t generation) {
  return build_snapshot(effective, model, port_macs_, ids_, generation, tsc_hz_, &maglev_cache_,
                        [this](const ResolvedService& svc, const ResolvedServicePort& port, const ResolvedBackend& b) {
                          return judge(svc, port, b);
                        });
}

std::string Appliance::health_key(const ResolvedService& svc, const ResolvedServicePort& port,
                                  const ResolvedBackend& b) const {
  const HealthSettings& h = svc.health;
  if (h.probe == HealthProbe::none) return "";
  // A pod behind its node has no route from the kernel path: it follows its
  // EndpointSlice readiness only.
  if (!b.via.is_unspecified()) return "";
  // externalTrafficPolicy Local with a healthCheckNodePort: kube-proxy's
  // /healthz on the node decides (200: local endpoints; 503: none).
  if (svc.external_traffic_policy == TrafficPolicy::Local && svc.health_check_node_port)
    return "http:" + b.address.str() + ":" + std::to_string(svc.health_check_node_port) + "/healthz";
  // A UDP or SCTP port cannot be probed by a connect: it follows its address.
  if (port.spec.protocol != L4Protocol::tcp) return "";
  if (h.probe == HealthProbe::http)
    return "http:" + b.address.str() + ":" + std::to_string(b.port) + h.http_path + "=" + std::to_string(h.http_status);
  return "tcp:" + b.address.str() + ":" + std::to_string(b.port);
}

const HealthStatus* Appliance::health_of(const ResolvedService& svc, const ResolvedServicePort& port,
                                         const ResolvedBackend& b) const {
  if (!health_) return nullptr;
  std::string key = health_key(svc, port, b);
  return key.empty() ? nullptr : health_->status(key);
}

void Appliance::refresh_address_health() {
  address_health_.clear();
  if (!health_) return;
  std::map<IpAddr, std::pair<int, int>> counts;  // up, down
  for (const ResolvedService& svc : active_.model.services)
    for (const ResolvedServicePort& port : svc.ports)
      for (const ResolvedBackend& b : port.backends) {
        // Only probes of the address itself (not kube-proxy's per-service /healthz).
        if (svc.external_traffic_policy == TrafficPolicy::Local && svc.health_check_node_port) continue;
        const HealthStatus* st = health_of(svc, port, b);
        if (!st) continue;
        if (st->state == HealthState::up) ++counts[b.address].first;
        if (st->state == HealthState::down) ++counts[b.address].second;
      }
  for (const auto& [address, c] : counts)
    address_health_[address] = c.first > 0 ? HealthState::up : c.second > 0 ? HealthState::down : HealthState::unknown;
}

std::string Appliance::address_state(const IpAddr& address) const {
  auto it = address_health_.find(address);
  return it == address_health_.end() ? "unknown" : health_state_name(it->second);
}

BackendRotation Appliance::judge(const ResolvedService& svc, const ResolvedServicePort& port,
                                 const ResolvedBackend& b) const {
  if (drained_nodes_.count(b.node)) return BackendRotation::drain;
  const HealthStatus* st = health_of(svc, port, b);
  if (!st && svc.health.probe != HealthProbe::none && b.via.is_unspecified()) {
    auto it = address_health_.find(b.address);
    if (it != address_health_.end() && it->second == HealthState::down) return BackendRotation::exclude;
    return BackendRotation::serve;
  }
  // Unknown (not probed yet) serves: a fresh start must not refuse everything.
  return st && st->state == HealthState::down ? BackendRotation::exclude : BackendRotation::serve;
}

void Appliance::update_health_targets() {
  if (!health_) return;
  std::map<std::string, HealthTarget> targets;
  for (const ResolvedService& svc : active_.model.services)
    for (const ResolvedServicePort& port : svc.ports)
      for (const ResolvedBackend& b : port.backends) {
        std::string key = health_key(svc, port, b);
        if (key.empty() || targets.count(key)) continue;
        HealthTarget t;
        t.key = key;
        t.address = b.address;
        const HealthSettings& h = svc.health;
        t.params.interval = std::chrono::milliseconds(h.interval);
        t.params.timeout = std::chrono::milliseconds(h.timeout);
        t.params.rise = h.rise;
        t.params.fall = h.fall;
        if (key.starts_with("http:") && svc.external_traffic_policy == TrafficPolicy::Local &&
            svc.health_check_node_port) {
          t.kind = ProbeKind::http;
          t.port = svc.health_check_node_port;
          t.path = "/healthz";
          t.expect_status = 200;
        } else if (h.probe == HealthProbe::http) {
          t.kind = ProbeKind::http;
          t.port = b.port;
          t.path = h.http_path;
          t.expect_status = h.http_status;
        } else {
          t.kind = ProbeKind::tcp;
          t.port = b.port;
        }
        // Probes leave from the kernel's address on the port that reaches
        // the backend; without one, the kernel's own routes (a management
        // link) carry them.
        if (b.address.is_v4()) {
          Route r = current_.snapshot ? current_.snapshot->route_to(b.address.v4_be()) : Route{};
          if (r.found && r.port < config_.dataplane.ports.size() && config_.dataplane.ports[r.port].kernel_address)
            t.source = config_.dataplane.ports[r.port].kernel_address->address;
        }
        targets.emplace(key, std::move(t));
      }
  std::vector<HealthTarget> list;
  for (auto& [key, t] : targets) list.push_back(std::move(t));
  health_->set_targets(std::move(list));
}

void Appliance::handle_health_changes() {
  if (!health_) return;
  std::vector<HealthChange> changes = health_->take_changes();
  if (changes.empty()) return;
  bool matters = false;
  for (const HealthChange& c : changes) {
    spdlog::info("health: {} {} -> {}: {}", c.key, health_state_name(c.from), health_state_name(c.to), c.reason);
    // unknown -> up changes nothing the data plane sees (unknown serves).
    matters |= !(c.from == HealthState::unknown && c.to == HealthState::up);
  }
  // The API's node states follow every change; the snapshot only the ones
  // that move traffic.
  refresh_address_health();
  if (!matters) return;
  try {
    publish(build(*active_.config, active_.model, generation_ + 1));
    ++generation_;
  } catch (const std::exception& e) {
    spdlog::error("health: cannot publish the new backend states: {}", e.what());
  }
}

void Appliance::publish(BuiltSnapshot built) {
  published_.store(built.snapshot.get(), std::memory_order_release);
  // Every worker passes a quiescent state once per loop. After the first
  // grace period no worker loads the previous snapshot any more, but bursts
  // classified under it may still be in flight in a worker's pipeline; the
  // worker completes them before its next report (run_worker). After the
  // second, nothing holds the previous snapshot, and it can go.
  rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
  rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
  current_ = std::move(built);
  maglev_cache_.prune();
}

ReloadRecord Appliance::reload(const std::string& trigger) {
  auto began = std::chrono::steady_clock::now();
  ReloadRecord r;
  r.trigger = trigger;
  r.time = utc_now_iso8601();
  LoadResult next = loader_.load(false);
  for (const ConfigError& e : next.errors) r.errors.push_back(e.format());
  r.changes = next.changes.lines;
  r.restart_required = next.restart_required;
  if (next.fatal || !next.config) {
    // A syntax error or bad settings reject the whole reload: the running
    // configuration stays untouched.
    r.ok = r.applied = false;
    r.generation = generation_;
    for (const std::string& e : r.errors) spdlog::error("reload ({}) refused: {}", trigger, e);
    last_reload_ = r;
    return r;
  }
  for (const std::string& key : r.restart_required)
    spdlog::warn("reload ({}): {} changed; it takes effect at the next start", trigger, key);
  // Settings that only take effect at start keep their running values.
  ApplianceConfig effective = config_;
  effective.forwarding.frontends = next.config->forwarding.frontends;
  effective.forwarding.backends = next.config->forwarding.backends;
  effective.forwarding.on_backend_removed = next.config->forwarding.on_backend_removed;
  effective.cluster = next.config->cluster;
  try {
    publish(build(effective, next.model, generation_ + 1));
  } catch (const std::exception& e) {
    r.errors.push_back(config_.config_file + ": " + e.what());
    r.ok = r.applied = false;
    r.generation = generation_;
    last_reload_ = r;
    return r;
  }
  ++generation_;
  next.config = effective;
  active_ = std::move(next);
  r.generation = generation_;
  r.ok = r.errors.empty();
  for (const std::string& e : r.errors) spdlog::warn("reload ({}): rejected: {}", trigger, e);
  for (const std::string& c : r.changes) spdlog::info("reload ({}): {}", trigger, c);
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began);
  spdlog::info("reload ({}) published generation {} in {} ms: {} service ports, {} Maglev tables cached ({} built so far)",
               trigger, generation_, took.count() / 1000.0, current_.service_labels.size(), maglev_cache_.size(),
               maglev_cache_.builds());
  last_reload_ = r;
  watch_config_files();
  update_health_targets();
  return r;
}

void Appliance::watch_config_files() {
  try {
    if (!watcher_) watcher_ = std::make_unique<FileWatcher>();
    std::vector<std::string> paths{config_.config_file};
    for (const std::string& m : active_.config->cluster.manifests) paths.push_back(m);
    watcher_->watch(paths);
  } catch (const std::exception& e) {
    spdlog::warn("not watching the configuration files ({}): reload with SIGHUP or nplbctl reload", e.what());
    watcher_.reset();
  }
}

void Appliance::start_api() {
  try {
    api_ = std::make_unique<ApiServer>(config_.api.listen);
  } catch (const std::exception& e) {
    fail(config_.api.where, std::string("api.listen: ") + e.what());
  }
  auto json = [](std::string body) { return HttpResponse{200, "application/json", std::move(body) + "\n"}; };
  api_->route("GET", "/v1/status", [this, json](const HttpRequest&) { return json(status_json()); });
  api_->route("GET", "/v1/services", [this, json](const HttpRequest&) { return json(services_json()); });
  api_->route("GET", "/v1/stats", [this, json](const HttpRequest&) { return json(counters_json()); });
  api_->route("GET", "/v1/nodes", [this, json](const HttpRequest&) { return json(nodes_json()); });
  api_->route("GET", "/v1/endpoints", [this, json](const HttpRequest&) { return json(endpoints_json()); });
  api_->route("POST", "/v1/reload", [this, json](const HttpRequest&) { return json(reload_json(reload("api"))); });
  // Drain: POST /v1/drain?node=NAME (undo=1 to bring it back). A drained
  // node takes no new connections; its connections keep going.
  api_->route("POST", "/v1/drain", [this, json](const HttpRequest& r) {
    auto node = r.params.find("node");
    if (node == r.params.end() || node->second.empty()) return json_error(400, "missing ?node=NAME");
    const ResolvedNode* found = nullptr;
    for (const ResolvedNode& n : active_.model.nodes)
      if (n.name == node->second) found = &n;
    if (!found) return json_error(404, "no node named \"" + node->second + "\"");
    auto undo = r.params.find("undo");
    bool draining = undo == r.params.end() || (undo->second != "1" && undo->second != "true");
    if (draining) drained_nodes_.insert(node->second);
    else drained_nodes_.erase(node->second);
    publish(build(*active_.config, active_.model, ++generation_));
    spdlog::info("node {} {}", node->second, draining ? "draining" : "back in rotation");
    JsonWriter j;
    j.begin_object();
    j.key("node").value(node->second);
    j.key("state").value(draining ? "draining" : address_state(found->address));
    j.key("generation").value(generation_);
    j.end_object();
    return json(j.str());
  });
  spdlog::info("control API on {}", api_->address());
}

std::string Appliance::reload_json(const ReloadRecord& r) const {
  JsonWriter j;
  j.begin_object();
  j.key("ok").value(r.ok);
  j.key("applied").value(r.applied);
  j.key("generation").value(r.generation);
  j.key("time").value(r.time);
  j.key("trigger").value(r.trigger);
  j.key("changes");
  write_string_array(j, r.changes);
  j.key("errors");
  write_string_array(j, r.errors);
  j.key("restart_required");
  write_string_array(j, r.restart_required);
  j.end_object();
  return j.str();
}

std::string Appliance::status_json() const {
  JsonWriter j;
  j.begin_object();
  j.key("version").value("0.1.0");
  j.key("generation").value(generation_);
  j.key("kernel").begin_object();
  j.key("to_kernel").value(kernel_rx_);
  j.key("from_kernel").value(kernel_tx_);
  j.key("dropped").value(kernel_dropped_);
  j.end_object();
  j.key("uptime_seconds")
      .value(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  j.key("workers").value(config_.dataplane.workers);
  j.key("config").value(config_.config_file);
  j.key("last_reload").raw(reload_json(last_reload_));
  j.end_object();
  return j.str();
}

std::string Appliance::services_json() const {
  JsonWriter j;
  j.begin_object();
  j.key("services").begin_array();
  for (const ResolvedService& svc : active_.model.services) {
    j.begin_object();
    j.key("namespace").value(svc.namespace_);
    j.key("name").value(svc.name);
    j.key("type").value(service_type_name(svc.type));
    j.key("frontends").begin_array();
    for (const IpAddr& f : active_.model.frontends) j.value(f.str());
    j.end_array();
    j.key("externalTrafficPolicy").value(svc.external_traffic_policy == TrafficPolicy::Local ? "Local" : "Cluster");
    j.key("sessionAffinity").value(svc.session_affinity == SessionAffinity::ClientIP ? "ClientIP" : "None");
    if (svc.session_affinity == SessionAffinity::ClientIP)
      j.key("sessionAffinityTimeoutSeconds").value(svc.affinity_timeout_seconds);
    j.key("backendKind").value(svc.backends == BackendKind::pods ? "pods" : "nodes");
    j.key("ports").begin_array();
    for (const ResolvedServicePort& port : svc.ports) {
      j.begin_object();
      j.key("name").value(port.spec.name);
      j.key("protocol").value(protocol_name(port.spec.protocol));
      j.key("port").value(unsigned(port.spec.port));
      j.key("targetPort");
      if (const auto* n = std::get_if<uint16_t>(&port.spec.target_port))
        j.value(unsigned(*n));
      else
        j.value(std::get<std::string>(port.spec.target_port));
      j.key("nodePort").value(unsigned(port.spec.node_port));
      j.key("backends").begin_array();
      for (const ResolvedBackend& b : port.backends) {
        j.begin_object();
        j.key("address").value(b.address.str());
        j.key("port").value(unsigned(b.port));
        j.key("node").value(b.node);
        j.key("state").value(b.terminating ? "terminating" : "up");
        j.end_object();
      }
      j.end_array();
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str();
}

namespace {
std::string iso8601(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
}  // namespace

std::string Appliance::nodes_json() const {
  JsonWriter j;
  j.begin_object();
  j.key("nodes").begin_array();
  for (const ResolvedNode& n : active_.model.nodes) {
    // A node's state: drained by the operator, else what its probes say
    // (up when any probe of its address succeeds, down when all fail).
    std::string state = drained_nodes_.count(n.name) ? "draining" : address_state(n.address);
    std::string last_error, last_change = last_reload_.time;
    std::chrono::system_clock::time_point newest{};
    for (const ResolvedService& svc : active_.model.services)
      for (const ResolvedServicePort& port : svc.ports)
        for (const ResolvedBackend& b : port.backends) {
          if (b.address != n.address) continue;
          const HealthStatus* st = health_of(svc, port, b);
          if (!st || st->last_change < newest) continue;
          newest = st->last_change;
          last_change = iso8601(st->last_change);
          last_error = st->last_error;
        }
    j.begin_object();
    j.key("name").value(n.name);
    j.key("address").value(n.address.str());
    j.key("state").value(state);
    j.key("last_error").value(last_error);
    j.key("last_change").value(last_change);
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str();
}

std::string Appliance::endpoints_json() const {
  JsonWriter j;
  j.begin_object();
  j.key("endpoints").begin_array();
  for (const ResolvedService& svc : active_.model.services)
    for (const ResolvedServicePort& port : svc.ports)
      for (const ResolvedBackend& b : port.backends) {
        const HealthStatus* st = health_of(svc, port, b);
        std::string state;
        if (drained_nodes_.count(b.node)) state = "draining";
        else if (st) state = health_state_name(st->state);
        else if (svc.health.probe == HealthProbe::none || !b.via.is_unspecified()) state = "up";  // not probed
        else state = address_state(b.address);
        if (b.terminating && state == "up") state = "terminating";
        j.begin_object();
        j.key("service").value(svc.namespace_ + "/" + svc.name);
        j.key("port").value(port.spec.name);
        j.key("protocol").value(protocol_name(port.spec.protocol));
        j.key("address").value(b.address.str());
        j.key("port_number").value(unsigned(b.port));
        j.key("node").value(b.node);
        j.key("state").value(state);
        j.key("probe").value(health_key(svc, port, b));
        j.key("last_error").value(st ? st->last_error : "");
        j.key("last_change").value(st ? iso8601(st->last_change) : last_reload_.time);
        j.end_object();
      }
  j.end_array();
  j.end_object();
  return j.str();
}

int Appliance::run() {
  install_signal_handlers();
  init_eal();
  check_lcores();
  create_mempool();
  setup_ports();
  setup_taps();
  for (const NeighborConfig& n : config_.dataplane.neighbors)
    if (n.ip.is_v4()) neighbors_.update(n.ip.v4_be(), n.mac, true);
  current_ = build(config_, active_.model, generation_);
  published_.store(current_.snapshot.get(), std::memory_order_release);
  last_reload_.time = utc_now_iso8601();
  last_reload_.generation = generation_;
  for (const ConfigError& e : active_.errors) last_reload_.errors.push_back(e.format());
  last_reload_.ok = last_reload_.errors.empty();
  spdlog::info("serving {} service ports on {} frontend(s) toward {} backends", current_.service_labels.size(),
               active_.model.frontends.size(), current_.backend_labels.size());
  start_api();
  start_workers();
  watch_config_files();
  try {
    health_ = std::make_unique<HealthChecker>();
    update_health_targets();
    spdlog::info("health checks: {} targets", health_->size());
  } catch (const std::exception& e) {
    fail(SourceLocation{config_.config_file, 0, 0}, std::string("health checks: ") + e.what());
  }
  resolve_next_hops(rte_rdtsc(), true);
  control_loop();

  stop_workers_.store(true);
  rte_eal_mp_wait_lcore();
  std::string counters = counters_json();
  spdlog::info("final counters: {}", counters);
  std::fputs((counters + "\n").c_str(), stdout);
  std::fflush(stdout);
  shutdown();
  return 0;
}

}  // namespace

int run_appliance(ConfigLoader& loader, LoadResult loaded, const RunOptions& options) {
  std::string config_file = loaded.config->config_file;
  try {
    Appliance appliance(loader, std::move(loaded), options);
    return appliance.run();
  } catch (const StartError& e) {
    for (const ConfigError& err : e.errors) std::fprintf(stderr, "%s\n", err.format().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", config_file.c_str(), e.what());
    return 1;
  }
}

}  // namespace nplb
