// Strict YAML access on top of yaml-cpp. yaml-cpp is lenient where a
// configuration must not be: it keeps duplicate mapping keys silently, reads
// `as<uint8_t>` as a character, and expands aliases without bound when a
// caller walks the tree. Everything here reports where a value sits in its
// file, so each error reads "file:line:column: message".
#pragma once

#include <yaml-cpp/depthguard.h>  // YAML::DeepRecursion
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/model.hpp"

namespace nplb::yaml {

// Caps that keep a hostile or broken file from exhausting the control thread.
struct Limits {
  uint64_t max_file_bytes = 64ull << 20;
  int max_depth = 64;
  // A document without aliases has fewer nodes than bytes; aliases share
  // nodes, so a walk can visit far more ("billion laughs"). Budget per file:
  uint64_t base_node_visits = 1'000'000;  // plus one visit per byte of text
};

// A value that is wrong where it stands. `path` is the dotted key path
// ("dataplane.ports[0].mac"), `detail` the problem; what() is "path: detail".
class YamlError : public std::runtime_error {
 public:
  YamlError(SourceLocation where, std::string path, std::string detail);
  const SourceLocation& where() const { return where_; }
  const std::string& path() const { return path_; }
  const std::string& detail() const { return detail_; }
  ConfigError to_config_error() const { return {where_, what()}; }

 private:
  SourceLocation where_;
  std::string path_;
  std::string detail_;
};

// The documents of one file, checked for structure (depth, alias expansion,
// non-scalar and duplicate keys). Any error there is as bad as a syntax error:
// `errors` is then non-empty and `documents` should not be used.
struct YamlFile {
  std::string path;
  std::vector<YAML::Node> documents;
  std::vector<ConfigError> errors;
};

YamlFile parse_file(const std::string& path, const Limits& limits = {});
YamlFile parse_text(std::string_view text, const std::string& path, const Limits& limits = {});

// A node with its file and its key path, and typed reads that throw YamlError.
class Value {
 public:
  Value(YAML::Node node, const std::string* file, std::string path)
      : node_(std::move(node)), file_(file), path_(std::move(path)) {}

  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }
  SourceLocation where() const;
  void set_where(SourceLocation where) { where_override_ = std::move(where); }

  bool is_null() const { return node_.IsNull(); }
  bool is_map() const { return node_.IsMap(); }
  bool is_sequence() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  // A scalar written in quotes (or tagged !!str): always a string, never a number.
  bool is_quoted() const;
  // "a mapping", "a sequence", "an integer", "a boolean", "a string", "null".
  std::string kind_name() const;
  // The scalar as written, for messages.
  // (yaml-cpp gives non-scalars an empty scalar.)
  const std::string& text() const { return node_.Scalar(); }

  [[noreturn]] void fail(std::string detail) const;

  Value child(const YAML::Node& node, std::string_view key) const;
  Value element(const YAML::Node& node, size_t index) const;

  // Typed reads. Integers are parsed as decimal text into 64 bits, range
  // checked, and only then narrowed.
  std::string as_string() const;                    // any non-null scalar
  std::string as_nonempty_string() const;
  bool as_bool() const;                             // true or false, unquoted
  int64_t as_int64(int64_t min, int64_t max) const;
  uint64_t as_uint64(uint64_t min, uint64_t max) const;
  template <class T>
  T as_integer(T min = std::numeric_limits<T>::min(), T max = std::numeric_limits<T>::max()) const {
    if constexpr (std::is_signed_v<T>)
      return static_cast<T>(as_int64(min, max));
    else
      return static_cast<T>(as_uint64(min, max));
  }
  uint64_t as_duration_us() const;       // "500ms", "300s", "2m", "1h", "100us", "1m30s"
  uint64_t as_duration_ms() const;       // a whole number of milliseconds
  PortRange as_port_range() const;       // "30000-32767", both ends 1..65535
  IpAddr as_ip() const;
  Cidr as_cidr() const;                  // interface form: host bits allowed
  MacAddr as_mac() const;
  std::vector<Value> items() const;      // a sequence's elements
  std::vector<std::string> as_string_list() const;

 private:
  YAML::Node node_;
  const std::string* file_;
  std::string path_;
  std::optional<SourceLocation> where_override_;
};

// A mapping read strictly: the keys it may hold are given up front; others
// are reported (with a "did you mean" suggestion) into `errors`. Pass no
// error list to ignore unknown keys, as Kubernetes clients do.
class MapReader {
 public:
  MapReader(const Value& map, std::initializer_list<std::string_view> known,
            std::vector<ConfigError>* errors);
  explicit MapReader(const Value& map);  // lenient: unknown keys ignored

  std::optional<Value> get(std::string_view key) const;  // absent: nullopt
  Value require(std::string_view key) const;             // absent: throws
  const Value& self() const { return map_; }

 private:
  Value map_;
};

// Levenshtein distance, and the closest candidate when it is close enough to
// be a likely typo.
size_t edit_distance(std::string_view a, std::string_view b);
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

std::string quote(std::string_view s);  // "\"text\"", for messages

// "500ms", "300s", "2m", "1h", "100us", "1m30s" in microseconds; nullopt when
// malformed, unit-less or beyond 2^62 us. Also used for annotation values.
std::optional<uint64_t> parse_duration_us(std::string_view text);

}  // namespace nplb::yaml
