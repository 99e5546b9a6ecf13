// From settings and Kubernetes objects to the model the data plane is built
// from: which services are exposed, on which nodePorts, toward which backends.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/model.hpp"

namespace nplb {

// The cluster's nodePort allocator as the API server keeps it: one owner per
// port number across all protocols, except that one service may use a number
// for both TCP and UDP. Claims are all-or-nothing per service.
class NodePortAllocator {
 public:
  explicit NodePortAllocator(PortRange range) : range_(range) {}

  const PortRange& range() const { return range_; }
  bool in_range(uint32_t port) const { return range_.contains(port); }
  // Who holds `port`, or an empty string.
  std::string holder(uint16_t port) const;
  void claim(uint16_t port, const std::string& owner) { owners_[port] = owner; }
  void release_all(const std::string& owner);

 private:
  PortRange range_;
  std::map<uint16_t, std::string> owners_;
};

// What a resolve may build on from the previous one (ConfigLoader).
struct ResolveOptions {
  // The Service versions in force after the previous load, by
  // "namespace/name". They keep their nodePorts ahead of newcomers, and one
  // rejected now (a taken nodePort, a bad annotation) falls back to its
  // previous version, as the API server would have refused the update.
  const std::map<std::string, Service>* previous = nullptr;
  // nplb's stored allocations (pod backends without a nodePort).
  const std::map<std::string, uint16_t>* allocations = nullptr;
};

struct ResolveOutput {
  Model model;
  std::map<std::string, Service> accepted;      // the versions in force, by "namespace/name"
  std::map<std::string, uint16_t> allocations;  // nplb's allocations in use now
  std::vector<std::string> kept_previous;       // "namespace/name"
};

// Builds the model. Services that cannot be exposed as written (nodePort out
// of range, already allocated, missing with node backends) are rejected into
// `errors`; everything else is resolved. Services come out sorted by
// (namespace, name) so the model never depends on file order.
ResolveOutput resolve(const ApplianceConfig& config, const ClusterObjects& objects, const ResolveOptions& options,
                      std::vector<ConfigError>& errors, std::vector<std::string>& notes);
Model resolve_model(const ApplianceConfig& config, const ClusterObjects& objects, std::vector<ConfigError>& errors,
                    std::vector<std::string>& notes);

// A node's data-plane address: InternalIP preferred, else ExternalIP, of the
// family the data path forwards in. Empty when it has none.
std::optional<IpAddr> node_backend_address(const Node& node, IpFamily family);

// Whether a Node object may receive load-balanced traffic (ETP Cluster): Ready,
// and not labelled node.kubernetes.io/exclude-from-external-load-balancers.
bool node_is_eligible(const Node& node);

}  // namespace nplb
