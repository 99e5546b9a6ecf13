// The configuration as the control thread understands it: appliance settings,
// the Kubernetes objects they point at, and the resolved model the data plane
// is built from. Everything here is plain data; loading lives in config.cpp and
// manifests.cpp, resolution in resolver.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "dataplane/net_types.hpp"

namespace nplb {

// Where a value came from, for "file:line:column: message".
struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
};

struct ConfigError {
  SourceLocation where;
  std::string message;
  std::string format() const;  // "file:line:column: message"
};

using Milliseconds = uint64_t;

// ---------------------------------------------------------------- appliance settings

struct PortConfig {
  std::string name;
  std::string device;               // PCI address or vdev spec ("net_pcap0,rx_pcap=...")
  std::vector<Cidr> addresses;      // the appliance answers ARP for these
  std::optional<MacAddr> mac;
  std::optional<IpAddr> gateway;    // next hop for destinations outside the port's subnets
  SourceLocation where;
  SourceLocation device_where;
  // The kernel's address on this port's link (health probes, BGP, ssh):
  // nplb creates a tap interface "nplb-NAME" holding it; frames to it go to
  // the kernel, frames the kernel sends leave by this port.
  std::optional<Cidr> kernel_address;
  SourceLocation kernel_address_where;
};

struct NeighborConfig {
  IpAddr ip;
  MacAddr mac;
  SourceLocation where;
};

struct FlowTimeouts {
  Milliseconds tcp_established = 300'000;
  Milliseconds tcp_transitory = 10'000;  // SYN seen, or closing (FIN/RST)
  Milliseconds udp = 30'000;
};

struct FlowConfig {
  uint32_t capacity = 1u << 20;  // per worker, connections (each uses two entries)
  FlowTimeouts timeouts;
  // Up to this many connections a worker's table stays in the core's caches
  // and each burst goes through at once; above it bursts are pipelined
  // (BurstPipeline). The default is 1 MiB of entries, a core's L2 on
  // current x86: set it to the L2 size / 128 bytes on other cores.
  uint32_t pipeline_above = 8192;
};

// How an idle worker backs off: spin with pause for `spin`, then sleep `sleep`
// between polls. Never while packets wait: any packet resets the idle clock.
struct IdleConfig {
  Milliseconds spin = 10;
  uint32_t sleep_us = 100;
};

struct DataplaneConfig {
  std::vector<std::string> eal;
  uint32_t workers = 1;
  std::vector<PortConfig> ports;
  std::vector<NeighborConfig> neighbors;
  FlowConfig flows;
  IdleConfig idle;
  uint32_t mbufs = 8191;            // mempool size
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  SourceLocation workers_where;     // for start-time errors about lcores
  SourceLocation eal_where;         // ... about EAL initialisation
  SourceLocation mbufs_where;       // ... about the mempool
};

enum class ForwardingMode { nat };

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  uint32_t size() const { return uint32_t(last) - first + 1; }
  bool contains(uint32_t p) const { return p >= first && p <= last; }
};

struct MaglevConfig {
  uint64_t seed = 0x6e706c62;     // "nplb"; appliances behind one ECMP group share it
  // Prime; raised to the next prime >= 100 x backends (the paper's <= 1%
  // imbalance). Small by default: with pod backends every service has a
  // table of its own (10,000 services x 65537 slots would be 2.6 GB).
  uint32_t min_table_size = 1021;
  uint32_t max_table_size = 655373;
};

enum class BackendKind { nodes, pods };
enum class OnBackendRemoved { keep, reset };

struct ForwardingConfig {
  ForwardingMode mode = ForwardingMode::nat;
  BackendKind backends = BackendKind::nodes;  // per service: annotation nplb.io/backends
  // What happens to established TCP connections whose backend left the
  // service: keep forwarding until they end or time out, or reset them.
  // UDP flows always move to a live backend at once.
  OnBackendRemoved on_backend_removed = OnBackendRemoved::keep;
  std::vector<IpAddr> frontends;   // VIPs clients connect to
  std::vector<IpAddr> snat;        // source addresses toward backends
  PortRange snat_ports{1024, 65535};
  MaglevConfig maglev;
  SourceLocation frontends_where;
};

// The compact hand-written node list (`cluster.nodes`).
struct CompactNode {
  std::string name;
  IpAddr address;
  SourceLocation where;
};

struct ClusterConfig {
  std::vector<CompactNode> nodes;
  std::vector<std::string> manifests;  // resolved against the config file's folder
  PortRange node_port_range{30000, 32767};
  std::vector<SourceLocation> manifests_where;
};

// Active health checks of backends (control thread, kernel sockets).
enum class HealthProbe { none, tcp, http };
struct HealthSettings {
  HealthProbe probe = HealthProbe::tcp;  // none: every backend counts as up
  Milliseconds interval = 1000;
  Milliseconds timeout = 500;
  uint32_t rise = 2;
  uint32_t fall = 2;
  std::string http_path = "/";
  int http_status = 200;
  bool operator==(const HealthSettings&) const = default;
};

struct ApiConfig {
  // "127.0.0.1:9080", "[::1]:9080" or "unix:/run/nplb/api.sock". Loopback only.
  std::string listen = "127.0.0.1:9080";
  SourceLocation where;
};

struct ApplianceConfig {
  std::string config_file;  // as given on the command line
  std::string base_dir;     // the config file's folder: relative paths resolve here
  DataplaneConfig dataplane;
  ForwardingConfig forwarding;
  ClusterConfig cluster;
  ApiConfig api;
  HealthSettings health;    // defaults; annotations nplb.io/health-* override per service
  std::string state_dir;    // where allocations persist (resolved); empty: not configured
  SourceLocation state_dir_where;
};

// ---------------------------------------------------------------- Kubernetes objects

struct ObjectMeta {
  std::string namespace_ = "default";
  std::string name;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  SourceLocation where;  // the object's first line
};

enum class ServiceType { ClusterIP, NodePort, LoadBalancer, ExternalName };
std::string_view service_type_name(ServiceType t);

enum class TrafficPolicy { Cluster, Local };
enum class SessionAffinity { None, ClientIP };

// IntOrString, as Kubernetes' targetPort.
using TargetPort = std::variant<uint16_t, std::string>;

struct ServicePortSpec {
  std::string name;
  L4Protocol protocol = L4Protocol::tcp;
  uint16_t port = 0;
  TargetPort target_port = uint16_t{0};  // defaults to `port` when absent
  uint16_t node_port = 0;                // 0: not given
  SourceLocation where;
  SourceLocation node_port_where;
};

struct Service {
  ObjectMeta meta;
  ServiceType type = ServiceType::ClusterIP;
  std::vector<ServicePortSpec> ports;
  std::string cluster_ip;  // "None" marks a headless service
  TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
  uint16_t health_check_node_port = 0;
  SessionAffinity session_affinity = SessionAffinity::None;
  uint32_t affinity_timeout_seconds = 10800;
  SourceLocation health_check_node_port_where;
};

struct NodeAddress {
  std::string type;  // InternalIP, ExternalIP, Hostname
  std::string address;
};

struct Node {
  ObjectMeta meta;
  std::vector<NodeAddress> addresses;
  bool ready = true;
  bool unschedulable = false;
  std::vector<Cidr> pod_cidrs;
};

struct EndpointPort {
  std::string name;
  L4Protocol protocol = L4Protocol::tcp;
  uint16_t port = 0;
};

struct Endpoint {
  std::vector<IpAddr> addresses;
  std::string node_name;
  bool ready = true;
  bool serving = true;
  bool terminating = false;
};

struct EndpointSlice {
  ObjectMeta meta;
  std::string service_name;  // label kubernetes.io/service-name
  IpFamily address_type = IpFamily::v4;
  std::vector<EndpointPort> ports;
  std::vector<Endpoint> endpoints;
};

struct ClusterObjects {
  std::vector<Service> services;
  std::vector<Node> nodes;
  std::vector<EndpointSlice> endpoint_slices;
};

// ---------------------------------------------------------------- resolved model

struct ResolvedNode {
  std::string name;
  IpAddr address;
};

// A backend the data plane forwards to: a node (NodeIP:nodePort) or a pod.
struct ResolvedBackend {
  IpAddr address;
  uint16_t port = 0;
  std::string node;  // the node it is, or the node it lives on
  // Next hop when the backend is not on a link of the appliance: a pod is
  // reached through its node. Unspecified: route to `address` itself.
  IpAddr via;
  bool terminating = false;  // a serving-but-terminating endpoint, used only when no ready one exists
  auto operator<=>(const ResolvedBackend&) const = default;
};

struct ResolvedServicePort {
  ServicePortSpec spec;               // node_port filled in
  std::vector<ResolvedBackend> backends;
  bool node_port_allocated = false;   // nplb allocated spec.node_port (pod backends, none written)
};

struct ResolvedService {
  std::string namespace_;
  std::string name;
  ServiceType type = ServiceType::NodePort;
  TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
  SessionAffinity session_affinity = SessionAffinity::None;
  uint32_t affinity_timeout_seconds = 10800;
  BackendKind backends = BackendKind::nodes;
  uint16_t health_check_node_port = 0;  // kube-proxy's /healthz for Local services
  HealthSettings health;                // the defaults with this service's annotations applied
  std::vector<ResolvedServicePort> ports;
};

// Only the services nplb exposes (NodePort and LoadBalancer).
struct Model {
  std::vector<IpAddr> frontends;
  std::vector<ResolvedNode> nodes;
  std::vector<ResolvedService> services;
};

// What a load changed against the previous one (ConfigLoader): one human
// line per change ("service default/web: updated (backends +2 -1)"), counts,
// and the services touched, so a publisher can rebuild only those.
struct ModelChanges {
  bool first_load = true;
  size_t services_added = 0, services_updated = 0, services_removed = 0;
  size_t nodes_added = 0, nodes_removed = 0;
  size_t frontends_changed = 0;
  std::vector<std::string> changed_services;  // "namespace/name": added, updated or removed
  std::vector<std::string> lines;
  bool empty() const { return lines.empty(); }
};

// The result of loading a config file: settings, objects, model, and every
// error found. `fatal` errors (YAML syntax, appliance settings) mean nothing
// may start; object errors reject only the object they name.
struct LoadResult {
  std::optional<ApplianceConfig> config;
  ClusterObjects objects;
  Model model;
  std::vector<ConfigError> errors;
  // Not errors, said once: "file:line: skipped kind ConfigMap ...".
  std::vector<std::string> notes;
  bool fatal = false;
  bool ok() const { return errors.empty(); }
  // Filled by ConfigLoader (empty from load_configuration):
  ModelChanges changes;
  // Settings changed since the previous load that take effect only at start
  // ("dataplane.workers", "api.listen"): the running appliance keeps the old value.
  std::vector<std::string> restart_required;
  size_t files_parsed = 0;  // manifest files parsed by this load
  size_t files_reused = 0;  // ... taken unchanged from the previous load
};

// Loads FILE and everything it names, checking all that needs no EAL.
LoadResult load_configuration(const std::string& config_file);

// The resolved model as `nplb --check` prints it.
std::string model_to_json(const Model& model);

}  // namespace nplb
