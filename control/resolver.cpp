#include "control/resolver.hpp"

#include "control/yaml_reader.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "control/nodeport_store.hpp"

namespace nplb {

namespace {

constexpr const char* kExcludeFromLoadBalancers = "node.kubernetes.io/exclude-from-external-load-balancers";
constexpr const char* kServiceProxyName = "service.kubernetes.io/service-proxy-name";
constexpr const char* kHeadless = "service.kubernetes.io/headless";
constexpr const char* kBackendsAnnotation = "nplb.io/backends";
constexpr const char* kHealthPrefix = "nplb.io/health-";

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

// How pods are reached: through the node whose podCIDRs hold them, or the
// node the endpoint names; directly when they sit on one of our links.
struct PodRoutes {
  std::vector<Cidr> links;
  std::vector<std::pair<Cidr, IpAddr>> pod_cidrs;         // podCIDR -> node address
  std::unordered_map<std::string, IpAddr> node_address;   // any known node, ready or not

  PodRoutes(const ApplianceConfig& config, const ClusterObjects& objects) {
    IpFamily family = config.forwarding.frontends.empty() ? IpFamily::v4 : config.forwarding.frontends[0].family;
    for (const auto& port : config.dataplane.ports) links.insert(links.end(), port.addresses.begin(), port.addresses.end());
    for (const auto& n : config.cluster.nodes) node_address.emplace(n.name, n.address);
    for (const auto& node : objects.nodes) {
      auto address = node_backend_address(node, family);
      if (!address) continue;
      node_address.emplace(node.meta.name, *address);
      for (const auto& c : node.pod_cidrs) pod_cidrs.emplace_back(c, *address);
    }
  }
  // nullopt: unreachable. An unspecified address: on link, no next hop.
  std::optional<IpAddr> via(const IpAddr& pod, const std::string& node_name) const {
    for (const auto& c : links)
      if (c.contains(pod)) return IpAddr{};
    for (const auto& [cidr, address] : pod_cidrs)
      if (cidr.contains(pod)) return address;
    if (auto it = node_address.find(node_name); it != node_address.end()) return it->second;
    return std::nullopt;
  }
};

using SliceIndex = std::unordered_map<std::string, std::vector<const EndpointSlice*>>;  // "ns/service" -> slices

// Nodes with a ready endpoint of the service (ETP Local); when none has one,
// nodes with a serving terminating one (KEP-1669), marked `terminating`.
// Empty optional when no EndpointSlice of the service was loaded at all.
std::optional<std::map<std::string, bool>> local_endpoint_nodes(const std::vector<const EndpointSlice*>* slices) {
  if (!slices || slices->empty()) return std::nullopt;
  std::map<std::string, bool> ready, terminating;
  for (const auto* slice : *slices)
    for (const auto& ep : slice->endpoints) {
      if (ep.node_name.empty()) continue;
      if (ep.ready) ready[ep.node_name] = false;
      else if (ep.serving && ep.terminating) terminating[ep.node_name] = true;
    }
  return ready.empty() ? terminating : ready;
}

// The port a pod serves `port` on, from its slice: the slice port named as
// the service port (what the EndpointSlice controller writes), else the one
// named as a named targetPort (hand-written slices), else a numeric targetPort.
std::optional<uint16_t> slice_port(const EndpointSlice& slice, const ServicePortSpec& port) {
  for (const auto& p : slice.ports)
    if (p.name == port.name && p.protocol == port.protocol && p.port) return p.port;
  if (const auto* name = std::get_if<std::string>(&port.target_port)) {
    for (const auto& p : slice.ports)
      if (p.name == *name && p.protocol == port.protocol && p.port) return p.port;
    return std::nullopt;
  }
  return std::get<uint16_t>(port.target_port);
}

class Resolver {
 public:
  Resolver(const ApplianceConfig& config, const ClusterObjects& objects, const ResolveOptions& options,
           std::vector<ConfigError>& errors, std::vector<std::string>& notes)
      : config_(config), objects_(objects), options_(options), errors_(errors), notes_(notes),
        range_(config.cluster.node_port_range), allocator_(range_), routes_(config, objects) {
    range_text_ = std::to_string(range_.first) + "-" + std::to_string(range_.last);
  }

  ResolveOutput run() {
    out_.model.frontends = config_.forwarding.frontends;
    NodeSet nodes;
    add_nodes(config_, objects_, nodes, errors_, notes_);
    out_.model.nodes = nodes.nodes;
    for (const auto& slice : objects_.endpoint_slices)
      if (!slice.service_name.empty()) slices_[slice.meta.namespace_ + "/" + slice.service_name].push_back(&slice);

    // Exposed services. Those in force before keep their nodePorts ahead of
    // newcomers; among equals, file order decides (the first got it from the cluster).
    std::vector<const Service*> order;
    for (const auto& svc : objects_.services)
      if (exposed(svc)) order.push_back(&svc);
    std::stable_partition(order.begin(), order.end(), [&](const Service* s) {
      return options_.previous && options_.previous->contains(object_id(s->meta));
    });
    // The service that held a port in the previous load keeps it while its
    // version in force still asks for it: an update of another service that
    // asks for it is refused, as the API server would refuse it.
    if (options_.previous)
      for (const Service* svc : order) {
        const std::string id = object_id(svc->meta);
        auto prev = options_.previous->find(id);
        if (prev == options_.previous->end()) continue;
        std::set<uint16_t> held;
        for (const auto& p : prev->second.ports) held.insert(p.node_port);
        held.insert(prev->second.health_check_node_port);
        for (const auto& p : svc->ports)
          if (p.node_port && held.contains(p.node_port)) reserved_.emplace(p.node_port, id);
        if (svc->health_check_node_port && held.contains(svc->health_check_node_port))
          reserved_.emplace(svc->health_check_node_port, id);
      }
    // Automatic allocation never takes a port some service of this load asks
    // for by number: those came from the cluster (or the user) first.
    for (const Service* svc : order) {
      for (const auto& p : svc->ports)
        if (p.node_port) requested_.insert(p.node_port);
      if (svc->health_check_node_port) requested_.insert(svc->health_check_node_port);
    }
    // nplb's stored allocations are held before anyone asks for a port.
    if (options_.allocations)
      for (const Service* svc : order)
        for (const auto& port : svc->ports)
          if (port.node_port == 0 && backend_kind(*svc, nullptr) == BackendKind::pods) {
            auto it = options_.allocations->find(key(*svc, port));
            if (it != options_.allocations->end() && range_.contains(it->second) &&
                allocator_.holder(it->second).empty())
              allocator_.claim(it->second, object_id(svc->meta));
          }

    for (const Service* svc : order) {
      const std::string id = object_id(svc->meta);
      std::vector<ConfigError> rejections;
      if (try_service(*svc, rejections)) continue;
      const Service* previous = nullptr;
      if (options_.previous)
        if (auto it = options_.previous->find(id); it != options_.previous->end()) previous = &it->second;
      std::vector<ConfigError> again;
      if (previous && exposed(*previous) && try_service(*previous, again)) {
        for (auto& r : rejections) r.message += "; keeping the previous version";
        out_.kept_previous.push_back(id);
      }
      errors_.insert(errors_.end(), rejections.begin(), rejections.end());
    }
    std::stable_sort(out_.model.services.begin(), out_.model.services.end(), [](const auto& a, const auto& b) {
      return std::tie(a.namespace_, a.name) < std::tie(b.namespace_, b.name);
    });
    return std::move(out_);
  }

 private:
  bool exposed(const Service& svc) {
    if (svc.type != ServiceType::NodePort && svc.type != ServiceType::LoadBalancer) return false;
    if (auto it = svc.meta.labels.find(kServiceProxyName); it != svc.meta.labels.end()) {
      notes_.push_back(ConfigError{svc.meta.where, "Service " + object_id(svc.meta) + ": labelled " +
                                                       std::string(kServiceProxyName) + "=" + it->second +
                                                       " for another proxy; not exposed"}
                           .format());
      return false;
    }
    return svc.cluster_ip != "None" && !svc.meta.labels.contains(kHeadless);
  }

  bool reserved_by_other(uint16_t port, const std::string& owner) const {
    auto it = reserved_.find(port);
    return it != reserved_.end() && it->second != owner;
  }

  static std::string key(const Service& svc, const ServicePortSpec& port) {
    return node_port_key(svc.meta.namespace_, svc.meta.name, port.name, port.protocol);
  }

  // The service's backend kind; a bad annotation is reported into `problem`.
  BackendKind backend_kind(const Service& svc, std::string* problem) const {
    auto it = svc.meta.annotations.find(kBackendsAnnotation);
    if (it == svc.meta.annotations.end()) return config_.forwarding.backends;
    if (it->second == "nodes") return BackendKind::nodes;
    if (it->second == "pods") return BackendKind::pods;
    if (problem)
      *problem = std::string("metadata.annotations[") + kBackendsAnnotation + "]: Unsupported value: \"" + it->second +
                 "\": supported values: \"nodes\", \"pods\"";
    return config_.forwarding.backends;
  }

  // The health settings of a service: the configured defaults, with its
  // nplb.io/health-{probe,interval,timeout,rise,fall,path,status} annotations.
  HealthSettings health_settings(const Service& svc, std::string* problem) const {
    HealthSettings h = config_.health;
    auto bad = [&](const std::string& key, const std::string& value, const std::string& expected) {
      if (problem->empty())
        *problem = "metadata.annotations[" + key + "]: Invalid value: \"" + value + "\": " + expected;
    };
    auto number = [](const std::string& v, uint64_t lo, uint64_t hi) -> std::optional<uint64_t> {
      if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
      uint64_t n = std::stoull(v);
      if (n < lo || n > hi) return std::nullopt;
      return n;
    };
    for (const auto& [key, value] : svc.meta.annotations) {
      if (!key.starts_with(kHealthPrefix)) continue;
      std::string what = key.substr(std::string_view(kHealthPrefix).size());
      if (what == "probe") {
        if (value == "tcp") h.probe = HealthProbe::tcp;
        else if (value == "http") h.probe = HealthProbe::http;
        else if (value == "none") h.probe = HealthProbe::none;
        else bad(key, value, "supported values: \"tcp\", \"http\", \"none\"");
      } else if (what == "interval" || what == "timeout") {
        auto us = yaml::parse_duration_us(value);
        if (!us || *us % 1000 || *us < 10'000 || *us > 3'600'000'000ull)
          bad(key, value, "a duration between 10ms and 1h, such as \"1s\" or \"500ms\"");
        else
          (what == "interval" ? h.interval : h.timeout) = *us / 1000;
      } else if (what == "rise" || what == "fall") {
        auto n = number(value, 1, 100);
        if (!n) bad(key, value, "a whole number from 1 to 100");
        else (what == "rise" ? h.rise : h.fall) = static_cast<uint32_t>(*n);
      } else if (what == "path") {
        if (value.empty() || value[0] != '/') bad(key, value, "an HTTP path starting with '/'");
        else h.http_path = value;
      } else if (what == "status") {
        auto n = number(value, 100, 599);
        if (!n) bad(key, value, "an HTTP status from 100 to 599");
        else h.http_status = static_cast<int>(*n);
      } else {
        bad(key, value, "unknown health annotation; known: nplb.io/health-probe, -interval, -timeout, -rise, -fall, -path, -status");
      }
    }
    if (problem->empty() && h.timeout >= h.interval)
      *problem = "metadata.annotations[nplb.io/health-timeout]: Invalid value: " + std::to_string(h.timeout) +
                 "ms: must be shorter than the interval (" + std::to_string(h.interval) + "ms)";
    return h;
  }

  // Resolves one version of a service; all or nothing.
  bool try_service(const Service& svc, std::vector<ConfigError>& rejections) {
    const std::string owner = object_id(svc.meta);
    const std::string id = "Service " + owner;
    auto reject = [&](const SourceLocation& where, const std::string& text) {
      rejections.push_back({where, id + ": " + text});
    };
    std::string annotation_problem;
    BackendKind kind = backend_kind(svc, &annotation_problem);
    if (!annotation_problem.empty()) reject(svc.meta.where, annotation_problem);
    std::string health_problem;
    HealthSettings health = health_settings(svc, &health_problem);
    if (!health_problem.empty()) reject(svc.meta.where, health_problem);

    std::set<uint16_t> own;
    std::vector<size_t> to_allocate;
    for (size_t i = 0; i < svc.ports.size(); ++i) {
      const auto& port = svc.ports[i];
      const std::string path = "spec.ports[" + std::to_string(i) + "].nodePort";
      const std::string value = std::to_string(port.node_port);
      if (port.node_port == 0) {
        if (kind == BackendKind::pods && !config_.state_dir.empty()) {
          to_allocate.push_back(i);
        } else if (kind == BackendKind::pods) {
          reject(port.node_port_where,
                 path + ": Required value: with pod backends nplb allocates the nodePort itself and must keep it "
                        "across restarts: set state_dir in the configuration, or write a nodePort here");
        } else {
          reject(port.node_port_where,
                 path + ": Required value: nplb sends to NodeIP:nodePort, and only the cluster knows the port it "
                        "allocated; write that nodePort here (kubectl get service " + svc.meta.name + " -n " +
                     svc.meta.namespace_ + " -o yaml prints it)");
        }
      } else if (!allocator_.in_range(port.node_port)) {
        reject(port.node_port_where, path + ": Invalid value: " + value +
                                         ": provided port is not in the valid range. The range of valid ports is " +
                                         range_text_);
      } else if (auto holder = allocator_.holder(port.node_port);
                 (!holder.empty() && holder != owner) || reserved_by_other(port.node_port, owner)) {
        reject(port.node_port_where, path + ": Invalid value: " + value + ": provided port is already allocated");
      } else {
        own.insert(port.node_port);
      }
    }
    // healthCheckNodePort comes from the same allocator; a service's own
    // nodePort is taken too, so it collides as well.
    if (uint16_t hc = svc.health_check_node_port; hc != 0) {
      const std::string prefix = "spec.healthCheckNodePort: Invalid value: " + std::to_string(hc) + ": ";
      if (!allocator_.in_range(hc))
        reject(svc.health_check_node_port_where,
               prefix + "provided port is not in the valid range. The range of valid ports is " + range_text_);
      else if (own.contains(hc) || !allocator_.holder(hc).empty() || reserved_by_other(hc, owner))
        reject(svc.health_check_node_port_where, prefix + "provided port is already allocated");
    }
    if (!rejections.empty()) {
      allocator_.release_all(owner);  // stored allocations held for it
      return false;
    }
    for (uint16_t p : own) allocator_.claim(p, owner);
    if (svc.health_check_node_port) allocator_.claim(svc.health_check_node_port, owner + " (healthCheckNodePort)");

    // nplb's own allocations: the stored port when it is still this service's, else a new one.
    std::vector<ServicePortSpec> ports = svc.ports;
    std::set<size_t> allocated;
    for (size_t i : to_allocate) {
      const std::string k = key(svc, ports[i]);
      std::optional<uint16_t> port;
      if (options_.allocations)
        if (auto it = options_.allocations->find(k); it != options_.allocations->end() &&
                                                     range_.contains(it->second) &&
                                                     (allocator_.holder(it->second).empty() ||
                                                      allocator_.holder(it->second) == owner) &&
                                                     !own.contains(it->second))
          port = it->second;
      if (!port)
        port = allocate_node_port(
            range_, [&](uint16_t p) { return !allocator_.holder(p).empty() || requested_.contains(p) || reserved_by_other(p, owner); },
            k);
      if (!port) {
        reject(ports[i].node_port_where, "spec.ports[" + std::to_string(i) +
                                             "].nodePort: Internal error: failed to allocate a nodePort: range is full");
        allocator_.release_all(owner);
        allocator_.release_all(owner + " (healthCheckNodePort)");
        return false;
      }
      allocator_.claim(*port, owner);
      own.insert(*port);
      ports[i].node_port = *port;
      allocated.insert(i);
    }
    for (size_t i : allocated) out_.allocations[key(svc, ports[i])] = ports[i].node_port;

    ResolvedService rs;
    rs.namespace_ = svc.meta.namespace_;
    rs.name = svc.meta.name;
    rs.type = svc.type;
    rs.external_traffic_policy = svc.external_traffic_policy;
    rs.session_affinity = svc.session_affinity;
    rs.affinity_timeout_seconds = svc.affinity_timeout_seconds;
    rs.backends = kind;
    rs.health_check_node_port = svc.health_check_node_port;
    rs.health = health;
    auto slices_it = slices_.find(owner);
    const std::vector<const EndpointSlice*>* slices = slices_it == slices_.end() ? nullptr : &slices_it->second;

    std::vector<ResolvedBackend> node_backends;
    if (kind == BackendKind::nodes) {
      // Every eligible node, or with externalTrafficPolicy Local only those
      // with a ready endpoint of the service.
      std::optional<std::map<std::string, bool>> local;
      if (svc.external_traffic_policy == TrafficPolicy::Local) {
        local = local_endpoint_nodes(slices);
        if (!local)
          notes_.push_back(ConfigError{svc.meta.where, id + ": externalTrafficPolicy Local without an EndpointSlice; "
                                                            "every node stays a backend"}
                               .format());
      }
      for (const auto& n : out_.model.nodes) {
        if (!local) {
          node_backends.push_back({n.address, 0, n.name, IpAddr{}, false});
        } else if (auto it = local->find(n.name); it != local->end()) {
          node_backends.push_back({n.address, 0, n.name, IpAddr{}, it->second});
        }
      }
    }
    size_t unreachable = 0, ipv6 = 0;
    std::string first_unreachable;
    for (size_t i = 0; i < ports.size(); ++i) {
      ResolvedServicePort rp;
      rp.spec = ports[i];
      rp.node_port_allocated = allocated.contains(i);
      if (kind == BackendKind::nodes) {
        rp.backends = node_backends;
        for (auto& b : rp.backends) b.port = rp.spec.node_port;
      } else {
        pod_backends(rp, slices, unreachable, ipv6, first_unreachable);
      }
      std::sort(rp.backends.begin(), rp.backends.end());
      rp.backends.erase(std::unique(rp.backends.begin(), rp.backends.end(),
                                    [](const ResolvedBackend& a, const ResolvedBackend& b) {
                                      return a.address == b.address && a.port == b.port;
                                    }),
                        rp.backends.end());
      rs.ports.push_back(std::move(rp));
    }
    if (unreachable)
      notes_.push_back(ConfigError{svc.meta.where, id + ": " + std::to_string(unreachable) +
                                                       " endpoint(s) skipped: no node holds their address in its "
                                                       "podCIDRs, their nodeName is not a known node, and they are "
                                                       "on no link of the appliance (first: " +
                                                       first_unreachable + ")"}
                           .format());
    if (ipv6)
      notes_.push_back(ConfigError{svc.meta.where, id + ": " + std::to_string(ipv6) +
                                                       " IPv6 EndpointSlice(s) skipped: the data path is IPv4 for now"}
                           .format());
    out_.model.services.push_back(std::move(rs));
    out_.accepted.insert_or_assign(owner, svc);
    return true;
  }

  // Pod backends of one port: ready endpoints; serving terminating ones only
  // when no ready one exists.
  void pod_backends(ResolvedServicePort& rp, const std::vector<const EndpointSlice*>* slices, size_t& unreachable,
                    size_t& ipv6, std::string& first_unreachable) {
    if (!slices) return;
    std::vector<ResolvedBackend> ready, terminating;
    for (const auto* slice : *slices) {
      if (slice->address_type != IpFamily::v4) {
        ++ipv6;
        continue;
      }
      auto port = slice_port(*slice, rp.spec);
      if (!port) continue;  // this slice's pods do not serve the named port
      for (const auto& ep : slice->endpoints) {
        if (ep.addresses.empty()) continue;
        bool use_ready = ep.ready;
        bool use_terminating = !ep.ready && ep.serving && ep.terminating;
        if (!use_ready && !use_terminating) continue;
        // Consumers use the first address (discovery.k8s.io/v1).
        const IpAddr& pod = ep.addresses.front();
        auto via = routes_.via(pod, ep.node_name);
        if (!via) {
          if (unreachable++ == 0) first_unreachable = pod.str();
          continue;
        }
        ResolvedBackend b{pod, *port, ep.node_name, *via, use_terminating};
        (use_ready ? ready : terminating).push_back(std::move(b));
      }
    }
    rp.backends = ready.empty() ? std::move(terminating) : std::move(ready);
  }

  const ApplianceConfig& config_;
  const ClusterObjects& objects_;
  const ResolveOptions& options_;
  std::vector<ConfigError>& errors_;
  std::vector<std::string>& notes_;
  PortRange range_;
  std::string range_text_;
  NodePortAllocator allocator_;
  PodRoutes routes_;
  SliceIndex slices_;
  std::map<uint16_t, std::string> reserved_;
  std::set<uint16_t> requested_;  // asked for by number in this load  // port -> the service that held it before
  ResolveOutput out_;
};

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

ResolveOutput resolve(const ApplianceConfig& config, const ClusterObjects& objects, const ResolveOptions& options,
                      std::vector<ConfigError>& errors, std::vector<std::string>& notes) {
  return Resolver(config, objects, options, errors, notes).run();
}

Model resolve_model(const ApplianceConfig& config, const ClusterObjects& objects, std::vector<ConfigError>& errors,
                    std::vector<std::string>& notes) {
  return resolve(config, objects, ResolveOptions{}, errors, notes).model;
}

}  // namespace nplb
