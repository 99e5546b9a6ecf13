#include "control/yaml_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

namespace nplb::yaml {

namespace {

SourceLocation location_of(const std::string& file, const YAML::Mark& mark) {
  SourceLocation where{file, 0, 0};
  if (!mark.is_null() && mark.line >= 0) {
    where.line = mark.line + 1;
    where.column = mark.column + 1;
  }
  return where;
}

std::string join_path(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return path + "." + std::string(key);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// YAML 1.2 core schema integers, decimal only: [-]?[0-9]+.
bool looks_like_integer(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return all_digits(s);
}

bool is_true(std::string_view s) { return s == "true" || s == "True" || s == "TRUE"; }
bool is_false(std::string_view s) { return s == "false" || s == "False" || s == "FALSE"; }

// Walks every document once, bounded in depth and in total visits, and checks
// what yaml-cpp lets through: non-scalar keys and duplicate keys.
class StructureCheck {
 public:
  StructureCheck(const std::string& file, const Limits& limits, uint64_t budget, std::vector<ConfigError>& errors)
      : file_(file), limits_(limits), budget_(budget), errors_(errors) {}

  void walk(const YAML::Node& node, int depth) {
    if (stopped_) return;
    if (budget_ == 0) {
      report(node.Mark(), "document too large to walk: more than " + std::to_string(total_budget()) +
                              " node visits (aliases expanding without bound?)");
      stopped_ = true;
      return;
    }
    --budget_;
    if (depth > limits_.max_depth) {
      report(node.Mark(), "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
      stopped_ = true;
      return;
    }
    if (node.IsSequence()) {
      for (const auto& child : node) walk(child, depth + 1);
    } else if (node.IsMap()) {
      std::unordered_map<std::string, YAML::Mark> seen;
      for (const auto& pair : node) {
        const YAML::Node& key = pair.first;
        if (!key.IsScalar()) {
          report(key.Mark(), "mapping keys must be plain scalars, not " +
                                 std::string(key.IsMap() ? "a mapping" : key.IsSequence() ? "a sequence" : "null"));
        } else {
          auto [it, fresh] = seen.emplace(key.Scalar(), key.Mark());
          if (!fresh)
            report(key.Mark(), "duplicate key '" + key.Scalar() + "' (first given at line " +
                                   std::to_string(it->second.line + 1) + ", column " +
                                   std::to_string(it->second.column + 1) + ")");
        }
        walk(pair.second, depth + 1);
        if (stopped_) return;
      }
    }
  }

  uint64_t total_budget() const { return initial_; }
  void set_initial(uint64_t b) { initial_ = b; }

 private:
  void report(const YAML::Mark& mark, std::string message) {
    errors_.push_back({location_of(file_, mark), std::move(message)});
  }

  const std::string& file_;
  const Limits& limits_;
  uint64_t budget_;
  uint64_t initial_ = 0;
  std::vector<ConfigError>& errors_;
  bool stopped_ = false;
};

}  // namespace

YamlError::YamlError(SourceLocation where, std::string path, std::string detail)
    : std::runtime_error(path.empty() ? detail : path + ": " + detail),
      where_(std::move(where)),
      path_(std::move(path)),
      detail_(std::move(detail)) {}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// ---------------------------------------------------------------- files

YamlFile parse_text(std::string_view text, const std::string& path, const Limits& limits) {
  YamlFile out;
  out.path = path;
  if (text.size() > limits.max_file_bytes) {
    out.errors.push_back({{path, 0, 0},
                          "file is larger than " + std::to_string(limits.max_file_bytes >> 20) + " MiB"});
    return out;
  }
  try {
    // yaml-cpp reads from a stream; a copy of the text is the price.
    std::istringstream in{std::string(text)};
    out.documents = YAML::LoadAll(in);
  } catch (const YAML::DeepRecursion& e) {
    out.errors.push_back({location_of(path, e.mark), "nesting too deep for the YAML parser"});
    return out;
  } catch (const YAML::Exception& e) {
    out.errors.push_back({location_of(path, e.mark), "YAML syntax error: " + e.msg});
    return out;
  }
  uint64_t budget = limits.base_node_visits + text.size();
  StructureCheck check(path, limits, budget, out.errors);
  check.set_initial(budget);
  for (const auto& doc : out.documents) check.walk(doc, 1);
  return out;
}

YamlFile parse_file(const std::string& path, const Limits& limits) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    YamlFile out{path, {}, {{{path, 0, 0}, "is a directory, not a file"}}};
    return out;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    YamlFile out{path, {}, {{{path, 0, 0}, std::string("cannot read: ") + std::strerror(errno)}}};
    return out;
  }
  // Read at most one byte past the cap: enough to know the file is too big,
  // without trusting a size that may change under us (or a pipe's size of 0).
  std::string text;
  char chunk[65536];
  while (text.size() <= limits.max_file_bytes && in.read(chunk, sizeof chunk).gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (!in) break;
  }
  return parse_text(text, path, limits);
}

// ---------------------------------------------------------------- values

SourceLocation Value::where() const {
  if (where_override_) return *where_override_;
  return location_of(*file_, node_.Mark());
}

bool Value::is_quoted() const { return node_.IsScalar() && node_.Tag() != "?"; }

std::string Value::kind_name() const {
  if (!node_.IsDefined() || node_.IsNull()) return "null";
  if (node_.IsMap()) return "a mapping";
  if (node_.IsSequence()) return "a sequence";
  if (!is_quoted()) {
    if (looks_like_integer(node_.Scalar())) return "an integer (" + node_.Scalar() + ")";
    if (is_true(node_.Scalar()) || is_false(node_.Scalar())) return "a boolean (" + node_.Scalar() + ")";
  }
  return "a string (" + quote(node_.Scalar()) + ")";
}

void Value::fail(std::string detail) const { throw YamlError(where(), path_, std::move(detail)); }

Value Value::child(const YAML::Node& node, std::string_view key) const {
  return Value(node, file_, join_path(path_, key));
}

Value Value::element(const YAML::Node& node, size_t index) const {
  return Value(node, file_, path_ + "[" + std::to_string(index) + "]");
}

std::string Value::as_string() const {
  if (!node_.IsScalar()) fail("expected a string, got " + kind_name());
  return node_.Scalar();
}

std::string Value::as_nonempty_string() const {
  std::string s = as_string();
  if (s.empty()) fail("must not be empty");
  return s;
}

bool Value::as_bool() const {
  if (!node_.IsScalar() || is_quoted()) fail("expected a boolean (true or false), got " + kind_name());
  const std::string& s = node_.Scalar();
  if (is_true(s)) return true;
  if (is_false(s)) return false;
  fail("expected a boolean (true or false), got " + quote(s));
}

int64_t Value::as_int64(int64_t min, int64_t max) const {
  if (!node_.IsScalar() || is_quoted() || !looks_like_integer(node_.Scalar()))
    fail("expected an integer, got " + kind_name());
  std::string_view s = node_.Scalar();
  bool negative = s[0] == '-';
  if (s[0] == '-' || s[0] == '+') s.remove_prefix(1);
  if (s.size() > 1 && s[0] == '0') fail("integer " + node_.Scalar() + " has a leading zero (octal in YAML 1.1); write it in plain decimal");
  // Parse wide: 20 digits overflow int64 even before the range check.
  bool overflow = s.size() > 19;
  uint64_t magnitude = 0;
  for (char c : s) {
    if (overflow) break;
    magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!overflow && magnitude > (negative ? uint64_t(1) << 63 : uint64_t(INT64_MAX))) overflow = true;
  std::string range = "must be between " + std::to_string(min) + " and " + std::to_string(max);
  if (negative && min >= 0 && (overflow || magnitude > 0))
    fail(min == 0 ? "must not be negative, got " + node_.Scalar() : range + ", got " + node_.Scalar());
  if (overflow) fail(range + ", got " + node_.Scalar());
  int64_t v = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
  if (v < min || v > max) fail(range + ", got " + node_.Scalar());
  return v;
}

uint64_t Value::as_uint64(uint64_t min, uint64_t max) const {
  if (!node_.IsScalar() || is_quoted() || !looks_like_integer(node_.Scalar()))
    fail("expected an integer, got " + kind_name());
  std::string_view s = node_.Scalar();
  std::string range = "must be between " + std::to_string(min) + " and " + std::to_string(max);
  if (s[0] == '-') {
    std::string_view digits = s.substr(1);
    bool zero = std::all_of(digits.begin(), digits.end(), [](char c) { return c == '0'; });
    if (!zero) fail(min == 0 ? "must not be negative, got " + node_.Scalar() : range + ", got " + node_.Scalar());
  }
  if (s[0] == '-' || s[0] == '+') s.remove_prefix(1);
  if (s.size() > 1 && s[0] == '0') fail("integer " + node_.Scalar() + " has a leading zero (octal in YAML 1.1); write it in plain decimal");
  uint64_t v = 0;
  for (char c : s) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) fail(range + ", got " + node_.Scalar());
    v = v * 10 + d;
  }
  if (v < min || v > max) fail(range + ", got " + node_.Scalar());
  return v;
}

uint64_t Value::as_duration_us() const {
  if (!node_.IsScalar()) fail("expected a duration such as \"300s\", got " + kind_name());
  const std::string& text = node_.Scalar();
  if (looks_like_integer(text))
    fail("duration " + text + " has no unit; add one, e.g. \"" + text + "s\" or \"" + text +
         "ms\" (units: us, ms, s, m, h)");
  auto us = parse_duration_us(text);
  if (!us) fail("expected a duration such as \"500ms\", \"300s\", \"2m\" or \"1h\", got " + quote(text));
  return *us;
}

std::optional<uint64_t> parse_duration_us(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t total = 0;
  while (!s.empty()) {
    size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return std::nullopt;
    uint64_t n = 0;
    for (size_t i = 0; i < digits; ++i) n = n * 10 + static_cast<uint64_t>(s[i] - '0');
    s.remove_prefix(digits);
    uint64_t unit = 0;
    // Two-letter units first, so "ms" is not read as "m" followed by "s".
    if (s.starts_with("us")) unit = 1, s.remove_prefix(2);
    else if (s.starts_with("ms")) unit = 1'000, s.remove_prefix(2);
    else if (s.starts_with("s")) unit = 1'000'000, s.remove_prefix(1);
    else if (s.starts_with("m")) unit = 60'000'000, s.remove_prefix(1);
    else if (s.starts_with("h")) unit = 3'600'000'000, s.remove_prefix(1);
    else return std::nullopt;
    // n < 10^12 and unit <= 3.6 * 10^9: check before multiplying.
    if (n > (uint64_t(1) << 62) / unit || total + n * unit > (uint64_t(1) << 62)) return std::nullopt;
    total += n * unit;
  }
  return total;
}

uint64_t Value::as_duration_ms() const {
  uint64_t us = as_duration_us();
  if (us % 1000 != 0) fail("duration " + quote(node_.Scalar()) + " is not a whole number of milliseconds");
  return us / 1000;
}

PortRange Value::as_port_range() const {
  if (!node_.IsScalar()) fail("expected a port range such as \"30000-32767\", got " + kind_name());
  const std::string& text = node_.Scalar();
  auto dash = text.find('-');
  if (dash == std::string::npos || !all_digits(std::string_view(text).substr(0, dash)) ||
      !all_digits(std::string_view(text).substr(dash + 1)))
    fail("expected a port range such as \"30000-32767\", got " + quote(text));
  auto port = [&](std::string_view digits) -> uint16_t {
    if (digits.size() > 5) fail("port " + std::string(digits) + " in " + quote(text) + " must be between 1 and 65535");
    uint32_t v = 0;
    for (char c : digits) v = v * 10 + static_cast<uint32_t>(c - '0');
    if (v < 1 || v > 65535) fail("port " + std::string(digits) + " in " + quote(text) + " must be between 1 and 65535");
    return static_cast<uint16_t>(v);
  };
  PortRange r{port(std::string_view(text).substr(0, dash)), port(std::string_view(text).substr(dash + 1))};
  if (r.first > r.last) fail("port range " + quote(text) + " is reversed: the first port must not exceed the last");
  return r;
}

IpAddr Value::as_ip() const {
  if (!node_.IsScalar()) fail("expected an IP address, got " + kind_name());
  const std::string& text = node_.Scalar();
  if (auto ip = parse_ip(text)) return *ip;
  if (text.find('/') != std::string::npos) fail(quote(text) + " is a CIDR; expected a single IP address");
  bool leading_zero = false;
  for (size_t i = 0; i + 1 < text.size(); ++i)
    if (text[i] == '0' && (i == 0 || text[i - 1] == '.') && text[i + 1] >= '0' && text[i + 1] <= '9')
      leading_zero = true;
  if (leading_zero && text.find(':') == std::string::npos)
    fail(quote(text) + " is not a valid IP address: leading zeros are ambiguous (octal to some parsers)");
  fail(quote(text) + " is not a valid IP address");
}

Cidr Value::as_cidr() const {
  if (!node_.IsScalar()) fail("expected a CIDR such as \"198.51.100.1/24\", got " + kind_name());
  const std::string& text = node_.Scalar();
  if (auto cidr = parse_cidr(text)) return *cidr;
  if (text.find('/') == std::string::npos && parse_ip(text))
    fail(quote(text) + " has no prefix length; write it as a CIDR, e.g. \"" + text + "/24\"");
  fail(quote(text) + " is not a valid CIDR (address/prefix-length)");
}

MacAddr Value::as_mac() const {
  if (!node_.IsScalar()) fail("expected a MAC address, got " + kind_name());
  if (auto mac = parse_mac(node_.Scalar())) return *mac;
  fail(quote(node_.Scalar()) + " is not a MAC address (six hex pairs, e.g. \"02:00:00:00:00:01\")");
}

std::vector<Value> Value::items() const {
  if (!node_.IsSequence()) fail("expected a sequence, got " + kind_name());
  std::vector<Value> out;
  out.reserve(node_.size());
  size_t i = 0;
  for (const auto& n : node_) out.push_back(element(n, i++));
  return out;
}

std::vector<std::string> Value::as_string_list() const {
  std::vector<std::string> out;
  for (const auto& v : items()) out.push_back(v.as_string());
  return out;
}

// ---------------------------------------------------------------- mappings

MapReader::MapReader(const Value& map) : map_(map) {
  if (!map.is_map()) map.fail("expected a mapping, got " + map.kind_name());
}

MapReader::MapReader(const Value& map, std::initializer_list<std::string_view> known,
                     std::vector<ConfigError>* errors)
    : MapReader(map) {
  if (!errors) return;
  std::vector<std::string> candidates(known.begin(), known.end());
  for (const auto& pair : map.node()) {
    if (!pair.first.IsScalar()) continue;  // reported by the structure check
    const std::string& key = pair.first.Scalar();
    if (std::find(candidates.begin(), candidates.end(), key) != candidates.end()) continue;
    std::string where = map.path().empty() ? "unknown top-level key '" + key + "'"
                                           : "unknown key '" + key + "' in " + map.path();
    if (auto best = closest_match(key, candidates)) {
      where += "; did you mean '" + *best + "'?";
    } else {
      where += " (expected one of: ";
      for (size_t i = 0; i < candidates.size(); ++i) where += (i ? ", " : "") + candidates[i];
      where += ")";
    }
    errors->push_back({location_of(map.file(), pair.first.Mark()), where});
  }
}

std::optional<Value> MapReader::get(std::string_view key) const {
  for (const auto& pair : map_.node()) {
    if (pair.first.IsScalar() && pair.first.Scalar() == key) {
      Value v = map_.child(pair.second, key);
      // `key:` with nothing after it: yaml-cpp marks the null at the next
      // token, which may be lines away; point at the key instead.
      if (pair.second.IsNull()) v.set_where(Value(pair.first, &map_.file(), v.path()).where());
      return v;
    }
  }
  return std::nullopt;
}

Value MapReader::require(std::string_view key) const {
  if (auto v = get(key)) return *v;
  map_.fail("missing required key '" + std::string(key) + "'");
}

// ---------------------------------------------------------------- suggestions

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  size_t best = SIZE_MAX;
  const std::string* choice = nullptr;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best) {
      best = d;
      choice = &c;
    }
  }
  // Close enough to be a typo: at most a third of the word, and at least 2 edits allowed.
  size_t allowed = std::max<size_t>(2, word.size() / 3);
  if (choice && best <= allowed && best < word.size()) return *choice;
  return std::nullopt;
}

}  // namespace nplb::yaml
