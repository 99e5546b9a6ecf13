// From the resolved model to the data plane's Snapshot.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control/model.hpp"
#include "dataplane/snapshot.hpp"

namespace nplb {

// Counter slots keep their meaning across reloads: a service port or backend
// keeps its id for as long as it exists, so per-worker counters stay valid.
class StableIds {
 public:
  uint32_t service(const std::string& label) { return id_of(services_, label, next_service_); }
  uint32_t backend(const std::string& label) { return id_of(backends_, label, next_backend_); }
  const std::map<std::string, uint32_t>& services() const { return services_; }
  const std::map<std::string, uint32_t>& backends() const { return backends_; }

 private:
  static uint32_t id_of(std::map<std::string, uint32_t>& ids, const std::string& label, uint32_t& next);
  std::map<std::string, uint32_t> services_, backends_;
  uint32_t next_service_ = 0, next_backend_ = 0;
};

struct BuiltSnapshot {
  std::unique_ptr<Snapshot> snapshot;
  // Labels of what this snapshot serves, for counters: "ns/name:port" and
  // "address:port", with their stable ids.
  std::vector<std::pair<std::string, uint32_t>> service_labels;
  std::vector<std::pair<std::string, uint32_t>> backend_labels;
};

// The counters label of a service port: "namespace/name:port". A second port
// with the same number (TCP and UDP 53) is told apart by "/UDP".
std::string service_port_label(const ResolvedService& service, const ResolvedServicePort& port);

// Maglev tables kept across snapshots: a reload rebuilds only the tables
// whose backend set changed. prune() drops what the newest snapshot no
// longer uses (older snapshots still hold theirs until RCU frees them).
class MaglevCache {
 public:
  std::shared_ptr<const MaglevTable> get(const std::vector<MaglevBackend>& backends, uint32_t size, uint64_t seed);
  void prune();  // keep only the tables used since the last prune
  size_t size() const { return tables_.size(); }
  uint64_t builds() const { return builds_; }

 private:
  struct Key {
    std::vector<std::string> keys;
    uint32_t size;
    uint64_t seed;
    auto operator<=>(const Key&) const = default;
  };
  std::map<Key, std::shared_ptr<const MaglevTable>> tables_;
  std::map<Key, bool> used_;
  uint64_t builds_ = 0;
};

// What health checks and the operator say of a backend of a service.
enum class BackendRotation {
  serve,    // up (or not checked): takes new connections
  drain,    // draining: no new connections; its connections keep going
  exclude,  // down: no new connections; UDP flows move, TCP per on_backend_removed
};
using BackendJudge =
    std::function<BackendRotation(const ResolvedService&, const ResolvedServicePort&, const ResolvedBackend&)>;

// Errors (too many services for the counter slots) throw std::runtime_error.
// tsc_hz converts affinity timeouts; 0 (tests without a clock) counts
// timeouts in nanoseconds.
BuiltSnapshot build_snapshot(const ApplianceConfig& config, const Model& model, const std::vector<MacAddr>& port_macs,
                             StableIds& ids, uint64_t generation, uint64_t tsc_hz = 0, MaglevCache* cache = nullptr,
                             const BackendJudge& judge = {});

}  // namespace nplb
