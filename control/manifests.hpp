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

// Which object an error is about: kind, namespace (empty for Nodes), name.
struct ObjectKey {
  std::string kind, namespace_, name;
  auto operator<=>(const ObjectKey&) const = default;
  std::string str() const { return kind + " " + (namespace_.empty() ? "" : namespace_ + "/") + name; }
};

// One file's objects, read and validated on their own: what a reload may take
// again unparsed when the file did not change.
struct ParsedManifest {
  std::string path;
  std::vector<Service> services;
  std::vector<Node> nodes;
  std::vector<EndpointSlice> endpoint_slices;
  struct Error {
    ObjectKey key;  // name empty: not about one object (syntax, a list, no kind)
    ConfigError error;
  };
  std::vector<Error> errors;
  std::vector<std::pair<std::string, SourceLocation>> skipped_kinds;  // each once per file
  std::vector<std::string> notes;
  bool fatal = false;  // YAML syntax: nothing of the file can be trusted
};

ParsedManifest parse_manifest(const yaml::YamlFile& file);
ParsedManifest parse_manifest_text(std::string_view text, const std::string& name);

// Merges files, in order, into `result`: objects, errors, notes, `fatal`.
// Two definitions of one object: the first stays. An object rejected in this
// load whose earlier version (in `previous`, the objects of the last load) was
// valid keeps that version, as the API server would have refused the update.
class ManifestLoader {
 public:
  explicit ManifestLoader(LoadResult& result, const ClusterObjects* previous = nullptr)
      : result_(result), previous_(previous) {}

  void load_file(const std::string& path);
  void load_text(std::string_view text, const std::string& name);  // tests, and one day a watch
  void add(const ParsedManifest& file);
  // Call once after the last file: puts previous versions in place of
  // rejected objects and says so in their errors.
  void finish();
  const std::vector<ObjectKey>& kept_previous() const { return kept_previous_; }

 private:
  void note_skipped_kind(const std::string& kind, const SourceLocation& where);
  bool claim_identity(const std::string& kind, const ObjectMeta& meta);

  LoadResult& result_;
  const ClusterObjects* previous_;
  std::set<std::string> skipped_kinds_;
  std::map<ObjectKey, SourceLocation> seen_;
  std::map<ObjectKey, std::vector<size_t>> rejected_;  // key -> its errors' indices in result_.errors
  std::vector<ObjectKey> kept_previous_;
};

}  // namespace nplb
