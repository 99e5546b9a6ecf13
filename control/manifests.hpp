// Kubernetes objects as `kubectl get -o yaml` prints them: multi-document
// YAML, `kind: List` (or ServiceList, NodeList, ...) with `items`. Service (v1),
// Node (v1) and EndpointSlice (discovery.k8s.io/v1) are read; other kinds are
// skipped and noted once. Each object is validated as the API server would,
// and an invalid one is rejected on its own: the rest still applies.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "control/model.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {

// The files a `cluster.manifests` entry stands for: the file itself, or the
// *.yaml, *.yml and *.json files of a directory (not recursive), sorted.
std::vector<std::string> manifest_files(const std::string& path);

class ManifestLoader {
 public:
  // Objects land in `result.objects`; errors, notes and `fatal` (for YAML
  // syntax errors, which spoil a whole file) in `result` too.
  explicit ManifestLoader(LoadResult& result) : result_(result) {}

  void load_file(const std::string& path);
  void load_text(std::string_view text, const std::string& name);  // tests, and one day a watch

 private:
  struct Key {
    std::string kind, namespace_, name;
    auto operator<=>(const Key&) const = default;
  };

  void load_parsed(const yaml::YamlFile& file);
  void load_object(const yaml::Value& object);
  void note_skipped_kind(const std::string& kind, const SourceLocation& where);
  bool claim_identity(const std::string& kind, const ObjectMeta& meta);

  LoadResult& result_;
  std::set<std::string> skipped_kinds_;
  std::map<Key, SourceLocation> seen_;
};

}  // namespace nplb
