// Configuration loading: every "Configuration bad input" case of
// shared/reference/robustness.md that needs no EAL, each with its exact
// message (file:line:column prefix included), and the valid shapes of input
// kubectl prints. Files are written into a fresh temporary folder per test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "control/manifests.hpp"
#include "control/model.hpp"
#include "control/resolver.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {
namespace {

namespace fs = std::filesystem;

// Line numbers below refer to this text; tests edit single lines of it.
constexpr const char* kConfig = R"(dataplane:
  eal: ["--no-huge", "--no-shconf"]
  workers: 1
  ports:
    - name: lan
      device: "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"
      addresses: ["203.0.113.1/24", "198.51.100.1/24"]
      gateway: 203.0.113.254
  neighbors:
    - {ip: 203.0.113.254, mac: "02:00:00:00:00:fe"}
  flows:
    capacity: 65536
    timeouts: {tcp_established: 300s, tcp_transitory: 10s, udp: 30s}
forwarding:
  mode: nat
  frontends: ["203.0.113.10"]
  snat: ["198.51.100.2"]
cluster:
  nodes:
    - {name: n1, address: 198.51.100.21}
    - {name: n2, address: 198.51.100.22}
  manifests: ["services.yaml"]
)";

constexpr const char* kWebService = R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: NodePort
  ports:
  - name: http
    port: 80
    targetPort: 8080
    nodePort: 30080
)";

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("test bug: '" + from + "' not in text");
  return text.replace(at, from.size(), to);
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "nplb-config-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    write("services.yaml", kWebService);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  void write(const std::string& name, const std::string& text) {
    fs::create_directories(fs::path(path(name)).parent_path());
    std::ofstream(path(name), std::ios::binary) << text;
  }
  LoadResult load(const std::string& config_text) {
    write("nplb.yaml", config_text);
    return load_configuration(path("nplb.yaml"));
  }
  LoadResult load_with_manifest(const std::string& manifest) {
    write("services.yaml", manifest);
    return load(kConfig);
  }
  // "nplb.yaml:3:12: message" -> the full path the loader reports.
  std::string at(const std::string& located) const { return path(located); }

  std::string dir_;
};

std::vector<std::string> formatted(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.format());
  return out;
}

std::string listing(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out.empty() ? " (none)" : out;
}

::testing::AssertionResult HasError(const LoadResult& r, const std::string& expected) {
  auto all = formatted(r);
  if (std::find(all.begin(), all.end(), expected) != all.end()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "missing error:\n  " << expected << "\nerrors:" << listing(all);
}

::testing::AssertionResult OnlyError(const LoadResult& r, const std::string& expected) {
  auto all = formatted(r);
  if (all.size() == 1 && all[0] == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected exactly:\n  " << expected << "\nerrors:" << listing(all);
}

::testing::AssertionResult NoErrors(const LoadResult& r) {
  if (r.errors.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "errors:" << listing(formatted(r));
}

// ================================================================ valid loads

TEST_F(ConfigTest, ExampleLoadsAndPrintsTheContractJson) {
  auto r = load(kConfig);
  ASSERT_TRUE(NoErrors(r));
  EXPECT_FALSE(r.fatal);
  EXPECT_EQ(model_to_json(r.model),
            R"({"frontends": ["203.0.113.10"], "nodes": [{"name": "n1", "address": "198.51.100.21"}, )"
            R"({"name": "n2", "address": "198.51.100.22"}], "services": [{"namespace": "default", "name": "web", )"
            R"("type": "NodePort", "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, )"
            R"("nodePort": 30080}]}]})");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->dataplane.ports[0].addresses.size(), 2u);
  EXPECT_EQ(r.config->dataplane.flows.timeouts.tcp_established, 300'000u);
  EXPECT_EQ(r.config->cluster.manifests[0], path("services.yaml"));
  ASSERT_EQ(r.model.services[0].ports[0].backends.size(), 2u);
  EXPECT_EQ(r.model.services[0].ports[0].backends[0].address.str(), "198.51.100.21");
  EXPECT_EQ(r.model.services[0].ports[0].backends[0].port, 30080);
}

TEST_F(ConfigTest, EveryKeyOfTheDocumentedExampleIsAccepted) {
  std::string example = R"(dataplane:
  eal: ["--no-huge", "--no-shconf", "-m", "512", "-l", "0,1"]
  workers: 1
  idle: {spin: 10ms, sleep: 100us}
  mbufs: 8191
  rx_descriptors: 512
  tx_descriptors: 512
  ports:
    - name: lan
      device: "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"
      addresses: ["203.0.113.1/24", "198.51.100.1/24"]
      mac: "02:00:00:00:00:01"
      gateway: 203.0.113.254
  neighbors:
    - {ip: 203.0.113.254, mac: "02:00:00:00:00:fe"}
    - {ip: 198.51.100.21, mac: "02:00:00:00:01:21"}
  flows:
    capacity: 65536
    timeouts: {tcp_established: 5m, tcp_transitory: 10s, udp: 1m30s}
forwarding:
  mode: nat
  frontends: ["203.0.113.10"]
  snat: ["198.51.100.2"]
  snat_ports: "1024-65535"
  maglev: {seed: 1234, min_table_size: 65537, max_table_size: 655373}
cluster:
  node_port_range: "30000-32767"
  nodes:
    - {name: n1, address: 198.51.100.21}
    - {name: n2, address: 198.51.100.22}
  manifests: ["services.yaml"]
)";
  auto r = load(example);
  ASSERT_TRUE(NoErrors(r));
  const auto& c = *r.config;
  EXPECT_EQ(c.dataplane.idle.spin, 10u);
  EXPECT_EQ(c.dataplane.idle.sleep_us, 100u);
  EXPECT_EQ(c.dataplane.rx_descriptors, 512);
  EXPECT_EQ(c.dataplane.ports[0].mac->str(), "02:00:00:00:00:01");
  EXPECT_EQ(c.dataplane.flows.timeouts.tcp_established, 300'000u);
  EXPECT_EQ(c.dataplane.flows.timeouts.udp, 90'000u);
  EXPECT_EQ(c.forwarding.maglev.seed, 1234u);
  EXPECT_EQ(c.forwarding.snat_ports.first, 1024);
  EXPECT_EQ(c.cluster.node_port_range.last, 32767);
}

TEST_F(ConfigTest, KindListMultiDocumentAndTypedLists) {
  auto r = load_with_manifest(R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: b, namespace: default}
  spec: {type: LoadBalancer, ports: [{port: 53, protocol: UDP, nodePort: 30053}]}
---
---
apiVersion: v1
kind: ServiceList
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: zeta}
  spec: {type: NodePort, ports: [{port: 80, nodePort: 30001}]}
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: alpha}
  spec: {type: NodePort, ports: [{port: 80, nodePort: 30002}]}
)");
  ASSERT_TRUE(NoErrors(r));
  ASSERT_EQ(r.model.services.size(), 3u);
  // Sorted by (namespace, name), whatever the file order.
  EXPECT_EQ(r.model.services[0].namespace_, "alpha");
  EXPECT_EQ(r.model.services[1].name, "b");
  EXPECT_EQ(r.model.services[1].type, ServiceType::LoadBalancer);
  EXPECT_EQ(r.model.services[1].ports[0].spec.protocol, L4Protocol::udp);
  EXPECT_EQ(r.model.services[2].namespace_, "zeta");
}

TEST_F(ConfigTest, DirectoryOfManifestsIsReadSortedAndFiltered) {
  write("m/b.yml", R"({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "second"},
 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}})");
  write("m/a.yaml", R"(apiVersion: v1
kind: Service
metadata: {name: first}
spec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}
)");
  write("m/c.json", R"({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "third"},
 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30082}]}})");
  write("m/notes.txt", "not: [yaml");
  auto r = load(replace(kConfig, R"(["services.yaml"])", R"(["m"])"));
  // a.yaml is read before b.yml, so "first" holds 30080.
  EXPECT_TRUE(OnlyError(r, at("m/b.yml:2:66: Service default/second: spec.ports[0].nodePort: Invalid value: 30080: "
                              "provided port is already allocated")));
  EXPECT_FALSE(r.fatal);
  ASSERT_EQ(r.model.services.size(), 2u);
  EXPECT_EQ(r.model.services[0].name, "first");
  EXPECT_EQ(r.model.services[1].name, "third");
}

TEST_F(ConfigTest, UnknownFieldsOfKnownKindsAreIgnoredOtherKindsNotedOnce) {
  auto r = load_with_manifest(std::string(kWebService) + R"(  selector: {app: web}
  clusterIP: 10.96.0.10
  someFutureField: {nested: [1, 2]}
status:
  loadBalancer: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
)");
  ASSERT_TRUE(NoErrors(r));
  ASSERT_EQ(r.notes.size(), 2u);
  EXPECT_EQ(r.notes[0], at("services.yaml:19:1: skipped kind ConfigMap (v1): nplb reads Service, Node and "
                           "EndpointSlice objects"));
  EXPECT_EQ(r.notes[1], at("services.yaml:27:1: skipped kind Deployment (apps/v1): nplb reads Service, Node and "
                           "EndpointSlice objects"));
  EXPECT_EQ(r.model.services.size(), 1u);
}

TEST_F(ConfigTest, NamedTargetPortIsPrintedAsWritten) {
  auto r = load_with_manifest(replace(kWebService, "targetPort: 8080", "targetPort: http-alt"));
  ASSERT_TRUE(NoErrors(r));
  EXPECT_NE(model_to_json(r.model).find(R"("targetPort": "http-alt")"), std::string::npos);
  auto defaulted = load_with_manifest(replace(kWebService, "    targetPort: 8080\n", ""));
  ASSERT_TRUE(NoErrors(defaulted));
  EXPECT_NE(model_to_json(defaulted.model).find(R"("targetPort": 80,)"), std::string::npos);
}

TEST_F(ConfigTest, OnlyNodePortAndLoadBalancerServicesAreExposed) {
  auto r = load_with_manifest(std::string(kWebService) + R"(---
apiVersion: v1
kind: Service
metadata: {name: internal}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Service
metadata: {name: other-proxy, labels: {service.kubernetes.io/service-proxy-name: foo}}
spec: {type: NodePort, ports: [{port: 80, nodePort: 30081}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, labels: {service.kubernetes.io/headless: ""}}
spec: {type: NodePort, ports: [{port: 80, nodePort: 30082}]}
)");
  ASSERT_TRUE(NoErrors(r));
  ASSERT_EQ(r.model.services.size(), 1u);
  EXPECT_EQ(r.model.services[0].name, "web");
  EXPECT_EQ(r.objects.services.size(), 5u);
}

TEST_F(ConfigTest, NodeObjectsEligibilityAndAddressChoice) {
  auto r = load_with_manifest(std::string(kWebService) + R"(---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: ready-internal}
  status:
    addresses: [{type: ExternalIP, address: 192.0.2.30}, {type: InternalIP, address: 198.51.100.30}]
    conditions: [{type: MemoryPressure, status: "False"}, {type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: cordoned-external}
  spec: {unschedulable: true, podCIDRs: ["10.244.1.0/24", "fd00:1::/64"]}
  status:
    addresses: [{type: Hostname, address: cordoned}, {type: InternalIP, address: "fd00::31"}, {type: ExternalIP, address: 192.0.2.31}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: not-ready}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.32}]
    conditions: [{type: Ready, status: "Unknown"}]
- apiVersion: v1
  kind: Node
  metadata: {name: excluded, labels: {node.kubernetes.io/exclude-from-external-load-balancers: "true"}}
  status:
    addresses: [{type: InternalIP, address: 198.51.100.33}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: no-status}
)");
  ASSERT_TRUE(NoErrors(r));
  std::vector<std::string> names;
  for (const auto& n : r.model.nodes) names.push_back(n.name + "=" + n.address.str());
  EXPECT_EQ(names, (std::vector<std::string>{"n1=198.51.100.21", "n2=198.51.100.22", "ready-internal=198.51.100.30",
                                             "cordoned-external=192.0.2.31"}));
  EXPECT_EQ(r.model.services[0].ports[0].backends.size(), 4u);
  ASSERT_EQ(r.objects.nodes.size(), 5u);
  EXPECT_EQ(r.objects.nodes[1].pod_cidrs.size(), 2u);
  EXPECT_TRUE(r.objects.nodes[1].unschedulable);
}

TEST_F(ConfigTest, EndpointSlicesAndLocalTrafficPolicy) {
  auto r = load_with_manifest(replace(kWebService, "  type: NodePort\n", "  type: NodePort\n  externalTrafficPolicy: Local\n") + R"(---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.244.1.5"]
  nodeName: n2
  conditions: {ready: true, serving: true, terminating: false}
- addresses: ["10.244.2.5"]
  nodeName: n1
  conditions: {ready: false, serving: true, terminating: true}
- addresses: ["10.244.3.5"]
)");
  ASSERT_TRUE(NoErrors(r));
  ASSERT_EQ(r.objects.endpoint_slices.size(), 1u);
  const auto& slice = r.objects.endpoint_slices[0];
  EXPECT_EQ(slice.service_name, "web");
  EXPECT_FALSE(slice.endpoints[1].ready);
  EXPECT_TRUE(slice.endpoints[1].terminating);
  EXPECT_TRUE(slice.endpoints[2].ready);  // nil conditions read as ready
  ASSERT_EQ(r.model.services[0].ports[0].backends.size(), 1u);
  EXPECT_EQ(r.model.services[0].ports[0].backends[0].node, "n2");
}

TEST_F(ConfigTest, SessionAffinityIsRead) {
  auto r = load_with_manifest(replace(kWebService, "  type: NodePort\n",
                                      "  type: NodePort\n  sessionAffinity: ClientIP\n"
                                      "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}\n"));
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(r.model.services[0].session_affinity, SessionAffinity::ClientIP);
  EXPECT_EQ(r.model.services[0].affinity_timeout_seconds, 86400u);
  auto defaulted = load_with_manifest(replace(kWebService, "  type: NodePort\n", "  type: NodePort\n  sessionAffinity: ClientIP\n"));
  ASSERT_TRUE(NoErrors(defaulted));
  EXPECT_EQ(defaulted.model.services[0].affinity_timeout_seconds, 10800u);
}

TEST_F(ConfigTest, SameServiceMayUseOneNodePortForTcpAndUdp) {
  auto r = load_with_manifest(R"(apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  type: NodePort
  ports:
  - {name: dns-udp, port: 53, protocol: UDP, nodePort: 30053}
  - {name: dns-tcp, port: 53, protocol: TCP, nodePort: 30053}
)");
  ASSERT_TRUE(NoErrors(r));
  EXPECT_EQ(r.model.services[0].ports.size(), 2u);
}

// ================================================================ YAML-level bad input

TEST_F(ConfigTest, SyntaxErrorHasLineAndColumn) {
  auto r = load("dataplane:\n  workers: [1, 2\n  ports: []\n");
  EXPECT_TRUE(OnlyError(r, at("nplb.yaml:3:8: YAML syntax error: end of sequence flow not found")));
  EXPECT_TRUE(r.fatal);
}

TEST_F(ConfigTest, SyntaxErrorInAManifestIsFatal) {
  auto r = load_with_manifest("apiVersion: v1\nkind: Service\nmetadata: {name: web\n");
  EXPECT_TRUE(OnlyError(r, at("services.yaml:4:1: YAML syntax error: end of map flow not found")));
  EXPECT_TRUE(r.fatal);
}

TEST_F(ConfigTest, DuplicateKeysAreDetected) {
  auto r = load(replace(kConfig, "  workers: 1\n", "  workers: 1\n  workers: 2\n"));
  EXPECT_TRUE(OnlyError(r, at("nplb.yaml:4:3: duplicate key 'workers' (first given at line 3, column 3)")));
  EXPECT_TRUE(r.fatal);
  auto in_manifest = load_with_manifest(replace(kWebService, "    port: 80\n", "    port: 80\n    port: 81\n"));
  EXPECT_TRUE(OnlyError(in_manifest, at("services.yaml:11:5: duplicate key 'port' (first given at line 10, column 5)")));
}

TEST_F(ConfigTest, UnknownKeysSuggestTheClosestKnownKey) {
  auto r = load(replace(kConfig, "  workers: 1", "  wokers: 1"));
  EXPECT_TRUE(OnlyError(r, at("nplb.yaml:3:3: unknown key 'wokers' in dataplane; did you mean 'workers'?")));
  EXPECT_TRUE(r.fatal);
  auto top = load(std::string(kConfig) + "clustr: {}\n");
  EXPECT_TRUE(OnlyError(top, at("nplb.yaml:23:1: unknown top-level key 'clustr'; did you mean 'cluster'?")));
  auto far = load(replace(kConfig, "    capacity: 65536", "    zzz: 65536"));
  EXPECT_TRUE(OnlyError(far, at("nplb.yaml:12:5: unknown key 'zzz' in dataplane.flows (expected one of: capacity, "
                                "timeouts, pipeline_above)")));
}

TEST_F(ConfigTest, WrongTypesNameTheExpectedType) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: two")),
                        at("nplb.yaml:3:12: dataplane.workers: expected an integer, got a string (\"two\")")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: \"1\"")),
                        at("nplb.yaml:3:12: dataplane.workers: expected an integer, got a string (\"1\")")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: [1]")),
                        at("nplb.yaml:3:12: dataplane.workers: expected an integer, got a sequence")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(frontends: ["203.0.113.10"])", "frontends: {a: 1}")),
                        at("nplb.yaml:16:14: forwarding.frontends: expected a sequence, got a mapping")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  flows:\n    capacity: 65536\n    timeouts: {tcp_established: 300s, "
                                              "tcp_transitory: 10s, udp: 30s}\n", "  flows: 5\n")),
                        at("nplb.yaml:11:10: dataplane.flows: expected a mapping, got an integer (5)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "      gateway: 203.0.113.254\n", "      gateway:\n")),
                        at("nplb.yaml:8:7: dataplane.ports[0].gateway: expected an IP address, got null")));
}

TEST_F(ConfigTest, NegativeAndOversizedNumbersIntoUnsignedFields) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  workers: 1\n", "  workers: 1\n  mbufs: -5\n")),
                        at("nplb.yaml:4:10: dataplane.mbufs: must be between 1 and 4294967295, got -5")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  mode: nat\n", "  mode: nat\n  maglev: {seed: -5}\n")),
                        at("nplb.yaml:16:18: forwarding.maglev.seed: must not be negative, got -5")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  workers: 1\n", "  workers: 1\n  mbufs: 99999999999999999999999\n")),
                        at("nplb.yaml:4:10: dataplane.mbufs: must be between 1 and 4294967295, got "
                           "99999999999999999999999")));
  // A uint16 field: 65537 must not wrap to 1 (what a narrowing read would give).
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  workers: 1\n", "  workers: 1\n  rx_descriptors: 65537\n")),
                        at("nplb.yaml:4:19: dataplane.rx_descriptors: must be between 1 and 32768, got 65537")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: -1")),
                        at("nplb.yaml:3:12: dataplane.workers: must be between 1 and 128, got -1")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: 010")),
                        at("nplb.yaml:3:12: dataplane.workers: integer 010 has a leading zero (octal in YAML 1.1); "
                           "write it in plain decimal")));
}

TEST_F(ConfigTest, EmptyDocumentsAreErrors) {
  EXPECT_TRUE(OnlyError(load(""), at("nplb.yaml: the configuration is empty")));
  EXPECT_TRUE(OnlyError(load("# nothing but a comment\n---\n"), at("nplb.yaml: the configuration is empty")));
  EXPECT_TRUE(OnlyError(load(std::string(kConfig) + "---\nmore: 1\n"),
                        at("nplb.yaml:24:1: the configuration must be a single YAML document, found 2")));
  EXPECT_TRUE(OnlyError(load("- a\n- b\n"), at("nplb.yaml:1:1: expected a mapping at the top level, got a sequence")));
  EXPECT_TRUE(load("").fatal);
}

TEST_F(ConfigTest, HugeDeepAndAliasBombDocumentsAreCapped) {
  // Size: the cap is checked before parsing (a small cap keeps the test fast).
  auto big = yaml::parse_text(std::string(2048, '#'), "big.yaml", yaml::Limits{.max_file_bytes = 1024});
  ASSERT_EQ(big.errors.size(), 1u);
  EXPECT_EQ(big.errors[0].format(), "big.yaml: file is larger than 0 MiB");

  write("big.yaml", std::string(2048, '#'));
  auto big_file = yaml::parse_file(path("big.yaml"), yaml::Limits{.max_file_bytes = 1024});
  ASSERT_EQ(big_file.errors.size(), 1u);
  EXPECT_EQ(big_file.errors[0].format(), path("big.yaml") + ": file is larger than 0 MiB");

  std::string deep = "dataplane:";
  for (int i = 0; i < 100; ++i) deep += " {a:";
  deep += " 1" + std::string(100, '}') + "\n";
  EXPECT_TRUE(OnlyError(load(deep), at("nplb.yaml:1:264: nesting deeper than 64 levels")));

  std::string very_deep(100000, '[');  // the parser's own guard, before ours
  EXPECT_TRUE(OnlyError(load(very_deep), at("nplb.yaml:1:1: nesting too deep for the YAML parser")));

  // "Billion laughs": 10^9 visits from a few hundred bytes.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) bomb += std::string(i ? ", " : "") + "*" + char(c - 1);
    bomb += "]\n";
  }
  auto r = load(bomb);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("node visits (aliases expanding without bound?)"), std::string::npos)
      << r.errors[0].format();
  EXPECT_TRUE(r.fatal);
}

TEST_F(ConfigTest, DurationsNeedAUnit) {
  auto r = load(replace(kConfig, "tcp_established: 300s", "tcp_established: 300"));
  EXPECT_TRUE(OnlyError(r, at("nplb.yaml:13:33: dataplane.flows.timeouts.tcp_established: duration 300 has no unit; "
                              "add one, e.g. \"300s\" or \"300ms\" (units: us, ms, s, m, h)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "udp: 30s", "udp: 30 seconds")),
                        at("nplb.yaml:13:65: dataplane.flows.timeouts.udp: expected a duration such as \"500ms\", "
                           "\"300s\", \"2m\" or \"1h\", got \"30 seconds\"")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "udp: 30s", "udp: 1500us")),
                        at("nplb.yaml:13:65: dataplane.flows.timeouts.udp: duration \"1500us\" is not a whole number of "
                           "milliseconds")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "tcp_transitory: 10s", "tcp_transitory: 0s")),
                        at("nplb.yaml:13:55: dataplane.flows.timeouts.tcp_transitory: must be greater than 0")));
}

// ================================================================ settings: semantic checks

TEST_F(ConfigTest, WorkersAndFlowCapacityRanges) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "workers: 1", "workers: 129")),
                        at("nplb.yaml:3:12: dataplane.workers: must be between 1 and 128, got 129")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "capacity: 65536", "capacity: 1000")),
                        at("nplb.yaml:12:15: dataplane.flows.capacity: must be between 1024 and 67108864, got 1000")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "capacity: 65536", "capacity: 65536\n    pipeline_above: -1")),
                        at("nplb.yaml:13:21: dataplane.flows.pipeline_above: must not be negative, got -1")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "capacity: 65536", "capacity: 65536\n    pipeline_above: 70000000")),
                        at("nplb.yaml:13:21: dataplane.flows.pipeline_above: must be between 0 and 67108864, got "
                           "70000000")));
  LoadResult pipelined = load(replace(kConfig, "capacity: 65536", "capacity: 65536\n    pipeline_above: 0"));
  ASSERT_TRUE(pipelined.errors.empty());
  EXPECT_EQ(pipelined.config->dataplane.flows.pipeline_above, 0u);
  LoadResult by_default = load(kConfig);
  ASSERT_TRUE(by_default.errors.empty());
  EXPECT_EQ(by_default.config->dataplane.flows.pipeline_above, 8192u);
}

TEST_F(ConfigTest, PortChecks) {
  EXPECT_TRUE(OnlyError(
      load(replace(kConfig, "  ports:\n    - name: lan\n      device: \"net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap\"\n"
                            "      addresses: [\"203.0.113.1/24\", \"198.51.100.1/24\"]\n      gateway: 203.0.113.254\n",
                   "  ports: []\n")),
      at("nplb.yaml:4:10: dataplane.ports: at least one port is required")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(device: "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")", R"(device: "")")),
                        at("nplb.yaml:6:15: dataplane.ports[0].device: must not be empty")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "      gateway: 203.0.113.254\n",
                                     "      gateway: 203.0.113.254\n    - {name: lan, device: x, addresses: [192.0.2.1/24]}\n")),
                        at("nplb.yaml:9:14: dataplane.ports[1].name: duplicate port name 'lan' (first at line 5)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "gateway: 203.0.113.254", "gateway: 192.0.2.254")),
                        at("nplb.yaml:8:16: dataplane.ports[0].gateway: gateway 192.0.2.254 is not inside any subnet "
                           "of this port (203.0.113.0/24, 198.51.100.0/24)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"("198.51.100.1/24"])", R"("198.51.100.1"])")),
                        at("nplb.yaml:7:37: dataplane.ports[0].addresses[1]: \"198.51.100.1\" has no prefix length; "
                           "write it as a CIDR, e.g. \"198.51.100.1/24\"")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"("198.51.100.1/24"])", R"("198.51.100.1/33"])")),
                        at("nplb.yaml:7:37: dataplane.ports[0].addresses[1]: \"198.51.100.1/33\" is not a valid CIDR "
                           "(address/prefix-length)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "      gateway: 203.0.113.254\n",
                                     "      gateway: 203.0.113.254\n      mac: \"01:00:5e:00:00:01\"\n")),
                        at("nplb.yaml:9:12: dataplane.ports[0].mac: 01:00:5e:00:00:01 is not a unicast MAC address")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "      gateway: 203.0.113.254\n",
                                     "      gateway: 203.0.113.254\n      mac: \"02:00:00:00:01\"\n")),
                        at("nplb.yaml:9:12: dataplane.ports[0].mac: \"02:00:00:00:01\" is not a MAC address (six hex "
                           "pairs, e.g. \"02:00:00:00:00:01\")")));
}

TEST_F(ConfigTest, AddressesBadOrAmbiguous) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(snat: ["198.51.100.2"])", R"(snat: ["198.51.100.256"])")),
                        at("nplb.yaml:17:10: forwarding.snat[0]: \"198.51.100.256\" is not a valid IP address")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(snat: ["198.51.100.2"])", R"(snat: ["198.051.100.2"])")),
                        at("nplb.yaml:17:10: forwarding.snat[0]: \"198.051.100.2\" is not a valid IP address: leading "
                           "zeros are ambiguous (octal to some parsers)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(snat: ["198.51.100.2"])", R"(snat: ["198.51.100.2/32"])")),
                        at("nplb.yaml:17:10: forwarding.snat[0]: \"198.51.100.2/32\" is a CIDR; expected a single IP "
                           "address")));
}

TEST_F(ConfigTest, NeighborsAreUniqueAndOnLink) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  flows:\n", "    - {ip: 203.0.113.254, mac: \"02:00:00:00:00:fd\"}\n  flows:\n")),
                        at("nplb.yaml:11:12: dataplane.neighbors[1].ip: duplicate neighbor 203.0.113.254 (first at "
                           "line 10)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "{ip: 203.0.113.254,", "{ip: 192.0.2.9,")),
                        at("nplb.yaml:10:12: dataplane.neighbors[0].ip: neighbor 192.0.2.9 is not inside any port's "
                           "subnet")));
}

TEST_F(ConfigTest, ForwardingChecks) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "mode: nat", "mode: dsr")),
                        at("nplb.yaml:15:9: forwarding.mode: unsupported mode \"dsr\": supported modes: \"nat\"")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(frontends: ["203.0.113.10"])", "frontends: []")),
                        at("nplb.yaml:16:14: forwarding.frontends: at least one frontend is required")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(snat: ["198.51.100.2"])", "snat: []")),
                        at("nplb.yaml:17:9: forwarding.snat: at least one SNAT address is required")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(frontends: ["203.0.113.10"])", R"(frontends: ["203.0.113.10", "203.0.113.10"])")),
                        at("nplb.yaml:16:31: forwarding.frontends[1]: duplicate frontend 203.0.113.10 (first at line "
                           "16)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, R"(snat: ["198.51.100.2"])", R"(snat: ["203.0.113.10"])")),
                        at("nplb.yaml:17:10: forwarding.snat[0]: 203.0.113.10 is also a frontend; SNAT addresses must "
                           "differ from frontends")));
}

TEST_F(ConfigTest, Ipv6ParsesButIsNotSupportedYetAndFamiliesMustNotMix) {
  auto v6 = load(replace(replace(kConfig, R"(frontends: ["203.0.113.10"])", R"(frontends: ["2001:db8::10"])"),
                         R"(snat: ["198.51.100.2"])", R"(snat: ["2001:db8::2"])"));
  EXPECT_TRUE(HasError(v6, at("nplb.yaml:16:15: forwarding.frontends[0]: IPv6 frontend 2001:db8::10 is not supported "
                              "yet in nat mode (the data path is IPv4 for now)")));
  EXPECT_TRUE(HasError(v6, at("nplb.yaml:17:10: forwarding.snat[0]: IPv6 SNAT address 2001:db8::2 is not supported yet "
                              "in nat mode (the data path is IPv4 for now)")));
  auto mixed = load(replace(kConfig, R"(snat: ["198.51.100.2"])", R"(snat: ["198.51.100.2", "2001:db8::2"])"));
  EXPECT_TRUE(HasError(mixed, at("nplb.yaml:17:26: forwarding.snat[1]: mixed address families: 2001:db8::2 is IPv6 but "
                                 "203.0.113.10 (forwarding.frontends[0]) is IPv4")));
}

TEST_F(ConfigTest, SnatPortsAndNodePortRange) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  mode: nat\n", "  mode: nat\n  snat_ports: \"2000-1024\"\n")),
                        at("nplb.yaml:16:15: forwarding.snat_ports: port range \"2000-1024\" is reversed: the first "
                           "port must not exceed the last")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  mode: nat\n", "  mode: nat\n  snat_ports: \"0-1024\"\n")),
                        at("nplb.yaml:16:15: forwarding.snat_ports: port 0 in \"0-1024\" must be between 1 and 65535")));
  EXPECT_TRUE(OnlyError(load(replace(replace(kConfig, "workers: 1", "workers: 4"), "  mode: nat\n",
                                     "  mode: nat\n  snat_ports: \"2000-2006\"\n")),
                        at("nplb.yaml:16:15: forwarding.snat_ports: 7 ports for 4 workers: each worker needs at least "
                           "2")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "cluster:\n", "cluster:\n  node_port_range: \"30000-65536\"\n")),
                        at("nplb.yaml:19:20: cluster.node_port_range: port 65536 in \"30000-65536\" must be between 1 "
                           "and 65535")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "cluster:\n", "cluster:\n  node_port_range: 30000\n")),
                        at("nplb.yaml:19:20: cluster.node_port_range: expected a port range such as \"30000-32767\", "
                           "got \"30000\"")));
}

TEST_F(ConfigTest, MaglevSizes) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  mode: nat\n", "  mode: nat\n  maglev: {min_table_size: 65536}\n")),
                        at("nplb.yaml:16:28: forwarding.maglev.min_table_size: 65536 is not a prime number")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "  mode: nat\n",
                                     "  mode: nat\n  maglev: {min_table_size: 65537, max_table_size: 1009}\n")),
                        at("nplb.yaml:16:51: forwarding.maglev.max_table_size: 1009 is below min_table_size 65537")));
}

TEST_F(ConfigTest, CompactNodes) {
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "{name: n2, address: 198.51.100.22}", "{name: n1, address: 198.51.100.22}")),
                        at("nplb.yaml:21:14: cluster.nodes[1].name: duplicate node name 'n1' (first at line 20)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "{name: n2, address: 198.51.100.22}", "{name: n2, address: 198.51.100.21}")),
                        at("nplb.yaml:21:27: cluster.nodes[1].address: duplicate node address 198.51.100.21 (first at "
                           "line 20)")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "{name: n2, address: 198.51.100.22}", "{name: n2, address: 203.0.113.10}")),
                        at("nplb.yaml:21:27: cluster.nodes[1].address: backend address equals a VIP: 203.0.113.10 is in "
                           "forwarding.frontends")));
  EXPECT_TRUE(OnlyError(load(replace(kConfig, "{name: n2, address: 198.51.100.22}", "{name: n2}")),
                        at("nplb.yaml:21:7: cluster.nodes[1]: missing required key 'address'")));
}

TEST_F(ConfigTest, MissingManifestIsReportedWhereItIsWritten) {
  auto r = load(replace(kConfig, R"(["services.yaml"])", R"(["services.yaml", "nope/"])"));
  EXPECT_TRUE(OnlyError(r, at("nplb.yaml:22:32: cluster.manifests[1]: \"nope/\" not found (looked for " + path("nope/") + ")")));
  EXPECT_TRUE(r.fatal);
}

TEST_F(ConfigTest, ErrorFormatOmitsUnknownParts) {
  EXPECT_EQ((ConfigError{{"f.yaml", 3, 7}, "m"}.format()), "f.yaml:3:7: m");
  EXPECT_EQ((ConfigError{{"f.yaml", 3, 0}, "m"}.format()), "f.yaml:3: m");
  EXPECT_EQ((ConfigError{{"f.yaml", 0, 0}, "m"}.format()), "f.yaml: m");
}

// ================================================================ Kubernetes objects: API server validation

TEST_F(ConfigTest, ServicePortNumbersOutOfRange) {
  auto r = load_with_manifest(replace(kWebService, "port: 80", "port: 0"));
  EXPECT_TRUE(OnlyError(r, at("services.yaml:10:11: Service default/web: spec.ports[0].port: Invalid value: 0: must be "
                              "between 1 and 65535, inclusive")));
  EXPECT_FALSE(r.fatal);  // an object error rejects that object only
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "port: 80", "port: 65536")),
                        at("services.yaml:10:11: Service default/web: spec.ports[0].port: Invalid value: 65536: must be "
                           "between 1 and 65535, inclusive")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "targetPort: 8080", "targetPort: 70000")),
                        at("services.yaml:11:17: Service default/web: spec.ports[0].targetPort: Invalid value: 70000: "
                           "must be between 1 and 65535, inclusive")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "port: 80", "port: \"80\"")),
                        at("services.yaml:10:11: Service default/web: spec.ports[0].port: Invalid value: \"80\": must be "
                           "an integer")));
}

TEST_F(ConfigTest, ServiceNodePortOutOfRangeCollisionAndMissing) {
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "nodePort: 30080", "nodePort: 40000")),
                        at("services.yaml:12:15: Service default/web: spec.ports[0].nodePort: Invalid value: 40000: "
                           "provided port is not in the valid range. The range of valid ports is 30000-32767")));
  auto r = load_with_manifest(std::string(kWebService) + "---\n" +
                              replace(replace(kWebService, "name: web", "name: api"), "port: 80", "port: 53\n    protocol: UDP"));
  EXPECT_TRUE(OnlyError(r, at("services.yaml:26:15: Service default/api: spec.ports[0].nodePort: Invalid value: 30080: "
                              "provided port is already allocated")));
  ASSERT_EQ(r.model.services.size(), 1u);
  EXPECT_EQ(r.model.services[0].name, "web");  // the first holder keeps its port

  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "    nodePort: 30080\n", "")),
                        at("services.yaml:9:5: Service default/web: spec.ports[0].nodePort: Required value: nplb sends "
                           "to NodeIP:nodePort, and only the cluster knows the port it allocated; write that nodePort "
                           "here (kubectl get service web -n default -o yaml prints it)")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "nodePort: 30080", "nodePort: 70000")),
                        at("services.yaml:12:15: Service default/web: spec.ports[0].nodePort: Invalid value: 70000: "
                           "must be between 1 and 65535, inclusive")));
  // A configured range applies.
  write("services.yaml", kWebService);
  auto ranged = load(replace(kConfig, "cluster:\n", "cluster:\n  node_port_range: \"31000-31999\"\n"));
  EXPECT_TRUE(OnlyError(ranged, at("services.yaml:12:15: Service default/web: spec.ports[0].nodePort: Invalid value: "
                                   "30080: provided port is not in the valid range. The range of valid ports is "
                                   "31000-31999")));
}

TEST_F(ConfigTest, HealthCheckNodePortCollidingWithANodePort) {
  auto r = load_with_manifest(replace(kWebService, "  type: NodePort\n",
                                      "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30080\n"));
  EXPECT_TRUE(OnlyError(r, at("services.yaml:9:24: Service default/web: spec.healthCheckNodePort: Invalid value: 30080: "
                              "provided port is already allocated")));
  auto wrong_type = load_with_manifest(replace(kWebService, "  type: NodePort\n", "  type: NodePort\n  healthCheckNodePort: 30081\n"));
  EXPECT_TRUE(OnlyError(wrong_type, at("services.yaml:8:24: Service default/web: spec.healthCheckNodePort: Invalid "
                                       "value: 30081: may only be set when `type` is 'LoadBalancer' and "
                                       "`externalTrafficPolicy` is 'Local'")));
  auto ok = load_with_manifest(replace(kWebService, "  type: NodePort\n",
                                       "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n"));
  EXPECT_TRUE(NoErrors(ok));
}

TEST_F(ConfigTest, ServicePortNamesAndProtocols) {
  std::string two = replace(kWebService, "    nodePort: 30080\n", "    nodePort: 30080\n  - port: 443\n    nodePort: 30443\n");
  EXPECT_TRUE(OnlyError(load_with_manifest(two),
                        at("services.yaml:13:5: Service default/web: spec.ports[1].name: Required value")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(two, "  - port: 443", "  - name: http\n    port: 443")),
                        at("services.yaml:13:11: Service default/web: spec.ports[1].name: Duplicate value: \"http\"")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "    port: 80\n", "    port: 80\n    protocol: ICMP\n")),
                        at("services.yaml:11:15: Service default/web: spec.ports[0].protocol: Unsupported value: "
                           "\"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "targetPort: 8080", "targetPort: \"8080\"")),
                        at("services.yaml:11:17: Service default/web: spec.ports[0].targetPort: Invalid value: "
                           "\"8080\": must contain at least one letter (a-z)")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "type: NodePort", "type: Nodeport")),
                        at("services.yaml:7:9: Service default/web: spec.type: Unsupported value: \"Nodeport\": "
                           "supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "  name: web", "  name: Web")),
                        at("services.yaml:4:9: Service default/Web: metadata.name: Invalid value: \"Web\": a DNS-1035 "
                           "label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
                           "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex "
                           "used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "  type: NodePort\n", "")),
                        at("services.yaml:11:15: Service default/web: spec.ports[0].nodePort: Forbidden: may not be "
                           "used when `type` is 'ClusterIP'")));
  EXPECT_TRUE(OnlyError(load_with_manifest(replace(kWebService, "  type: NodePort\n", "  type: NodePort\n  clusterIP: None\n")),
                        at("services.yaml:8:14: Service default/web: spec.clusterIP: Invalid value: \"None\": may not "
                           "be set to 'None' for NodePort services")));
}

TEST_F(ConfigTest, AffinityTimeoutOutOfRange) {
  for (const char* t : {"0", "86401"}) {
    auto r = load_with_manifest(replace(kWebService, "  type: NodePort\n",
                                        std::string("  type: NodePort\n  sessionAffinity: ClientIP\n"
                                                    "  sessionAffinityConfig: {clientIP: {timeoutSeconds: ") + t + "}}\n"));
    EXPECT_TRUE(OnlyError(r, at("services.yaml:9:54: Service default/web: spec.sessionAffinityConfig.clientIP."
                                "timeoutSeconds: Invalid value: " + std::string(t) +
                                ": must be greater than 0 and less than 86400")));
  }
}

TEST_F(ConfigTest, NodeObjectErrors) {
  const std::string node = R"(apiVersion: v1
kind: Node
metadata: {name: n9}
spec: {podCIDRs: ["10.244.1.1/24"]}
status:
  addresses: [{type: InternalIP, address: 198.51.100.29}]
  conditions: [{type: Ready, status: "True"}]
)";
  auto r = load_with_manifest(std::string(kWebService) + "---\n" + node);
  EXPECT_TRUE(OnlyError(r, at("services.yaml:17:19: Node n9: spec.podCIDRs[0]: Invalid value: \"10.244.1.1/24\": must "
                              "be a network address: host bits are set")));
  EXPECT_EQ(r.model.nodes.size(), 2u);
  EXPECT_EQ(r.model.services.size(), 1u);  // the rest applies

  auto vip = load_with_manifest(std::string(kWebService) + "---\n" +
                                replace(replace(node, "10.244.1.1/24", "10.244.1.0/24"), "198.51.100.29", "203.0.113.10"));
  EXPECT_TRUE(OnlyError(vip, at("services.yaml:14:1: Node n9: status.addresses: backend address equals a VIP: "
                                "203.0.113.10 is in forwarding.frontends; this node is not a backend")));
  auto clash = load_with_manifest(std::string(kWebService) + "---\n" +
                                  replace(replace(node, "10.244.1.1/24", "10.244.1.0/24"), "name: n9", "name: n1"));
  EXPECT_TRUE(OnlyError(clash, at("services.yaml:14:1: Node n1: also given in cluster.nodes at " + path("nplb.yaml") +
                                  ":20; this Node object is ignored")));
}

TEST_F(ConfigTest, EndpointSliceErrors) {
  auto r = load_with_manifest(std::string(kWebService) + R"(---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: ["2001:db8::1"]
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: web-2}
addressType: IPv4
)");
  EXPECT_TRUE(HasError(r, at("services.yaml:19:15: EndpointSlice default/web-1: endpoints[0].addresses[0]: Invalid "
                             "value: \"2001:db8::1\": must be a valid IPv4 address")));
  EXPECT_TRUE(HasError(r, at("services.yaml:22:7: EndpointSlice: apiVersion \"discovery.k8s.io/v1beta1\" is not "
                             "supported; use discovery.k8s.io/v1")));
  EXPECT_EQ(r.errors.size(), 2u);
}

TEST_F(ConfigTest, InvalidObjectIsRejectedAloneAndDuplicatesKeepTheFirst) {
  auto r = load_with_manifest(std::string(kWebService) + "---\n" +
                              replace(replace(kWebService, "name: web", "name: bad"), "port: 80", "port: 0") + "---\n" +
                              replace(kWebService, "nodePort: 30080", "nodePort: 30099"));
  EXPECT_TRUE(HasError(r, at("services.yaml:23:11: Service default/bad: spec.ports[0].port: Invalid value: 0: must be "
                             "between 1 and 65535, inclusive")));
  EXPECT_TRUE(HasError(r, at("services.yaml:27:1: Service default/web: already defined at " + path("services.yaml") +
                             ":1; this definition is ignored")));
  EXPECT_EQ(r.errors.size(), 2u);
  EXPECT_FALSE(r.fatal);
  ASSERT_EQ(r.model.services.size(), 1u);
  EXPECT_EQ(r.model.services[0].ports[0].spec.node_port, 30080);
}

// ================================================================ the reader's building blocks

TEST(YamlReader, SuggestionsByEditDistance) {
  EXPECT_EQ(yaml::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(yaml::edit_distance("", "abc"), 3u);
  std::vector<std::string> keys{"workers", "ports", "neighbors", "flows"};
  EXPECT_EQ(yaml::closest_match("worker", keys), "workers");
  EXPECT_EQ(yaml::closest_match("neighbours", keys), "neighbors");
  EXPECT_EQ(yaml::closest_match("xyz", keys), std::nullopt);
}

TEST(YamlReader, DurationsAndIntegers) {
  auto file = yaml::parse_text("a: 1m30s\nb: 100us\nc: 2h\nd: 18446744073709551615\ne: 255\n", "t.yaml");
  ASSERT_TRUE(file.errors.empty());
  yaml::Value root(file.documents[0], &file.path, "");
  yaml::MapReader m(root);
  EXPECT_EQ(m.require("a").as_duration_ms(), 90'000u);
  EXPECT_EQ(m.require("b").as_duration_us(), 100u);
  EXPECT_EQ(m.require("c").as_duration_ms(), 7'200'000u);
  EXPECT_EQ(m.require("d").as_integer<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(m.require("e").as_integer<uint8_t>(), 255);  // a number, not the character '2'
  EXPECT_THROW(m.require("e").as_integer<int8_t>(), yaml::YamlError);
  EXPECT_THROW(m.require("zzz"), yaml::YamlError);
}

}  // namespace
}  // namespace nplb
