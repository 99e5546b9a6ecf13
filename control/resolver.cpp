#include "control/resolver.hpp"

#include <algorithm>
#include <set>

namespace nplb {

namespace {

constexpr const char* kExcludeFromLoadBalancers = "node.kubernetes.io/exclude-from-external-load-balancers";
constexpr const char* kServiceProxyName = "service.kubernetes.io/service-proxy-name";
constexpr const char* kHeadless = "service.kubernetes.io/headless";

std::string object_id(const ObjectMeta& meta) {
  return meta.namespace_.empty() ? meta.name : meta.namespace_ + "/" + meta.name;
}

std::string at_line(const SourceLocation& where) { return where.file + ":" + std::to_string(where.line); }

bool contains(const std::vector<IpAddr>& list, const IpAddr& ip) {
  return std::find(list.begin(), list.end(), ip) != list.end();
}

struct NodeSet {
  std::vector<ResolvedNode> nodes;
  std::map<std::string, SourceLocation> names;
  std::map<IpAddr, std::string> owners;  // address -> node name
};

void add_nodes(const ApplianceConfig& config, const ClusterObjects& objects, NodeSet& set,
               std::vector<ConfigError>& errors, std::vector<std::string>& notes) {
  const auto& fw = config.forwarding;
  IpFamily family = fw.frontends.empty() ? IpFamily::v4 : fw.frontends[0].family;

  // Hand-written nodes are always backends: they carry no status to judge.
  for (const auto& n : config.cluster.nodes) {
    set.nodes.push_back({n.name, n.address});
    set.names.emplace(n.name, n.where);
    set.owners.emplace(n.address, n.name);
  }
  for (const auto& node : objects.nodes) {
    const std::string id = "Node " + node.meta.name;
    if (auto it = set.names.find(node.meta.name); it != set.names.end()) {
      errors.push_back({node.meta.where, id + ": also given in cluster.nodes at " + at_line(it->second) +
                                             "; this Node object is ignored"});
      continue;
    }
    if (!node_is_eligible(node)) continue;
    auto address = node_backend_address(node, family);
    if (!address) {
      notes.push_back(ConfigError{node.meta.where, id + ": no InternalIP or ExternalIP " +
                                                       std::string(family == IpFamily::v4 ? "IPv4" : "IPv6") +
                                                       " address; not a backend"}
                          .format());
      continue;
    }
    std::string problem;
    if (contains(fw.frontends, *address)) problem = "backend address equals a VIP: " + address->str() + " is in forwarding.frontends";
    else if (contains(fw.snat, *address)) problem = "backend address equals a SNAT address: " + address->str() + " is in forwarding.snat";
    else if (auto owner = set.owners.find(*address); owner != set.owners.end())
      problem = "address " + address->str() + " is already node " + owner->second + "'s";
    if (!problem.empty()) {
      errors.push_back({node.meta.where, id + ": status.addresses: " + problem + "; this node is not a backend"});
      continue;
    }
    set.nodes.push_back({node.meta.name, *address});
    set.names.emplace(node.meta.name, node.meta.where);
    set.owners.emplace(*address, node.meta.name);
  }
}

// Nodes with a ready endpoint of the service (ETP Local). Empty optional when
// no EndpointSlice of the service was loaded at all.
std::optional<std::set<std::string>> nodes_with_local_endpoints(const Service& svc, const ClusterObjects& objects) {
  std::optional<std::set<std::string>> out;
  for (const auto& slice : objects.endpoint_slices) {
    if (slice.meta.namespace_ != svc.meta.namespace_ || slice.service_name != svc.meta.name) continue;
    if (!out) out.emplace();
    for (const auto& ep : slice.endpoints)
      if (ep.ready && !ep.node_name.empty()) out->insert(ep.node_name);
  }
  return out;
}

}  // namespace

std::string NodePortAllocator::holder(uint16_t port) const {
  auto it = owners_.find(port);
  return it == owners_.end() ? std::string() : it->second;
}

void NodePortAllocator::release_all(const std::string& owner) {
  std::erase_if(owners_, [&](const auto& entry) { return entry.second == owner; });
}

std::optional<IpAddr> node_backend_address(const Node& node, IpFamily family) {
  for (const char* type : {"InternalIP", "ExternalIP"})
    for (const auto& a : node.addresses)
      if (a.type == type)
        if (auto ip = parse_ip(a.address); ip && ip->family == family) return ip;
  return std::nullopt;
}

// The service controller's predicate for ETP Cluster since Kubernetes 1.27
// (KEP-3458): readiness and the exclusion label count; `unschedulable` does
// not, so a cordoned node keeps serving while it drains.
bool node_is_eligible(const Node& node) {
  return node.ready && !node.meta.labels.contains(kExcludeFromLoadBalancers);
}

Model resolve_model(const ApplianceConfig& config, const ClusterObjects& objects, std::vector<ConfigError>& errors,
                    std::vector<std::string>& notes) {
  Model model;
  model.frontends = config.forwarding.frontends;
  NodeSet nodes;
  add_nodes(config, objects, nodes, errors, notes);
  model.nodes = nodes.nodes;

  const PortRange& range = config.cluster.node_port_range;
  const std::string range_text = std::to_string(range.first) + "-" + std::to_string(range.last);
  NodePortAllocator allocator(range);

  // File order decides who holds a contested nodePort: the first service got
  // it from the cluster, the later one is what the API server would refuse.
  for (const auto& svc : objects.services) {
    if (svc.type != ServiceType::NodePort && svc.type != ServiceType::LoadBalancer) continue;
    const std::string owner = object_id(svc.meta);
    const std::string id = "Service " + owner;
    if (auto it = svc.meta.labels.find(kServiceProxyName); it != svc.meta.labels.end()) {
      notes.push_back(ConfigError{svc.meta.where, id + ": labelled " + std::string(kServiceProxyName) + "=" +
                                                      it->second + " for another proxy; not exposed"}
                          .format());
      continue;
    }
    if (svc.cluster_ip == "None" || svc.meta.labels.contains(kHeadless)) continue;

    std::vector<ConfigError> rejections;
    auto reject = [&](const SourceLocation& where, const std::string& text) {
      rejections.push_back({where, id + ": " + text});
    };
    std::set<uint16_t> own;
    for (size_t i = 0; i < svc.ports.size(); ++i) {
      const auto& port = svc.ports[i];
      const std::string path = "spec.ports[" + std::to_string(i) + "].nodePort";
      const std::string value = std::to_string(port.node_port);
      if (port.node_port == 0) {
        reject(port.node_port_where,
               path + ": Required value: nplb sends to NodeIP:nodePort, and only the cluster knows the port it "
                      "allocated; write that nodePort here (kubectl get service " + svc.meta.name + " -n " +
                   svc.meta.namespace_ + " -o yaml prints it)");
      } else if (!allocator.in_range(port.node_port)) {
        reject(port.node_port_where, path + ": Invalid value: " + value +
                                         ": provided port is not in the valid range. The range of valid ports is " +
                                         range_text);
      } else if (auto holder = allocator.holder(port.node_port); !holder.empty() && holder != owner) {
        reject(port.node_port_where, path + ": Invalid value: " + value + ": provided port is already allocated");
      } else {
        own.insert(port.node_port);
      }
    }
    // healthCheckNodePort comes from the same allocator; a service's own
    // nodePort is taken too, so it collides as well.
    if (uint16_t hc = svc.health_check_node_port; hc != 0) {
      const std::string prefix = "spec.healthCheckNodePort: Invalid value: " + std::to_string(hc) + ": ";
      if (!allocator.in_range(hc))
        reject(svc.health_check_node_port_where, prefix + "provided port is not in the valid range. The range of valid ports is " + range_text);
      else if (own.contains(hc) || !allocator.holder(hc).empty())
        reject(svc.health_check_node_port_where, prefix + "provided port is already allocated");
    }
    if (!rejections.empty()) {
      errors.insert(errors.end(), rejections.begin(), rejections.end());
      continue;
    }
    for (uint16_t p : own) allocator.claim(p, owner);
    if (svc.health_check_node_port) allocator.claim(svc.health_check_node_port, owner + " (healthCheckNodePort)");

    // Backends: every eligible node, or with externalTrafficPolicy Local only
    // those with a ready endpoint of the service.
    std::vector<const ResolvedNode*> backends;
    std::optional<std::set<std::string>> local;
    if (svc.external_traffic_policy == TrafficPolicy::Local) {
      local = nodes_with_local_endpoints(svc, objects);
      if (!local)
        notes.push_back(ConfigError{svc.meta.where, id + ": externalTrafficPolicy Local without an EndpointSlice; "
                                                        "every node stays a backend"}
                            .format());
    }
    for (const auto& n : model.nodes)
      if (!local || local->contains(n.name)) backends.push_back(&n);

    ResolvedService rs;
    rs.namespace_ = svc.meta.namespace_;
    rs.name = svc.meta.name;
    rs.type = svc.type;
    rs.external_traffic_policy = svc.external_traffic_policy;
    rs.session_affinity = svc.session_affinity;
    rs.affinity_timeout_seconds = svc.affinity_timeout_seconds;
    for (const auto& port : svc.ports) {
      ResolvedServicePort rp;
      rp.spec = port;
      for (const auto* n : backends) rp.backends.push_back({n->address, port.node_port, n->name});
      std::sort(rp.backends.begin(), rp.backends.end());
      rs.ports.push_back(std::move(rp));
    }
    model.services.push_back(std::move(rs));
  }
  std::stable_sort(model.services.begin(), model.services.end(), [](const auto& a, const auto& b) {
    return std::tie(a.namespace_, a.name) < std::tie(b.namespace_, b.name);
  });
  return model;
}

}  // namespace nplb
