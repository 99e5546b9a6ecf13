#include "control/config_loader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "control/resolver.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A file written less than this before we read it may change again within
// the same mtime tick: its content hash is checked on the next load.
constexpr int64_t kRacyNs = 2'000'000'000;

bool same_ports(const std::vector<PortConfig>& a, const std::vector<PortConfig>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const PortConfig& x, const PortConfig& y) {
    return x.name == y.name && x.device == y.device && x.addresses == y.addresses && x.mac == y.mac &&
           x.gateway == y.gateway && x.kernel_address == y.kernel_address;
  });
}

bool same_neighbors(const std::vector<NeighborConfig>& a, const std::vector<NeighborConfig>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const NeighborConfig& x, const NeighborConfig& y) { return x.ip == y.ip && x.mac == y.mac; });
}

bool same_spec(const ServicePortSpec& a, const ServicePortSpec& b) {
  return a.name == b.name && a.protocol == b.protocol && a.port == b.port && a.target_port == b.target_port &&
         a.node_port == b.node_port;
}

std::string port_label(const ServicePortSpec& p) {
  return std::to_string(p.node_port) + "/" + std::string(protocol_name(p.protocol));
}

}  // namespace

std::vector<std::string> restart_only_changes(const ApplianceConfig& a, const ApplianceConfig& b) {
  std::vector<std::string> out;
  auto check = [&](bool same, const char* name) {
    if (!same) out.emplace_back(name);
  };
  const auto &da = a.dataplane, &db = b.dataplane;
  check(da.eal == db.eal, "dataplane.eal");
  check(da.workers == db.workers, "dataplane.workers");
  check(same_ports(da.ports, db.ports), "dataplane.ports");
  check(same_neighbors(da.neighbors, db.neighbors), "dataplane.neighbors");
  check(da.flows.capacity == db.flows.capacity, "dataplane.flows.capacity");
  check(da.flows.pipeline_above == db.flows.pipeline_above, "dataplane.flows.pipeline_above");
  check(da.flows.timeouts.tcp_established == db.flows.timeouts.tcp_established &&
            da.flows.timeouts.tcp_transitory == db.flows.timeouts.tcp_transitory &&
            da.flows.timeouts.udp == db.flows.timeouts.udp,
        "dataplane.flows.timeouts");
  check(da.idle.spin == db.idle.spin && da.idle.sleep_us == db.idle.sleep_us, "dataplane.idle");
  check(da.mbufs == db.mbufs, "dataplane.mbufs");
  check(da.rx_descriptors == db.rx_descriptors, "dataplane.rx_descriptors");
  check(da.tx_descriptors == db.tx_descriptors, "dataplane.tx_descriptors");
  check(a.api.listen == b.api.listen, "api.listen");
  const auto &fa = a.forwarding, &fb = b.forwarding;
  check(fa.mode == fb.mode, "forwarding.mode");
  check(fa.snat == fb.snat, "forwarding.snat");
  check(fa.snat_ports.first == fb.snat_ports.first && fa.snat_ports.last == fb.snat_ports.last,
        "forwarding.snat_ports");
  check(fa.maglev.seed == fb.maglev.seed && fa.maglev.min_table_size == fb.maglev.min_table_size &&
            fa.maglev.max_table_size == fb.maglev.max_table_size,
        "forwarding.maglev");
  check(a.state_dir == b.state_dir, "state_dir");
  return out;
}

ModelChanges diff_models(const Model& before, const Model& after) {
  ModelChanges c;
  c.first_load = false;
  if (before.frontends != after.frontends) {
    c.frontends_changed = 1;
    c.lines.push_back("frontends: changed");
  }
  std::map<std::string, IpAddr> old_nodes, new_nodes;
  for (const auto& n : before.nodes) old_nodes.emplace(n.name, n.address);
  for (const auto& n : after.nodes) new_nodes.emplace(n.name, n.address);
  for (const auto& [name, address] : new_nodes) {
    auto it = old_nodes.find(name);
    if (it == old_nodes.end()) {
      ++c.nodes_added;
      c.lines.push_back("node " + name + ": added (" + address.str() + ")");
    } else if (it->second != address) {
      ++c.nodes_added;
      ++c.nodes_removed;
      c.lines.push_back("node " + name + ": address " + it->second.str() + " -> " + address.str());
    }
  }
  for (const auto& [name, address] : old_nodes)
    if (!new_nodes.contains(name)) {
      ++c.nodes_removed;
      c.lines.push_back("node " + name + ": removed");
    }

  std::map<std::pair<std::string, std::string>, const ResolvedService*> old_services;
  for (const auto& s : before.services) old_services.emplace(std::make_pair(s.namespace_, s.name), &s);
  std::set<std::pair<std::string, std::string>> present;
  for (const auto& s : after.services) {
    auto id = std::make_pair(s.namespace_, s.name);
    present.insert(id);
    const std::string name = s.namespace_ + "/" + s.name;
    auto it = old_services.find(id);
    if (it == old_services.end()) {
      size_t backends = 0;
      std::string ports;
      for (const auto& p : s.ports) {
        backends += p.backends.size();
        ports += (ports.empty() ? "" : ", ") + port_label(p.spec);
      }
      ++c.services_added;
      c.changed_services.push_back(name);
      c.lines.push_back("service " + name + ": added (" + ports + "; " + std::to_string(backends) + " backends)");
      continue;
    }
    const ResolvedService& o = *it->second;
    std::vector<std::string> what;
    if (o.type != s.type) what.push_back("type");
    if (o.external_traffic_policy != s.external_traffic_policy) what.push_back("externalTrafficPolicy");
    if (o.session_affinity != s.session_affinity || o.affinity_timeout_seconds != s.affinity_timeout_seconds)
      what.push_back("sessionAffinity");
    if (o.backends != s.backends) what.push_back("backend kind");
    if (o.health_check_node_port != s.health_check_node_port) what.push_back("healthCheckNodePort");
    bool ports_same = std::equal(o.ports.begin(), o.ports.end(), s.ports.begin(), s.ports.end(),
                                 [](const auto& a, const auto& b) { return same_spec(a.spec, b.spec); });
    if (!ports_same) what.push_back("ports");
    // Backends: added and removed (address, port, next hop), over all ports.
    std::set<std::tuple<std::string, IpAddr, uint16_t, IpAddr, bool>> ob, nb;
    for (const auto& p : o.ports)
      for (const auto& b : p.backends) ob.emplace(p.spec.name, b.address, b.port, b.via, b.terminating);
    for (const auto& p : s.ports)
      for (const auto& b : p.backends) nb.emplace(p.spec.name, b.address, b.port, b.via, b.terminating);
    if (ob != nb) {
      size_t added = 0, removed = 0;
      for (const auto& b : nb) added += !ob.contains(b);
      for (const auto& b : ob) removed += !nb.contains(b);
      what.push_back("backends +" + std::to_string(added) + " -" + std::to_string(removed));
    }
    if (what.empty()) continue;
    std::string joined;
    for (const auto& w : what) joined += (joined.empty() ? "" : ", ") + w;
    ++c.services_updated;
    c.changed_services.push_back(name);
    c.lines.push_back("service " + name + ": updated (" + joined + ")");
  }
  for (const auto& [id, s] : old_services)
    if (!present.contains(id)) {
      ++c.services_removed;
      c.changed_services.push_back(id.first + "/" + id.second);
      c.lines.push_back("service " + id.first + "/" + id.second + ": removed");
    }
  return c;
}

ConfigLoader::ConfigLoader(std::string config_file) : config_file_(std::move(config_file)) {}

std::shared_ptr<const ParsedManifest> ConfigLoader::cached_or_null(const std::string& path) {
  auto it = cache_.find(path);
  if (it == cache_.end()) return nullptr;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  const CachedFile& c = it->second;
  int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (c.dev != st.st_dev || c.ino != st.st_ino || c.size != uint64_t(st.st_size) || c.mtime_ns != mtime)
    return nullptr;
  return c.mtime_ns + kRacyNs >= c.read_at_ns ? nullptr : c.parsed;  // too recent: let the hash decide
}

LoadResult ConfigLoader::load(bool dry_run) {
  LoadResult result;
  SettingsLoad settings = parse_settings(config_file_);
  result.errors = std::move(settings.errors);
  result.fatal = settings.fatal;
  if (!settings.config) return result;
  ApplianceConfig config = std::move(*settings.config);

  // Manifests: from the cache when unchanged, else read and parsed (in
  // parallel: yaml-cpp is the slow part of a first load).
  std::vector<std::string> files;
  for (const auto& entry : config.cluster.manifests)
    for (auto& path : manifest_files(entry)) files.push_back(std::move(path));
  std::vector<std::shared_ptr<const ParsedManifest>> parsed(files.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < files.size(); ++i) {
    parsed[i] = cached_or_null(files[i]);
    if (!parsed[i]) todo.push_back(i);
  }
  std::vector<CachedFile> fresh(files.size());
  std::vector<char> reparsed(files.size(), 0);
  auto read_one = [&](size_t i) {
    const std::string& path = files[i];
    CachedFile c;
    c.read_at_ns = now_ns();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      parsed[i] = std::make_shared<const ParsedManifest>(parse_manifest(yaml::parse_file(path)));  // its error
      reparsed[i] = 1;
      return;
    }
    c.dev = st.st_dev;
    c.ino = st.st_ino;
    c.size = uint64_t(st.st_size);
    c.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    std::string text;
    {
      std::ifstream in(path, std::ios::binary);
      text.resize(c.size);
      in.read(text.data(), std::streamsize(c.size));
      text.resize(size_t(in.gcount()));
    }
    c.hash = std::hash<std::string_view>{}(text) ^ text.size();
    if (auto it = cache_.find(path); it != cache_.end() && it->second.hash == c.hash && it->second.size == text.size()) {
      c.parsed = it->second.parsed;  // touched, or too recent to trust: same content
    } else {
      c.parsed = std::make_shared<const ParsedManifest>(parse_manifest(yaml::parse_text(text, path)));
      reparsed[i] = 1;
    }
    parsed[i] = c.parsed;
    fresh[i] = std::move(c);
  };
  unsigned threads = std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()), 8);
  if (todo.size() < 2) threads = 1;
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t k; (k = next.fetch_add(1)) < todo.size();) read_one(todo[k]);
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (size_t i : todo)
    if (fresh[i].parsed) cache_[files[i]] = std::move(fresh[i]);
  std::set<std::string> live(files.begin(), files.end());
  std::erase_if(cache_, [&](const auto& entry) { return !live.contains(entry.first); });
  for (size_t i = 0; i < files.size(); ++i) {
    result.files_parsed += reparsed[i];
    result.files_reused += !reparsed[i];
  }
  parses_ += result.files_parsed;

  ManifestLoader merger(result, have_previous_ ? &previous_objects_ : nullptr);
  for (const auto& p : parsed) merger.add(*p);
  merger.finish();

  // nplb's own nodePorts.
  ResolveOptions options;
  if (have_previous_) options.previous = &previous_accepted_;
  if (!config.state_dir.empty()) {
    if (auto error = store_.open(config.state_dir)) {
      result.errors.push_back(*error);
      result.fatal = true;
    }
    options.allocations = &store_.allocations();
  }
  ResolveOutput resolved = resolve(config, result.objects, options, result.errors, result.notes);
  result.model = std::move(resolved.model);

  if (have_previous_ && !result.fatal) {
    result.restart_required = restart_only_changes(previous_config_, config);
    result.changes = diff_models(previous_model_, result.model);
  } else {
    result.changes.first_load = !have_previous_;
  }
  if (!dry_run && !result.fatal) {
    if (!config.state_dir.empty() && config.state_dir == store_.state_dir()) {
      if (auto error = store_.commit(resolved.allocations)) {
        // Allocations that cannot be kept must not be served: a restart would move them.
        result.errors.push_back(*error);
        result.fatal = true;
      }
    }
    if (!result.fatal) {
      have_previous_ = true;
      previous_config_ = config;
      previous_objects_ = result.objects;
      previous_accepted_ = std::move(resolved.accepted);
      previous_model_ = result.model;
    }
  }
  result.config = std::move(config);
  return result;
}

}  // namespace nplb
