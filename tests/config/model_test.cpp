// The Kubernetes object model and nodePort allocation, behaviour by behaviour
// (shared/reference/kubernetes-nodeport.md, "The object model" and "nodePort
// allocation"), and the long-lived ConfigLoader: reloads, previous versions,
// the file cache, change summaries, restart-only settings, persisted
// allocations. The Scale tests run only with NPLB_SCALE=1 (meson suite 'scale').
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "control/config_loader.hpp"
#include "control/snapshot_builder.hpp"
#include "control/model.hpp"
#include "control/nodeport_store.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {
namespace {

namespace fs = std::filesystem;

// Pod backends, a state_dir, nodes from Node objects.
constexpr const char* kConfig = R"(dataplane:
  eal: ["--no-huge", "--no-shconf"]
  workers: 1
  ports:
    - name: lan
      device: "net_null0"
      addresses: ["203.0.113.1/24", "198.51.100.1/24"]
forwarding:
  backends: pods
  frontends: ["203.0.113.10"]
  snat: ["198.51.100.2"]
cluster:
  node_port_range: 30000-32767
  manifests: ["manifests"]
state_dir: state
)";

// n1, n2 ready with podCIDRs; n3 cordoned (still a backend); n4 excluded
// from load balancers; n5 not ready.
constexpr const char* kNodes = R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
  spec: {podCIDRs: ["10.244.1.0/24"]}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.21}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: n2}
  spec: {podCIDRs: ["10.244.2.0/24"]}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.22}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: n3}
  spec: {unschedulable: true, podCIDRs: ["10.244.3.0/24"]}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.23}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata:
    name: n4
    labels: {node.kubernetes.io/exclude-from-external-load-balancers: ""}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.24}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: n5}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.25}]
    conditions: [{type: Ready, status: "False"}]
)";

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("test bug: '" + from + "' not in text");
  for (; at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  return text;
}

std::string service(const std::string& name, const std::string& spec_extra, const std::string& ports,
                    const std::string& meta_extra = "") {
  return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  namespace: default\n" + meta_extra +
         "spec:\n  type: NodePort\n" + spec_extra + "  ports:\n" + ports;
}

std::string slice(const std::string& name, const std::string& service_name, const std::string& ports,
                  const std::string& endpoints) {
  return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " + name +
         "\n  namespace: default\n  labels: {kubernetes.io/service-name: " + service_name +
         "}\naddressType: IPv4\nports: " + ports + "\nendpoints:\n" + endpoints;
}

std::string endpoint(const std::string& ip, const std::string& node, bool ready = true, bool terminating = false) {
  return "- addresses: [\"" + ip + "\"]\n" + (node.empty() ? "" : "  nodeName: " + node + "\n") +
         "  conditions: {ready: " + (ready ? "true" : "false") + ", serving: true, terminating: " +
         (terminating ? "true" : "false") + "}\n";
}

std::string listing(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += "\n  " + e.format();
  return out.empty() ? " (none)" : out;
}

::testing::AssertionResult NoErrors(const LoadResult& r) {
  if (r.errors.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "errors:" << listing(r);
}

// An error whose message (without file:line) is exactly `message`.
::testing::AssertionResult HasMessage(const LoadResult& r, const std::string& message) {
  for (const auto& e : r.errors)
    if (e.message == message) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "missing error:\n  " << message << "\nerrors:" << listing(r);
}

const ResolvedService* find(const LoadResult& r, const std::string& name) {
  for (const auto& s : r.model.services)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> backend_list(const ResolvedServicePort& p) {
  std::vector<std::string> out;
  for (const auto& b : p.backends)
    out.push_back(b.address.str() + ":" + std::to_string(b.port) + (b.via.is_unspecified() ? "" : " via " + b.via.str()) +
                  (b.terminating ? " terminating" : ""));
  return out;
}

using Lines = std::vector<std::string>;

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "nplb-model-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    write("nplb.yaml", kConfig);
    write("manifests/00-nodes.yaml", kNodes);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  void write(const std::string& name, const std::string& text) {
    fs::create_directories(fs::path(path(name)).parent_path());
    std::ofstream(path(name), std::ios::binary) << text;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path(name));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void services(const std::string& text) { write("manifests/10-services.yaml", text); }
  LoadResult load_once(bool dry_run = false) { return ConfigLoader(path("nplb.yaml")).load(dry_run); }
  // The stored allocations, read back from the file.
  NodePortAllocations stored() const {
    NodePortStore store;
    auto error = store.open(path("state"));
    EXPECT_FALSE(error) << error->format();
    return store.allocations();
  }

  std::string dir_;
};

// ================================================================ settings

TEST_F(ModelTest, NewSettingsKeysAndTheirDefaults) {
  write("nplb.yaml", std::string(kConfig) + "api: {listen: \"[::1]:9999\"}\n");
  write("manifests/00-nodes.yaml", kNodes);
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(r.config->forwarding.backends, BackendKind::pods);
  EXPECT_EQ(r.config->forwarding.on_backend_removed, OnBackendRemoved::keep);
  EXPECT_EQ(r.config->api.listen, "[::1]:9999");
  EXPECT_EQ(r.config->state_dir, path("state"));

  write("nplb.yaml", replace_all(kConfig, "  backends: pods\n", "  on_backend_removed: reset\n") +
                         "api:\n  listen: unix:run/api.sock\n");
  r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(r.config->forwarding.backends, BackendKind::nodes);
  EXPECT_EQ(r.config->forwarding.on_backend_removed, OnBackendRemoved::reset);
  EXPECT_EQ(r.config->api.listen, "unix:" + path("run/api.sock"));
}

TEST_F(ModelTest, BadSettingsAreFatalWithPreciseMessages) {
  write("nplb.yaml", replace_all(kConfig, "  backends: pods\n", "  backends: pod\n  on_backend_removed: drop\n") +
                         "api: {listen: \"0.0.0.0:9080\"}\n");
  auto r = load_once(true);
  EXPECT_TRUE(r.fatal);
  EXPECT_TRUE(HasMessage(r, "forwarding.backends: unsupported value \"pod\": supported values: \"nodes\", \"pods\""));
  EXPECT_TRUE(HasMessage(r, "forwarding.on_backend_removed: unsupported value \"drop\": supported values: \"keep\", \"reset\""));
  EXPECT_TRUE(HasMessage(r, "api.listen: 0.0.0.0 is not a loopback address: the control API has no authentication; "
                            "listen on 127.0.0.1:PORT, [::1]:PORT or unix:/path"));
  write("nplb.yaml", std::string(kConfig) + "api: {listen: localhost}\napi_key: x\n");
  r = load_once(true);
  EXPECT_TRUE(r.fatal);
  EXPECT_TRUE(HasMessage(r, "api.listen: expected \"IP:PORT\" on a loopback address (IPv6 as \"[::1]:PORT\") or "
                            "\"unix:/path\", got \"localhost\""));
  bool unknown = false;
  for (const auto& e : r.errors) unknown |= e.message.find("unknown top-level key 'api_key'") != std::string::npos;
  EXPECT_TRUE(unknown) << listing(r);
}

// ================================================================ the object model

TEST_F(ModelTest, OnlyNodePortAndLoadBalancerAreExposed) {
  const std::string port = "  - {port: 80, nodePort: 30080}\n";
  services(service("np", "", "  - {port: 80, nodePort: 30080}\n") + "---\n" +
           replace_all(service("lb", "", "  - {port: 80, nodePort: 30081}\n"), "NodePort", "LoadBalancer") + "---\n" +
           replace_all(service("cip", "", "  - {port: 80}\n"), "NodePort", "ClusterIP") + "---\n" +
           "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: a.example}\n---\n" +
           service("other-proxy", "", "  - {port: 80, nodePort: 30082}\n",
                   "  labels: {service.kubernetes.io/service-proxy-name: cilium}\n") + "---\n" +
           service("headless", "", "  - {port: 80, nodePort: 30083}\n", "  labels: {service.kubernetes.io/headless: \"\"}\n"));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  ASSERT_EQ(r.model.services.size(), 2u);
  EXPECT_EQ(r.model.services[0].name, "lb");
  EXPECT_EQ(r.model.services[0].type, ServiceType::LoadBalancer);
  EXPECT_EQ(r.model.services[1].name, "np");
  (void)port;
}

TEST_F(ModelTest, SeveralPortsNeedUniqueNames) {
  services(service("web", "", "  - {port: 80, nodePort: 30080}\n  - {port: 443, nodePort: 30443}\n") + "---\n" +
           service("dup", "", "  - {name: a, port: 80, nodePort: 30090}\n  - {name: a, port: 443, nodePort: 30091}\n"));
  auto r = load_once(true);
  EXPECT_TRUE(HasMessage(r, "Service default/web: spec.ports[0].name: Required value"));
  EXPECT_TRUE(HasMessage(r, "Service default/web: spec.ports[1].name: Required value"));
  EXPECT_TRUE(HasMessage(r, "Service default/dup: spec.ports[1].name: Duplicate value: \"a\""));
  EXPECT_TRUE(r.model.services.empty());
}

TEST_F(ModelTest, SamePortForTcpAndUdpGetsTwoAllocatedNodePorts) {
  services(service("dns", "", "  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n"
                              "  - {name: sctp, port: 53, protocol: SCTP, nodePort: 30053}\n"));
  auto r = load_once();
  ASSERT_TRUE(NoErrors(r));
  const auto* dns = find(r, "dns");
  ASSERT_TRUE(dns);
  ASSERT_EQ(dns->ports.size(), 3u);
  EXPECT_EQ(dns->ports[0].spec.protocol, L4Protocol::udp);
  EXPECT_TRUE(dns->ports[0].node_port_allocated);
  EXPECT_TRUE(dns->ports[1].node_port_allocated);
  EXPECT_NE(dns->ports[0].spec.node_port, dns->ports[1].spec.node_port);
  EXPECT_FALSE(dns->ports[2].node_port_allocated);
  EXPECT_EQ(dns->ports[2].spec.protocol, L4Protocol::sctp);
  EXPECT_EQ(stored().size(), 2u);
  EXPECT_TRUE(stored().contains("default/dns/dns/UDP"));
  EXPECT_TRUE(stored().contains("default/dns/dns-tcp/TCP"));
}

TEST_F(ModelTest, NamedTargetPortIsResolvedPerEndpointSlice) {
  services(service("web", "", "  - {name: web, port: 80, targetPort: http, nodePort: 30080}\n") + "---\n" +
           // The EndpointSlice controller names slice ports after the service port...
           slice("web-a", "web", "[{name: web, port: 8080}]", endpoint("10.244.1.5", "n1")) + "---\n" +
           // ... hand-written slices may name them after the targetPort.
           slice("web-b", "web", "[{name: http, port: 9090}]", endpoint("10.244.2.5", "n2")) + "---\n" +
           // No port of either name: these pods are not backends of the port.
           slice("web-c", "web", "[{name: metrics, port: 9100}]", endpoint("10.244.2.6", "n2")));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(backend_list(find(r, "web")->ports[0]),
            (Lines{"10.244.1.5:8080 via 198.51.100.21", "10.244.2.5:9090 via 198.51.100.22"}));
}

TEST_F(ModelTest, NumericTargetPortAndPodNextHops) {
  write("nplb.yaml", std::string(kConfig));
  services(service("web", "", "  - {name: web, port: 80, targetPort: 8080, nodePort: 30080}\n") + "---\n" +
           slice("web-a", "web", "[]",
                 endpoint("10.244.1.5", "n2") +   // podCIDR of n1 wins over nodeName
                     endpoint("10.9.0.7", "n2") +  // no podCIDR: through its node
                     endpoint("198.51.100.77", "n1") +  // on our link: no next hop (routed clusters)
                     endpoint("10.8.0.1", "") +    // no way to reach it: skipped with a note
                     endpoint("10.8.0.2", "ghost")));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(backend_list(find(r, "web")->ports[0]),
            (Lines{"10.9.0.7:8080 via 198.51.100.22", "10.244.1.5:8080 via 198.51.100.21", "198.51.100.77:8080"}));
  EXPECT_EQ(find(r, "web")->ports[0].backends[0].node, "n2");
  bool noted = false;
  for (const auto& n : r.notes)
    noted |= n.find("Service default/web: 2 endpoint(s) skipped") != std::string::npos &&
             n.find("(first: 10.8.0.1)") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST_F(ModelTest, TerminatingEndpointsOnlyWhenNoReadyOne) {
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           slice("web-a", "web", "[{name: web, port: 8080}]",
                 endpoint("10.244.1.5", "n1") + endpoint("10.244.2.5", "n2", false, true) +
                     endpoint("10.244.2.6", "n2", false, false)) +
           "---\n" + service("old", "", "  - {name: web, port: 80, nodePort: 30081}\n") + "---\n" +
           slice("old-a", "old", "[{name: web, port: 8080}]",
                 endpoint("10.244.1.7", "n1", false, true) + endpoint("10.244.2.7", "n2", false, false)));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(backend_list(find(r, "web")->ports[0]), (Lines{"10.244.1.5:8080 via 198.51.100.21"}));
  EXPECT_EQ(backend_list(find(r, "old")->ports[0]), (Lines{"10.244.1.7:8080 via 198.51.100.21 terminating"}));
}

TEST_F(ModelTest, NodeBackendsEligibilityExcludeLabelAndUnschedulable) {
  write("nplb.yaml", replace_all(kConfig, "  backends: pods\n", ""));
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n"));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  // n3 is cordoned but serves (KEP-3458); n4 is excluded; n5 is not ready.
  EXPECT_EQ(backend_list(find(r, "web")->ports[0]),
            (Lines{"198.51.100.21:30080", "198.51.100.22:30080", "198.51.100.23:30080"}));
  EXPECT_EQ(find(r, "web")->backends, BackendKind::nodes);
}

TEST_F(ModelTest, ExternalTrafficPolicyLocalWithNodeBackends) {
  write("nplb.yaml", replace_all(kConfig, "  backends: pods\n", ""));
  services(replace_all(service("web", "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n",
                               "  - {name: web, port: 80, nodePort: 30080}\n"),
                       "type: NodePort", "type: LoadBalancer") +
           "---\n" +
           slice("web-a", "web", "[{name: web, port: 8080}]",
                 endpoint("10.244.2.5", "n2") + endpoint("10.244.2.6", "n2") +
                     endpoint("10.244.1.5", "n1", false, true)) +
           "---\n" + service("drain", "  externalTrafficPolicy: Local\n", "  - {name: web, port: 80, nodePort: 30081}\n") +
           "---\n" + slice("drain-a", "drain", "[{name: web, port: 8080}]", endpoint("10.244.3.5", "n3", false, true)));
  auto r = load_once(true);
  ASSERT_TRUE(NoErrors(r));
  const auto* web = find(r, "web");
  EXPECT_EQ(backend_list(web->ports[0]), (Lines{"198.51.100.22:30080"}));
  EXPECT_EQ(web->health_check_node_port, 32000);
  EXPECT_EQ(web->external_traffic_policy, TrafficPolicy::Local);
  // Only terminating local endpoints anywhere: those nodes, marked terminating.
  EXPECT_EQ(backend_list(find(r, "drain")->ports[0]), (Lines{"198.51.100.23:30081 terminating"}));
}

TEST_F(ModelTest, BackendsAnnotationOverridesTheDefault) {
  services(service("by-node", "", "  - {name: web, port: 80, nodePort: 30080}\n", "  annotations: {nplb.io/backends: nodes}\n") +
           "---\n" + service("bad", "", "  - {name: web, port: 80, nodePort: 30081}\n", "  annotations: {nplb.io/backends: pod}\n") +
           "---\n" + slice("by-node-a", "by-node", "[{name: web, port: 8080}]", endpoint("10.244.1.5", "n1")));
  auto r = load_once(true);
  EXPECT_EQ(find(r, "by-node")->backends, BackendKind::nodes);
  EXPECT_EQ(find(r, "by-node")->ports[0].backends.size(), 3u);
  EXPECT_FALSE(find(r, "bad"));
  EXPECT_TRUE(HasMessage(r, "Service default/bad: metadata.annotations[nplb.io/backends]: Unsupported value: \"pod\": "
                            "supported values: \"nodes\", \"pods\""));
}

TEST_F(ModelTest, SessionAffinityTimeoutDefaultAndRange) {
  services(service("a", "  sessionAffinity: ClientIP\n", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           service("b", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n",
                   "  - {name: web, port: 80, nodePort: 30081}\n"));
  auto r = load_once(true);
  EXPECT_EQ(find(r, "a")->session_affinity, SessionAffinity::ClientIP);
  EXPECT_EQ(find(r, "a")->affinity_timeout_seconds, 10800u);
  EXPECT_TRUE(HasMessage(r, "Service default/b: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: "
                            "86401: must be greater than 0 and less than 86400"));
}

// ================================================================ nodePort allocation

TEST_F(ModelTest, RangeAndCollisionMessagesAreKubernetes) {
  services(service("a", "", "  - {name: web, port: 80, nodePort: 40000}\n") + "---\n" +
           service("b", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           service("c", "", "  - {name: web, port: 80, nodePort: 30080}\n"));
  auto r = load_once(true);
  EXPECT_TRUE(HasMessage(r, "Service default/a: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in "
                            "the valid range. The range of valid ports is 30000-32767"));
  EXPECT_TRUE(HasMessage(r, "Service default/c: spec.ports[0].nodePort: Invalid value: 30080: provided port is "
                            "already allocated"));
  ASSERT_EQ(r.model.services.size(), 1u);
  EXPECT_EQ(r.model.services[0].name, "b");  // the first holder keeps it
}

TEST_F(ModelTest, MissingNodePortWithNodeBackendsOrWithoutStateDir) {
  write("nplb.yaml", replace_all(kConfig, "state_dir: state\n", ""));
  services(service("web", "", "  - {name: web, port: 80}\n") + "---\n" +
           service("node", "", "  - {name: web, port: 80}\n", "  annotations: {nplb.io/backends: nodes}\n"));
  auto r = load_once();
  EXPECT_TRUE(HasMessage(r, "Service default/web: spec.ports[0].nodePort: Required value: with pod backends nplb "
                            "allocates the nodePort itself and must keep it across restarts: set state_dir in the "
                            "configuration, or write a nodePort here"));
  EXPECT_TRUE(HasMessage(r, "Service default/node: spec.ports[0].nodePort: Required value: nplb sends to "
                            "NodeIP:nodePort, and only the cluster knows the port it allocated; write that nodePort "
                            "here (kubectl get service node -n default -o yaml prints it)"));
  EXPECT_FALSE(fs::exists(path("state")));
}

TEST_F(ModelTest, StaticAndDynamicBands) {
  EXPECT_EQ(node_port_static_band({30000, 32767}), 86u);    // 2768/32
  EXPECT_EQ(node_port_static_band({30000, 30099}), 16u);    // at least 16
  EXPECT_EQ(node_port_static_band({20000, 60000}), 128u);   // at most 128
  EXPECT_EQ(node_port_static_band({30000, 30015}), 0u);     // too small to split
  // Range of 100: static band 30000-30015, dynamic band 30016-30099 (84 ports).
  write("nplb.yaml", replace_all(kConfig, "30000-32767", "30000-30099"));
  std::string text;
  for (int i = 0; i < 85; ++i) text += service("s" + std::to_string(i), "", "  - {name: web, port: 80}\n") + "---\n";
  text += service("requested", "", "  - {name: web, port: 80, nodePort: 30005}\n") + "---\n";
  services(text);
  auto r = load_once();
  ASSERT_TRUE(NoErrors(r));
  int upper = 0, lower = 0;
  for (const auto& s : r.model.services) {
    if (s.name == "requested") continue;
    uint16_t p = s.ports[0].spec.node_port;
    (p >= 30016 ? upper : lower)++;
  }
  EXPECT_EQ(upper, 84);  // the dynamic band first, until full
  EXPECT_EQ(lower, 1);   // then the static band
  // A full range: Kubernetes' words.
  for (int i = 85; i < 101; ++i) text += service("s" + std::to_string(i), "", "  - {name: web, port: 80}\n") + "---\n";
  services(text);
  r = ConfigLoader(path("nplb.yaml")).load();
  EXPECT_TRUE(HasMessage(r, "Service default/s100: spec.ports[0].nodePort: Internal error: failed to allocate a "
                            "nodePort: range is full"));
}

TEST_F(ModelTest, AllocationsAreStableAcrossReloadsAndRestarts) {
  services(service("web", "", "  - {name: web, port: 80}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  auto first = loader.load();
  ASSERT_TRUE(NoErrors(first));
  uint16_t port = find(first, "web")->ports[0].spec.node_port;
  EXPECT_GE(port, 30000 + 86);  // dynamic band
  // Other services come and go, and one requests nothing: web keeps its port.
  std::string more;
  for (int i = 0; i < 40; ++i) more += "---\n" + service("x" + std::to_string(i), "", "  - {name: web, port: 80}\n");
  services(more.substr(4) + "---\n" + service("web", "", "  - {name: web, port: 80}\n"));
  auto second = loader.load();
  ASSERT_TRUE(NoErrors(second));
  EXPECT_EQ(find(second, "web")->ports[0].spec.node_port, port);
  // A restart: a new loader over the same state_dir.
  auto restarted = ConfigLoader(path("nplb.yaml")).load();
  ASSERT_TRUE(NoErrors(restarted));
  EXPECT_EQ(find(restarted, "web")->ports[0].spec.node_port, port);
  for (const auto& s : second.model.services)
    EXPECT_EQ(find(restarted, s.name)->ports[0].spec.node_port, s.ports[0].spec.node_port) << s.name;
  EXPECT_EQ(stored().at("default/web/web/TCP"), port);
}

TEST_F(ModelTest, AllocationsAreReleasedOnDeleteAndOnTypeChange) {
  services(service("web", "", "  - {name: web, port: 80}\n") + "---\n" + service("api", "", "  - {name: web, port: 80}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(loader.load()));
  EXPECT_EQ(stored().size(), 2u);
  services(replace_all(service("web", "", "  - {name: web, port: 80}\n"), "NodePort", "ClusterIP") + "---\n" +
           service("api", "", "  - {name: web, port: 80}\n"));
  ASSERT_TRUE(NoErrors(loader.load()));
  EXPECT_EQ(stored(), (NodePortAllocations{{"default/api/web/TCP", stored().at("default/api/web/TCP")}}));
  services("");
  ASSERT_TRUE(NoErrors(loader.load()));
  EXPECT_TRUE(stored().empty());
}

TEST_F(ModelTest, StateFileIsWrittenAtomicallyAsJson) {
  services(service("web", "", "  - {name: web, port: 80}\n  - {name: alt, port: 81}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(loader.load()));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(path("state"))) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, (Lines{"nodeports.json"}));  // no temporary left behind
  std::string text = read("state/nodeports.json");
  EXPECT_TRUE(text.starts_with("{\"version\": 1, \"nodePorts\": {\"default/web/alt/TCP\": ")) << text;
  yaml::YamlFile parsed = yaml::parse_text(text, "nodeports.json");
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(stored().size(), 2u);
  // Unchanged allocations are not written again.
  size_t writes = loader.node_ports().writes();
  ASSERT_TRUE(NoErrors(loader.load()));
  EXPECT_EQ(loader.node_ports().writes(), writes);
  // A damaged file is never silently reallocated over.
  write("state/nodeports.json", "{\"nodePorts\": {\"default/web/web/TCP\": 70000}}");
  auto r = ConfigLoader(path("nplb.yaml")).load();
  EXPECT_TRUE(r.fatal);
}

TEST_F(ModelTest, DryRunAndCheckWriteNothing) {
  services(service("web", "", "  - {name: web, port: 80}\n"));
  auto r = ConfigLoader(path("nplb.yaml")).load(/*dry_run=*/true);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_NE(find(r, "web")->ports[0].spec.node_port, 0);
  EXPECT_FALSE(fs::exists(path("state")));
  auto checked = load_configuration(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(checked));
  EXPECT_FALSE(fs::exists(path("state")));
  // After a real load, --check shows the stored port.
  auto real = ConfigLoader(path("nplb.yaml")).load();
  EXPECT_EQ(find(load_configuration(path("nplb.yaml")), "web")->ports[0].spec.node_port,
            find(real, "web")->ports[0].spec.node_port);
}

// ================================================================ reload semantics

TEST_F(ModelTest, InvalidUpdateKeepsThePreviousVersion) {
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           service("api", "", "  - {name: web, port: 80, nodePort: 30090}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(loader.load()));
  // A typo in web, and api asks for a port web holds.
  services(service("web", "", "  - {name: web, port: 0, nodePort: 30080}\n") + "---\n" +
           service("api", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           service("new", "", "  - {name: web, port: 80, nodePort: 30091, protocol: QUIC}\n"));
  auto r = loader.load();
  EXPECT_FALSE(r.fatal);
  EXPECT_TRUE(HasMessage(r, "Service default/web: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, "
                            "inclusive; keeping the previous version"));
  EXPECT_TRUE(HasMessage(r, "Service default/api: spec.ports[0].nodePort: Invalid value: 30080: provided port is "
                            "already allocated; keeping the previous version"));
  EXPECT_TRUE(HasMessage(r, "Service default/new: spec.ports[0].protocol: Unsupported value: \"QUIC\": supported "
                            "values: \"SCTP\", \"TCP\", \"UDP\""));
  ASSERT_TRUE(find(r, "web"));
  EXPECT_EQ(find(r, "web")->ports[0].spec.port, 80);
  EXPECT_EQ(find(r, "api")->ports[0].spec.node_port, 30090);
  EXPECT_FALSE(find(r, "new"));
  EXPECT_TRUE(r.changes.empty()) << r.changes.lines[0];
  // A first load has no previous version to keep.
  auto fresh = ConfigLoader(path("nplb.yaml")).load(true);
  EXPECT_FALSE(find(fresh, "web"));
  EXPECT_TRUE(find(fresh, "api"));
}

TEST_F(ModelTest, UnchangedFilesAreNotParsedAgain) {
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n"));
  write("manifests/20-more.yaml", service("api", "", "  - {name: web, port: 80, nodePort: 30090}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  auto first = loader.load();
  EXPECT_EQ(first.files_parsed, 3u);
  auto second = loader.load();
  EXPECT_EQ(second.files_parsed, 0u);
  EXPECT_EQ(second.files_reused, 3u);
  EXPECT_TRUE(second.changes.empty());
  write("manifests/20-more.yaml", service("api", "", "  - {name: web, port: 80, nodePort: 30091}\n"));
  auto third = loader.load();
  EXPECT_EQ(third.files_parsed, 1u);
  EXPECT_EQ(third.changes.lines, (Lines{"service default/api: updated (ports)"}));
  EXPECT_EQ(loader.files_parsed_total(), 4u);
  fs::remove(path("manifests/20-more.yaml"));
  auto fourth = loader.load();
  EXPECT_EQ(fourth.files_parsed, 0u);
  EXPECT_EQ(fourth.changes.lines, (Lines{"service default/api: removed"}));
}

TEST_F(ModelTest, ChangeSummaryNamesServicesNodesAndEndpoints) {
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           slice("web-a", "web", "[{name: web, port: 8080}]", endpoint("10.244.1.5", "n1")) + "---\n" +
           service("gone", "", "  - {name: web, port: 80, nodePort: 30081}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  auto first = loader.load();
  EXPECT_TRUE(first.changes.first_load);
  services(service("web", "", "  - {name: web, port: 80, nodePort: 30080}\n") + "---\n" +
           slice("web-a", "web", "[{name: web, port: 8080}]", endpoint("10.244.1.6", "n1") + endpoint("10.244.2.6", "n2")) +
           "---\n" + service("added", "", "  - {name: web, port: 80, nodePort: 30082}\n"));
  write("manifests/00-nodes.yaml", replace_all(kNodes, "status: \"False\"", "status: \"True\""));
  auto r = loader.load();
  ASSERT_TRUE(NoErrors(r));
  EXPECT_FALSE(r.changes.first_load);
  EXPECT_EQ(r.changes.lines, (Lines{"node n5: added (198.51.100.25)", "service default/added: added (30082/TCP; 0 backends)",
                                    "service default/web: updated (backends +2 -1)", "service default/gone: removed"}));
  EXPECT_EQ(r.changes.services_added, 1u);
  EXPECT_EQ(r.changes.services_updated, 1u);
  EXPECT_EQ(r.changes.services_removed, 1u);
  EXPECT_EQ(r.changes.nodes_added, 1u);
}

TEST_F(ModelTest, RestartOnlySettingsAreReported) {
  ConfigLoader loader(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(loader.load()));
  write("nplb.yaml", replace_all(replace_all(kConfig, "workers: 1", "workers: 2"), "frontends: [\"203.0.113.10\"]",
                                 "frontends: [\"203.0.113.11\"]") +
                         "api: {listen: \"127.0.0.1:9081\"}\n");
  auto r = loader.load();
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(r.restart_required, (Lines{"dataplane.workers", "api.listen"}));
  EXPECT_EQ(r.changes.frontends_changed, 1u);  // frontends apply on reload
  // A fatal load commits nothing: the next one still compares with the last good one.
  write("nplb.yaml", "dataplane: [\n");
  EXPECT_TRUE(loader.load().fatal);
  write("nplb.yaml", kConfig);
  auto back = loader.load();
  EXPECT_EQ(back.restart_required, (Lines{"dataplane.workers", "api.listen"}));
  // The worker's pipeline threshold is read when the workers start.
  write("nplb.yaml", replace_all(kConfig, "  workers: 1\n", "  workers: 1\n  flows: {pipeline_above: 0}\n"));
  EXPECT_EQ(loader.load().restart_required, (Lines{"dataplane.flows.pipeline_above"}));
}

TEST_F(ModelTest, SyntaxErrorInAManifestIsFatalAndCommitsNothing) {
  services(service("web", "", "  - {name: web, port: 80}\n"));
  ConfigLoader loader(path("nplb.yaml"));
  ASSERT_TRUE(NoErrors(loader.load()));
  auto before = stored();
  services(service("web", "", "  - {name: web, port: 80}\n") + "---\n" + service("api", "", "  - {name: web, port: 80}\n") +
           "---\nfoo: [\n");
  auto r = loader.load();
  EXPECT_TRUE(r.fatal);
  EXPECT_EQ(stored(), before);
}

// ================================================================ scale (NPLB_SCALE=1)

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(Scale, TenThousandServicesHundredThousandEndpoints) {
  const char* enabled = std::getenv("NPLB_SCALE");
  const char* generator = std::getenv("NPLB_GEN_SCALE");
  if (!enabled || std::string(enabled) != "1" || !generator) GTEST_SKIP() << "set NPLB_SCALE=1 and NPLB_GEN_SCALE";
  std::string pattern = (fs::temp_directory_path() / "nplb-scale-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  std::string dir = pattern;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + std::string(generator) + " " + dir).c_str()), 0);

  ConfigLoader loader(dir + "/nplb.yaml");
  auto t0 = std::chrono::steady_clock::now();
  auto first = loader.load();
  double first_s = seconds_since(t0);
  ASSERT_TRUE(first.errors.empty()) << first.errors[0].format();
  size_t backends = 0;
  for (const auto& s : first.model.services)
    for (const auto& p : s.ports) backends += p.backends.size();
  EXPECT_EQ(first.model.services.size(), 10000u);
  EXPECT_EQ(backends, 100000u);

  t0 = std::chrono::steady_clock::now();
  auto same = loader.load();
  double same_s = seconds_since(t0);
  EXPECT_EQ(same.files_parsed, 0u);

  // Change one service's file (one endpoint moves).
  std::string file = dir + "/manifests/svc-0042.yaml";
  std::string text;
  {
    std::ifstream in(file);
    std::stringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  auto at = text.find("nodeName: ");
  ASSERT_NE(at, std::string::npos);
  text.insert(text.find('\n', at), "\n    hostname: moved");
  text = text.replace(text.find("ready: true"), 11, "ready: false");
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
  t0 = std::chrono::steady_clock::now();
  auto one = loader.load();
  double one_s = seconds_since(t0);
  EXPECT_EQ(one.files_parsed, 1u);
  EXPECT_EQ(one.changes.services_updated, 1u);

  // From model to data plane: the first snapshot builds every Maglev table;
  // the reload's rebuilds only the changed service's (the cache keeps the rest).
  StableIds ids;
  MaglevCache cache;
  std::vector<MacAddr> macs(first.config->dataplane.ports.size());
  t0 = std::chrono::steady_clock::now();
  BuiltSnapshot built = build_snapshot(*first.config, first.model, macs, ids, 1, 2'000'000'000ull, &cache);
  double first_build_s = seconds_since(t0);
  uint64_t builds_before = cache.builds();
  t0 = std::chrono::steady_clock::now();
  BuiltSnapshot rebuilt = build_snapshot(*one.config, one.model, macs, ids, 2, 2'000'000'000ull, &cache);
  cache.prune();
  double rebuild_s = seconds_since(t0);
  EXPECT_LE(cache.builds() - builds_before, 1u) << "only the changed service's table is rebuilt";
  EXPECT_EQ(rebuilt.snapshot->services.size(), built.snapshot->services.size());
  long peak_kib = 0;
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmHWM:", 0) == 0) peak_kib = std::atol(line.c_str() + 6);
  }
  std::printf("scale: %zu services, %zu backends: first load %.3f s + first snapshot %.3f s; reload unchanged %.3f s; "
              "reload one file %.3f s + snapshot %.3f s (%llu Maglev tables rebuilt); peak RSS %ld MiB\n",
              first.model.services.size(), backends, first_s, first_build_s, same_s, one_s, rebuild_s,
              static_cast<unsigned long long>(cache.builds() - builds_before), peak_kib / 1024);
  first_s += first_build_s;
  one_s += rebuild_s;
  // The issue's budgets (10 s, 1 s) hold on a quiet machine (2.4 s and
  // 0.23 s here); the default test run shares 2 cores with other tests, so
  // it may grant slack (NPLB_SCALE_SLACK), the bench suite grants none.
  double slack = std::getenv("NPLB_SCALE_SLACK") ? std::atof(std::getenv("NPLB_SCALE_SLACK")) : 1.0;
  EXPECT_LT(first_s, 10.0 * slack);
  EXPECT_LT(one_s, 1.0 * slack);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nplb
