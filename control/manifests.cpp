#include "control/manifests.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>

namespace nplb {

namespace {

using yaml::MapReader;
using yaml::Value;
using yaml::YamlError;

// ---------------------------------------------------------------- name rules, as apimachinery states them

constexpr const char* kDns1123LabelRule =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
constexpr const char* kDns1035LabelRule =
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
constexpr const char* kDns1123SubdomainRule =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool dns1123_label_chars(std::string_view s) {
  if (s.empty() || !lower_alnum(s.front()) || !lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; });
}

// The first broken rule, or an empty string. Kubernetes reports length first.
std::string check_dns1123_label(std::string_view s) {
  if (s.size() > 63) return "must be no more than 63 characters";
  return dns1123_label_chars(s) ? "" : kDns1123LabelRule;
}

std::string check_dns1035_label(std::string_view s) {
  if (s.size() > 63) return "must be no more than 63 characters";
  bool ok = dns1123_label_chars(s) && s.front() >= 'a' && s.front() <= 'z';
  return ok ? "" : kDns1035LabelRule;
}

std::string check_dns1123_subdomain(std::string_view s) {
  if (s.size() > 253) return "must be no more than 253 characters";
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!dns1123_label_chars(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start)))
      return kDns1123SubdomainRule;
    if (dot == std::string_view::npos) return "";
    start = dot + 1;
  }
}

// IANA_SVC_NAME, the rule for named ports (targetPort: http).
std::string check_port_name(std::string_view s) {
  if (s.size() > 15) return "must be no more than 15 characters";
  if (!std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; }))
    return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
  if (!std::any_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
    return "must contain at least one letter (a-z)";
  if (s.find("--") != std::string_view::npos) return "must not contain consecutive hyphens";
  if (s.front() == '-' || s.back() == '-') return "must not begin or end with a hyphen";
  return "";
}

bool plain_integer_text(const std::string& s) {
  size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
  return s.size() > start && std::all_of(s.begin() + static_cast<std::ptrdiff_t>(start), s.end(),
                                         [](char c) { return c >= '0' && c <= '9'; });
}

std::string supported_list(std::initializer_list<std::string_view> values) {
  std::string out;
  for (auto v : values) out += (out.empty() ? "" : ", ") + yaml::quote(v);
  return out;
}

// ---------------------------------------------------------------- one object's field errors

// Collects the errors of one object in the API server's words
// ("spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
// and reads its fields leniently: unknown fields are ignored, null is absent,
// but a known field of the wrong type is an error.
class ObjectReader {
 public:
  explicit ObjectReader(std::string kind) : id_(std::move(kind)) {}

  void set_identity(const std::string& namespace_, const std::string& name) {
    std::string kind = id_.substr(0, id_.find(' '));
    key_ = ObjectKey{kind, namespace_, name};
    id_ = kind + " " + (namespace_.empty() ? "" : namespace_ + "/") + (name.empty() ? "(unnamed)" : name);
  }
  const std::string& id() const { return id_; }
  const ObjectKey& key() const { return key_; }
  const std::vector<ConfigError>& errors() const { return errors_; }
  bool ok() const { return errors_.empty(); }

  void add(const SourceLocation& where, const std::string& path, const std::string& text) {
    errors_.push_back({where, id_ + ": " + path + ": " + text});
  }
  void invalid(const Value& at, const std::string& shown, const std::string& detail) {
    add(at.where(), at.path(), "Invalid value: " + shown + ": " + detail);
  }
  void required(const SourceLocation& where, const std::string& path, const std::string& detail = "") {
    add(where, path, "Required value" + (detail.empty() ? "" : ": " + detail));
  }
  void unsupported(const Value& at, const std::string& value, std::initializer_list<std::string_view> supported) {
    add(at.where(), at.path(), "Unsupported value: " + yaml::quote(value) + ": supported values: " + supported_list(supported));
  }

  // How Kubernetes prints a value back: numbers bare, strings quoted.
  static std::string shown(const Value& v) {
    if (!v.is_scalar()) return v.is_map() ? "map[...]" : v.is_sequence() ? "[...]" : "null";
    return v.is_quoted() || !plain_integer_text(v.text()) ? yaml::quote(v.text()) : v.text();
  }

  // Field access. Each returns nothing when the field is absent or null, and
  // records an error when it has the wrong type.
  std::optional<Value> field(const Value& map, std::string_view key) {
    if (!map.is_map()) return std::nullopt;
    auto v = MapReader(map).get(key);
    if (!v || v->is_null()) return std::nullopt;
    return v;
  }
  std::optional<Value> map_field(const Value& map, std::string_view key) {
    auto v = field(map, key);
    if (v && !v->is_map()) {
      invalid(*v, shown(*v), "must be an object");
      return std::nullopt;
    }
    return v;
  }
  std::optional<std::vector<Value>> list_field(const Value& map, std::string_view key) {
    auto v = field(map, key);
    if (!v) return std::nullopt;
    if (!v->is_sequence()) {
      invalid(*v, shown(*v), "must be a list");
      return std::nullopt;
    }
    return v->items();
  }
  std::optional<std::string> string_field(const Value& map, std::string_view key) {
    auto v = field(map, key);
    if (!v) return std::nullopt;
    if (!v->is_scalar()) {
      invalid(*v, shown(*v), "must be a string");
      return std::nullopt;
    }
    return v->text();
  }
  // Integers: wide first, then the caller range-checks with Kubernetes' words.
  std::optional<int64_t> int_field(const Value& map, std::string_view key, std::optional<Value>* at = nullptr) {
    auto v = field(map, key);
    if (at) *at = v;
    if (!v) return std::nullopt;
    try {
      return v->as_int64(INT64_MIN, INT64_MAX);
    } catch (const YamlError&) {
      invalid(*v, shown(*v), "must be an integer");
      return std::nullopt;
    }
  }
  std::optional<bool> bool_field(const Value& map, std::string_view key) {
    auto v = field(map, key);
    if (!v) return std::nullopt;
    try {
      return v->as_bool();
    } catch (const YamlError&) {
      invalid(*v, shown(*v), "must be a boolean (true or false)");
      return std::nullopt;
    }
  }
  std::map<std::string, std::string> string_map(const Value& map, std::string_view key) {
    std::map<std::string, std::string> out;
    auto m = map_field(map, key);
    if (!m) return out;
    for (const auto& pair : m->node()) {
      Value v = m->child(pair.second, pair.first.Scalar());
      if (!v.is_scalar() && !v.is_null()) {
        invalid(v, shown(v), "must be a string");
        continue;
      }
      out[pair.first.Scalar()] = v.text();
    }
    return out;
  }

  // Port numbers: "must be between 1 and 65535, inclusive".
  std::optional<uint16_t> port_number(const Value& at, int64_t n) {
    if (n < 1 || n > 65535) {
      invalid(at, std::to_string(n), "must be between 1 and 65535, inclusive");
      return std::nullopt;
    }
    return static_cast<uint16_t>(n);
  }

 private:
  std::string id_;
  ObjectKey key_;
  std::vector<ConfigError> errors_;
};

// metadata: name (checked by `name_rule`), namespace, labels, annotations.
ObjectMeta read_meta(ObjectReader& r, const Value& object, bool namespaced,
                     const std::function<std::string(std::string_view)>& name_rule) {
  ObjectMeta meta;
  meta.where = object.where();
  if (!namespaced) meta.namespace_.clear();
  auto md = r.map_field(object, "metadata");
  std::optional<Value> name_at, ns_at;
  if (md) {
    name_at = r.field(*md, "name");
    if (auto name = r.string_field(*md, "name")) meta.name = *name;
    if (namespaced) {
      ns_at = r.field(*md, "namespace");
      if (auto ns = r.string_field(*md, "namespace"); ns && !ns->empty()) meta.namespace_ = *ns;
    }
    meta.labels = r.string_map(*md, "labels");
    meta.annotations = r.string_map(*md, "annotations");
  }
  r.set_identity(meta.namespace_, meta.name);
  if (meta.name.empty()) {
    r.required(name_at ? name_at->where() : md ? md->where() : object.where(), "metadata.name",
               "name or generateName is required");
  } else if (auto broken = name_rule(meta.name); !broken.empty()) {
    r.invalid(*name_at, yaml::quote(meta.name), broken);
  }
  if (ns_at) {
    if (auto broken = check_dns1123_label(meta.namespace_); !broken.empty())
      r.invalid(*ns_at, yaml::quote(meta.namespace_), broken);
  }
  return meta;
}

std::optional<L4Protocol> read_protocol(ObjectReader& r, const Value& map) {
  auto at = r.field(map, "protocol");
  if (!at) return L4Protocol::tcp;
  auto text = r.string_field(map, "protocol");
  if (!text) return std::nullopt;
  if (auto p = parse_protocol(*text)) return p;
  r.unsupported(*at, *text, {"SCTP", "TCP", "UDP"});
  return std::nullopt;
}

// ---------------------------------------------------------------- Service

std::optional<Service> read_service(const Value& object, ObjectReader& r) {
  Service svc;
  svc.meta = read_meta(r, object, true, check_dns1035_label);
  Value no_spec = object;  // where errors about a missing spec point
  auto spec = r.map_field(object, "spec");

  if (auto type_at = spec ? r.field(*spec, "type") : std::nullopt) {
    auto type = r.string_field(*spec, "type").value_or("");
    if (type == "ClusterIP") svc.type = ServiceType::ClusterIP;
    else if (type == "NodePort") svc.type = ServiceType::NodePort;
    else if (type == "LoadBalancer") svc.type = ServiceType::LoadBalancer;
    else if (type == "ExternalName") svc.type = ServiceType::ExternalName;
    else {
      r.unsupported(*type_at, type, {"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"});
      return std::nullopt;  // checks that depend on the type would only repeat the error
    }
  }
  bool exposed_type = svc.type == ServiceType::NodePort || svc.type == ServiceType::LoadBalancer;
  const std::string type_name(service_type_name(svc.type));

  if (spec) {
    if (auto ip = r.string_field(*spec, "clusterIP")) svc.cluster_ip = *ip;
    if (svc.cluster_ip == "None" && exposed_type)
      r.invalid(*r.field(*spec, "clusterIP"), "\"None\"", "may not be set to 'None' for " + type_name + " services");
    if (svc.type == ServiceType::ExternalName && !r.field(*spec, "externalName"))
      r.required(spec->where(), "spec.externalName");
  }

  // ---- ports
  auto ports = spec ? r.list_field(*spec, "ports") : std::nullopt;
  if ((!ports || ports->empty()) && svc.type != ServiceType::ExternalName)
    r.required(spec ? spec->where() : no_spec.where(), "spec.ports");
  if (ports) {
    std::map<std::string, size_t> names;
    std::set<std::pair<uint16_t, L4Protocol>> port_protocols, node_ports;
    for (size_t i = 0; i < ports->size(); ++i) {
      const Value& item = (*ports)[i];
      if (!item.is_map()) {
        r.invalid(item, ObjectReader::shown(item), "must be an object");
        continue;
      }
      ServicePortSpec port;
      port.where = item.where();
      port.node_port_where = item.where();
      std::optional<Value> name_at = r.field(item, "name");
      if (auto name = r.string_field(item, "name")) port.name = *name;
      if (port.name.empty()) {
        if (ports->size() > 1) r.required(item.where(), item.path() + ".name");
      } else {
        if (auto broken = check_dns1123_label(port.name); !broken.empty())
          r.invalid(*name_at, yaml::quote(port.name), broken);
        if (!names.emplace(port.name, i).second)
          r.add(name_at->where(), name_at->path(), "Duplicate value: " + yaml::quote(port.name));
      }
      auto protocol = read_protocol(r, item);
      if (protocol) port.protocol = *protocol;

      std::optional<Value> port_at;
      auto number = r.int_field(item, "port", &port_at);
      if (!port_at) {
        // Absent reads as 0, as the API server decodes it.
        r.add(item.where(), item.path() + ".port", "Invalid value: 0: must be between 1 and 65535, inclusive");
      } else if (number) {
        if (auto p = r.port_number(*port_at, *number)) port.port = *p;
      }

      // targetPort: IntOrString. Absent, 0 or "" default to `port`, as the API server defaults it.
      port.target_port = port.port;
      if (auto tp = r.field(item, "targetPort")) {
        if (!tp->is_scalar()) {
          r.invalid(*tp, ObjectReader::shown(*tp), "must be an integer or a string");
        } else if (!tp->is_quoted() && !tp->text().empty() &&
                   plain_integer_text(tp->text())) {
          auto n = r.int_field(item, "targetPort");
          if (n && *n != 0) {
            if (auto p = r.port_number(*tp, *n)) port.target_port = *p;
          }
        } else if (!tp->text().empty()) {
          if (auto broken = check_port_name(tp->text()); !broken.empty())
            r.invalid(*tp, yaml::quote(tp->text()), broken);
          else
            port.target_port = tp->text();
        }
      }

      std::optional<Value> node_port_at;
      auto node_port = r.int_field(item, "nodePort", &node_port_at);
      if (node_port_at) port.node_port_where = node_port_at->where();
      if (node_port && *node_port != 0) {
        if (!exposed_type) {
          r.add(node_port_at->where(), node_port_at->path(),
                "Forbidden: may not be used when `type` is '" + type_name + "'");
        } else if (auto p = r.port_number(*node_port_at, *node_port)) {
          port.node_port = *p;
          if (!node_ports.emplace(*p, port.protocol).second)
            r.add(node_port_at->where(), node_port_at->path(), "Duplicate value: " + std::to_string(*p));
        }
      }
      if (port.port != 0 && protocol && !port_protocols.emplace(port.port, port.protocol).second)
        r.add(item.where(), item.path(),
              "Duplicate value: " + yaml::quote(std::to_string(port.port) + "/" + std::string(protocol_name(port.protocol))));
      svc.ports.push_back(std::move(port));
    }
  }

  // ---- traffic policy, health check port, affinity
  if (spec) {
    if (auto at = r.field(*spec, "externalTrafficPolicy")) {
      auto etp = r.string_field(*spec, "externalTrafficPolicy").value_or("");
      if (etp == "Local") svc.external_traffic_policy = TrafficPolicy::Local;
      else if (etp == "Cluster" || etp.empty()) svc.external_traffic_policy = TrafficPolicy::Cluster;
      else r.unsupported(*at, etp, {"Cluster", "Local"});
    }
    std::optional<Value> hc_at;
    if (auto hc = r.int_field(*spec, "healthCheckNodePort", &hc_at); hc && *hc != 0) {
      if (svc.type != ServiceType::LoadBalancer || svc.external_traffic_policy != TrafficPolicy::Local)
        r.invalid(*hc_at, std::to_string(*hc),
                  "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'");
      else if (auto p = r.port_number(*hc_at, *hc)) {
        svc.health_check_node_port = *p;
        svc.health_check_node_port_where = hc_at->where();
      }
    }
    if (auto at = r.field(*spec, "sessionAffinity")) {
      auto sa = r.string_field(*spec, "sessionAffinity").value_or("");
      if (sa == "ClientIP") svc.session_affinity = SessionAffinity::ClientIP;
      else if (sa == "None" || sa.empty()) svc.session_affinity = SessionAffinity::None;
      else r.unsupported(*at, sa, {"ClientIP", "None"});
    }
    if (auto cfg = r.map_field(*spec, "sessionAffinityConfig")) {
      if (svc.session_affinity == SessionAffinity::None) {
        r.invalid(*cfg, "map[...]", "must not be set when `sessionAffinity` is None");
      } else if (auto client = r.map_field(*cfg, "clientIP")) {
        std::optional<Value> at;
        if (auto t = r.int_field(*client, "timeoutSeconds", &at)) {
          if (*t <= 0 || *t > 86400)
            r.invalid(*at, std::to_string(*t), "must be greater than 0 and less than 86400");
          else
            svc.affinity_timeout_seconds = static_cast<uint32_t>(*t);
        }
      }
    }
  }
  if (!r.ok()) return std::nullopt;
  return svc;
}

// ---------------------------------------------------------------- Node

std::optional<Node> read_node(const Value& object, ObjectReader& r) {
  Node node;
  node.ready = false;  // as the service controller: no Ready=True condition, not ready
  node.meta = read_meta(r, object, false, check_dns1123_subdomain);
  if (auto spec = r.map_field(object, "spec")) {
    if (auto u = r.bool_field(*spec, "unschedulable")) node.unschedulable = *u;
    std::vector<Value> cidrs;
    if (auto list = r.list_field(*spec, "podCIDRs")) {
      cidrs = *list;
      if (cidrs.size() > 2)
        r.add((*r.field(*spec, "podCIDRs")).where(), "spec.podCIDRs",
              "Too many: " + std::to_string(cidrs.size()) + ": must have at most 2 items");
    } else if (auto one = r.field(*spec, "podCIDR")) {
      cidrs.push_back(*one);
    }
    std::set<IpFamily> families;
    for (const Value& c : cidrs) {
      if (!c.is_scalar()) {
        r.invalid(c, ObjectReader::shown(c), "must be a string");
        continue;
      }
      auto cidr = parse_cidr(c.text());
      if (!cidr) {
        r.invalid(c, yaml::quote(c.text()), "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
      } else if (cidr->has_host_bits()) {
        r.invalid(c, yaml::quote(c.text()), "must be a network address: host bits are set");
      } else if (!families.insert(cidr->address.family).second) {
        r.invalid(c, yaml::quote(c.text()), "may specify no more than one CIDR for each IP family");
      } else {
        node.pod_cidrs.push_back(*cidr);
      }
    }
  }
  if (auto status = r.map_field(object, "status")) {
    if (auto addresses = r.list_field(*status, "addresses")) {
      for (const Value& a : *addresses) {
        if (!a.is_map()) {
          r.invalid(a, ObjectReader::shown(a), "must be an object");
          continue;
        }
        NodeAddress na;
        na.type = r.string_field(a, "type").value_or("");
        na.address = r.string_field(a, "address").value_or("");
        if ((na.type == "InternalIP" || na.type == "ExternalIP") && !parse_ip(na.address))
          r.invalid(r.field(a, "address").value_or(a), yaml::quote(na.address), "must be a valid IP address");
        node.addresses.push_back(std::move(na));
      }
    }
    if (auto conditions = r.list_field(*status, "conditions")) {
      for (const Value& c : *conditions) {
        if (c.is_map() && r.string_field(c, "type").value_or("") == "Ready")
          node.ready = r.string_field(c, "status").value_or("") == "True";
      }
    }
  }
  if (!r.ok()) return std::nullopt;
  return node;
}

// ---------------------------------------------------------------- EndpointSlice

// Returns nothing for an invalid slice, and for FQDN slices (no proxy uses them).
std::optional<EndpointSlice> read_endpoint_slice(const Value& object, ObjectReader& r, bool& fqdn) {
  EndpointSlice slice;
  slice.meta = read_meta(r, object, true, check_dns1123_subdomain);
  if (auto it = slice.meta.labels.find("kubernetes.io/service-name"); it != slice.meta.labels.end())
    slice.service_name = it->second;
  auto type_at = r.field(object, "addressType");
  std::string type = r.string_field(object, "addressType").value_or("");
  if (!type_at) r.required(object.where(), "addressType");
  else if (type == "IPv4") slice.address_type = IpFamily::v4;
  else if (type == "IPv6") slice.address_type = IpFamily::v6;
  else if (type == "FQDN") fqdn = true;
  else r.unsupported(*type_at, type, {"FQDN", "IPv4", "IPv6"});

  if (auto ports = r.list_field(object, "ports")) {
    std::set<std::string> names;
    for (const Value& p : *ports) {
      if (!p.is_map()) {
        r.invalid(p, ObjectReader::shown(p), "must be an object");
        continue;
      }
      EndpointPort port;
      port.name = r.string_field(p, "name").value_or("");
      if (!port.name.empty()) {
        if (auto broken = check_dns1123_label(port.name); !broken.empty())
          r.invalid(*r.field(p, "name"), yaml::quote(port.name), broken);
      }
      if (!names.insert(port.name).second)
        r.add(p.where(), p.path() + ".name", "Duplicate value: " + yaml::quote(port.name));
      if (auto proto = read_protocol(r, p)) port.protocol = *proto;
      std::optional<Value> at;
      if (auto n = r.int_field(p, "port", &at))
        if (auto v = r.port_number(*at, *n)) port.port = *v;
      slice.ports.push_back(std::move(port));
    }
  }
  if (auto endpoints = r.list_field(object, "endpoints")) {
    for (const Value& e : *endpoints) {
      if (!e.is_map()) {
        r.invalid(e, ObjectReader::shown(e), "must be an object");
        continue;
      }
      Endpoint ep;
      auto addresses = r.list_field(e, "addresses");
      if (!addresses || addresses->empty())
        r.required(e.where(), e.path() + ".addresses", "must contain at least 1 address");
      else if (addresses->size() > 100)
        r.add(e.where(), e.path() + ".addresses", "Too many: " + std::to_string(addresses->size()) + ": must have at most 100 items");
      for (const Value& a : addresses.value_or(std::vector<Value>{})) {
        auto ip = a.is_scalar() ? parse_ip(a.text()) : std::nullopt;
        if (fqdn) continue;
        if (!ip || ip->family != slice.address_type)
          r.invalid(a, ObjectReader::shown(a), std::string("must be a valid ") + (slice.address_type == IpFamily::v4 ? "IPv4" : "IPv6") + " address");
        else
          ep.addresses.push_back(*ip);
      }
      ep.node_name = r.string_field(e, "nodeName").value_or("");
      if (auto conditions = r.map_field(e, "conditions")) {
        // Kubernetes: a nil ready or serving reads as true, a nil terminating as false.
        ep.ready = r.bool_field(*conditions, "ready").value_or(true);
        ep.serving = r.bool_field(*conditions, "serving").value_or(ep.ready);
        ep.terminating = r.bool_field(*conditions, "terminating").value_or(false);
      }
      slice.endpoints.push_back(std::move(ep));
    }
  }
  if (!r.ok()) return std::nullopt;
  return slice;
}

bool has_yaml_extension(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

// ---------------------------------------------------------------- files and documents

std::vector<std::string> manifest_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(path, ec))
    if (entry.is_regular_file(ec) && has_yaml_extension(entry.path())) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

namespace {

class FileReader {
 public:
  explicit FileReader(ParsedManifest& out) : out_(out) {}

  void load_object(const Value& object) {
    if (!object.is_map()) {
      error({object.where(), "expected a Kubernetes object (a mapping), got " + object.kind_name()});
      return;
    }
    ObjectReader probe("object");
    auto kind_at = probe.field(object, "kind");
    std::string kind = probe.string_field(object, "kind").value_or("");
    std::string api_version = probe.string_field(object, "apiVersion").value_or("");
    if (kind.empty()) {
      error({object.where(), "object has no kind"});
      return;
    }
    // kind: List, ServiceList, NodeList...: the objects are its items.
    if (kind == "List" || (kind.size() > 4 && kind.ends_with("List") && probe.field(object, "items"))) {
      ObjectReader list(kind);
      auto items = list.list_field(object, "items");
      for (const auto& e : list.errors()) error(e);
      if (items)
        for (const Value& item : *items) load_object(Value(item.node(), &object.file(), ""));
      return;
    }

    ObjectReader r(kind);
    auto wrong_version = [&](const char* want) {
      error({kind_at->where(), kind + ": apiVersion " + yaml::quote(api_version) + " is not supported; use " + want});
    };
    if (kind == "Service" && (api_version == "v1" || api_version.empty())) {
      if (api_version.empty()) return wrong_version("v1");
      if (auto svc = read_service(object, r)) out_.services.push_back(std::move(*svc));
    } else if (kind == "Node" && (api_version == "v1" || api_version.empty())) {
      if (api_version.empty()) return wrong_version("v1");
      if (auto node = read_node(object, r)) out_.nodes.push_back(std::move(*node));
    } else if (kind == "EndpointSlice" && api_version.starts_with("discovery.k8s.io/")) {
      if (api_version != "discovery.k8s.io/v1") return wrong_version("discovery.k8s.io/v1");
      bool fqdn = false;
      auto slice = read_endpoint_slice(object, r, fqdn);
      if (slice && fqdn) {
        out_.notes.push_back(ConfigError{object.where(), r.id() + ": addressType FQDN is not used by NodePort "
                                                                  "proxies; skipped"}
                                 .format());
      } else if (slice) {
        out_.endpoint_slices.push_back(std::move(*slice));
      }
    } else {
      std::string name = kind + (api_version.empty() ? "" : " (" + api_version + ")");
      if (skipped_.insert(name).second) out_.skipped_kinds.emplace_back(name, object.where());
    }
    for (const auto& e : r.errors()) out_.errors.push_back({r.key(), e});
  }

 private:
  void error(ConfigError e) { out_.errors.push_back({ObjectKey{}, std::move(e)}); }
  ParsedManifest& out_;
  std::set<std::string> skipped_;
};

}  // namespace

ParsedManifest parse_manifest(const yaml::YamlFile& file) {
  ParsedManifest out;
  out.path = file.path;
  if (!file.errors.empty()) {
    // A file that does not parse is as bad as a broken config: nothing of it
    // can be trusted, and the reload as a whole must fail.
    for (const auto& e : file.errors) out.errors.push_back({ObjectKey{}, e});
    out.fatal = true;
    return out;
  }
  FileReader reader(out);
  for (const auto& doc : file.documents) {
    if (doc.IsNull()) continue;  // "---" separators with nothing between
    reader.load_object(Value(doc, &file.path, ""));
  }
  return out;
}

ParsedManifest parse_manifest_text(std::string_view text, const std::string& name) {
  return parse_manifest(yaml::parse_text(text, name));
}

void ManifestLoader::load_file(const std::string& path) { add(parse_manifest(yaml::parse_file(path))); }

void ManifestLoader::load_text(std::string_view text, const std::string& name) {
  add(parse_manifest_text(text, name));
}

void ManifestLoader::add(const ParsedManifest& file) {
  if (file.fatal) result_.fatal = true;
  for (const auto& e : file.errors) {
    if (!e.key.name.empty()) rejected_[e.key].push_back(result_.errors.size());
    result_.errors.push_back(e.error);
  }
  for (const auto& [kind, where] : file.skipped_kinds) note_skipped_kind(kind, where);
  result_.notes.insert(result_.notes.end(), file.notes.begin(), file.notes.end());
  auto& objects = result_.objects;
  for (const auto& svc : file.services)
    if (claim_identity("Service", svc.meta)) objects.services.push_back(svc);
  for (const auto& node : file.nodes)
    if (claim_identity("Node", node.meta)) objects.nodes.push_back(node);
  for (const auto& slice : file.endpoint_slices)
    if (claim_identity("EndpointSlice", slice.meta)) objects.endpoint_slices.push_back(slice);
}

void ManifestLoader::finish() {
  if (!previous_ || rejected_.empty()) return;
  auto keep = [&](const ObjectKey& key, const auto& list, auto& into) {
    for (const auto& object : list) {
      if (object.meta.namespace_ != key.namespace_ || object.meta.name != key.name) continue;
      into.push_back(object);
      seen_.emplace(key, object.meta.where);
      kept_previous_.push_back(key);
      for (size_t i : rejected_[key]) result_.errors[i].message += "; keeping the previous version";
      return;
    }
  };
  for (const auto& [key, indices] : rejected_) {
    if (seen_.contains(key)) continue;  // a valid definition of it came too
    if (key.kind == "Service") keep(key, previous_->services, result_.objects.services);
    else if (key.kind == "Node") keep(key, previous_->nodes, result_.objects.nodes);
    else if (key.kind == "EndpointSlice") keep(key, previous_->endpoint_slices, result_.objects.endpoint_slices);
  }
}

void ManifestLoader::note_skipped_kind(const std::string& kind, const SourceLocation& where) {
  if (!skipped_kinds_.insert(kind).second) return;
  result_.notes.push_back(
      ConfigError{where, "skipped kind " + kind + ": nplb reads Service, Node and EndpointSlice objects"}.format());
}

// Two objects of one kind and name: the API server would hold only one. The
// first stays, as an update the server refused would leave it.
bool ManifestLoader::claim_identity(const std::string& kind, const ObjectMeta& meta) {
  auto [it, fresh] = seen_.emplace(ObjectKey{kind, meta.namespace_, meta.name}, meta.where);
  if (fresh) return true;
  std::string id = kind + " " + (meta.namespace_.empty() ? "" : meta.namespace_ + "/") + meta.name;
  std::string first = it->second.file + ":" + std::to_string(it->second.line);
  result_.errors.push_back({meta.where, id + ": already defined at " + first + "; this definition is ignored"});
  return false;
}

}  // namespace nplb
