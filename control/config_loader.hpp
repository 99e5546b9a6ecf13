// The configuration loader that lives as long as the appliance: load() reads
// the config file and its manifests, validates, resolves, and reports what
// changed since the previous load. It is called again on every reload:
//   - a YAML syntax error or a settings error makes the result `fatal`: the
//     caller keeps the running configuration, and nothing here is committed;
//   - an invalid Kubernetes object is rejected alone; if an earlier version of
//     it was valid, that version stays in force ("...; keeping the previous
//     version"), as the API server would have refused the update;
//   - manifest files that did not change (device, inode, size, mtime; content
//     hash when the mtime is too recent to trust) are not parsed again;
//   - settings that take effect only at start are listed in `restart_required`;
//   - nplb's own nodePort allocations (pod backends without a nodePort) are
//     kept in state_dir and written only by a load that is neither fatal nor
//     a dry run.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/manifests.hpp"
#include "control/model.hpp"
#include "control/nodeport_store.hpp"

namespace nplb {

// The config file alone: settings and their errors (`fatal` when any).
struct SettingsLoad {
  std::optional<ApplianceConfig> config;  // absent when the file does not parse
  std::vector<ConfigError> errors;
  bool fatal = false;
};
SettingsLoad parse_settings(const std::string& config_file);

// The dotted names of start-only settings that differ: everything under
// `dataplane`, `api.listen`, `forwarding.mode`, `forwarding.snat`,
// `forwarding.snat_ports`, `forwarding.maglev`, `state_dir`.
std::vector<std::string> restart_only_changes(const ApplianceConfig& before, const ApplianceConfig& after);

// What differs between two models, in human lines.
ModelChanges diff_models(const Model& before, const Model& after);

class ConfigLoader {
 public:
  explicit ConfigLoader(std::string config_file);

  // Loads everything again. `dry_run` (--check, a preview) computes
  // allocations but writes nothing and commits nothing: the next load
  // compares against the last real one.
  LoadResult load(bool dry_run = false);

  const std::string& config_file() const { return config_file_; }
  size_t files_parsed_total() const { return parses_; }  // manifest parses over the loader's life
  const NodePortStore& node_ports() const { return store_; }

 private:
  struct CachedFile {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    uint64_t hash = 0;
    int64_t read_at_ns = 0;  // wall clock when read: a later write in the same tick changes nothing in stat
    std::shared_ptr<const ParsedManifest> parsed;
  };
  std::shared_ptr<const ParsedManifest> cached_or_null(const std::string& path);

  std::string config_file_;
  std::map<std::string, CachedFile> cache_;
  size_t parses_ = 0;
  NodePortStore store_;

  // The last load that was neither fatal nor a dry run.
  bool have_previous_ = false;
  ApplianceConfig previous_config_;
  ClusterObjects previous_objects_;
  std::map<std::string, Service> previous_accepted_;
  Model previous_model_;
};

}  // namespace nplb
