// Appliance settings: the config file's schema, read strictly (unknown keys,
// wrong types and out-of-range values are errors, never defaults), then the
// checks between values. Paths resolve against the config file's folder.
#include <algorithm>
#include <filesystem>
#include <set>

#include "control/config_loader.hpp"
#include "control/manifests.hpp"
#include "control/model.hpp"
#include "control/resolver.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {

std::string ConfigError::format() const {
  std::string out = where.file;
  if (where.line > 0) {
    out += ":" + std::to_string(where.line);
    if (where.column > 0) out += ":" + std::to_string(where.column);
  }
  return out.empty() ? message : out + ": " + message;
}

namespace {

using yaml::MapReader;
using yaml::Value;
using yaml::YamlError;

constexpr uint32_t kMaxWorkers = 128;
constexpr uint32_t kMinFlowCapacity = 1024;
constexpr uint32_t kMaxFlowCapacity = 64u << 20;

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

std::string line_of(const SourceLocation& where) { return "line " + std::to_string(where.line); }

std::string family_name(const IpAddr& ip) { return ip.is_v4() ? "IPv4" : "IPv6"; }

// "203.0.113.1/24" -> "203.0.113.0/24": the subnet of an interface address.
std::string subnet_of(const Cidr& c) {
  Cidr net = c;
  for (int bit = c.prefix_len; bit < (c.address.is_v4() ? 32 : 128); ++bit)
    net.address.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return net.str();
}

class SettingsParser {
 public:
  SettingsParser(ApplianceConfig& config, std::vector<ConfigError>& errors) : config_(config), errors_(errors) {}

  void parse(const Value& root) {
    MapReader top(root, {"dataplane", "forwarding", "cluster", "api", "health", "state_dir"}, &errors_);
    // Fixed order, whatever the file's: later sections check against earlier ones.
    guarded([&] { parse_dataplane(top.require("dataplane")); });
    guarded([&] { parse_forwarding(top.require("forwarding")); });
    guarded([&] {
      if (auto cluster = top.get("cluster")) parse_cluster(*cluster);
    });
    guarded([&] {
      if (auto api = top.get("api")) parse_api(*api);
    });
    guarded([&] {
      if (auto health = top.get("health")) parse_health(*health);
    });
    guarded([&] {
      if (auto dir = top.get("state_dir")) {
        config_.state_dir_where = dir->where();
        std::filesystem::path p(dir->as_nonempty_string());
        if (p.is_relative()) p = std::filesystem::path(config_.base_dir) / p;
        config_.state_dir = p.lexically_normal().string();
        std::error_code ec;
        if (std::filesystem::exists(config_.state_dir, ec) && !std::filesystem::is_directory(config_.state_dir, ec))
          dir->fail(config_.state_dir + " exists and is not a directory");
      }
    });
  }

 private:
  // One bad value costs only itself: report it and read on, so a run lists
  // every error at once.
  template <class F>
  void guarded(F&& read) {
    try {
      read();
    } catch (const YamlError& e) {
      errors_.push_back(e.to_config_error());
    }
  }
  void error(const SourceLocation& where, const std::string& path, const std::string& detail) {
    errors_.push_back({where, path + ": " + detail});
  }
  void error(const Value& at, const std::string& detail) { error(at.where(), at.path(), detail); }

  // ------------------------------------------------------------ dataplane

  void parse_dataplane(const Value& v) {
    MapReader m(v, {"eal", "workers", "idle", "mbufs", "rx_descriptors", "tx_descriptors", "ports", "neighbors",
                    "flows"},
                &errors_);
    DataplaneConfig& dp = config_.dataplane;
    guarded([&] {
      dp.eal_where = v.where();
      if (auto eal = m.get("eal")) {
        dp.eal_where = eal->where();
        dp.eal = eal->as_string_list();
      }
    });
    guarded([&] {
      if (auto w = m.get("workers")) {
        dp.workers_where = w->where();
        dp.workers = w->as_integer<uint32_t>(1, kMaxWorkers);
      } else {
        dp.workers_where = v.where();
      }
    });
    guarded([&] {
      if (auto idle = m.get("idle")) {
        MapReader im(*idle, {"spin", "sleep"}, &errors_);
        guarded([&] {
          if (auto spin = im.get("spin")) dp.idle.spin = spin->as_duration_ms();
        });
        guarded([&] {
          if (auto sleep = im.get("sleep")) {
            uint64_t us = sleep->as_duration_us();
            if (us > 1'000'000) sleep->fail("must be at most 1s: a sleeping worker delays the packets that wake it");
            dp.idle.sleep_us = static_cast<uint32_t>(us);
          }
        });
      }
    });
    guarded([&] {
      dp.mbufs_where = v.where();
      if (auto mbufs = m.get("mbufs")) {
        dp.mbufs_where = mbufs->where();
        dp.mbufs = mbufs->as_integer<uint32_t>(1);
      }
    });
    guarded([&] {
      if (auto rx = m.get("rx_descriptors")) dp.rx_descriptors = rx->as_integer<uint16_t>(1, 32768);
    });
    guarded([&] {
      if (auto tx = m.get("tx_descriptors")) dp.tx_descriptors = tx->as_integer<uint16_t>(1, 32768);
    });
    guarded([&] { parse_ports(m.require("ports")); });
    guarded([&] {
      if (auto n = m.get("neighbors")) parse_neighbors(*n);
    });
    guarded([&] {
      if (auto f = m.get("flows")) parse_flows(*f);
    });
  }

  void parse_ports(const Value& v) {
    auto items = v.items();
    if (items.empty()) v.fail("at least one port is required");
    std::map<std::string, SourceLocation> names;
    std::map<IpAddr, SourceLocation> addresses;
    for (const Value& item : items) {
      guarded([&] {
        MapReader m(item, {"name", "device", "addresses", "mac", "gateway", "kernel_address"}, &errors_);
        PortConfig port;
        port.where = item.where();
        guarded([&] {
          Value name = m.require("name");
          port.name = name.as_nonempty_string();
          auto [it, fresh] = names.emplace(port.name, name.where());
          if (!fresh) error(name, "duplicate port name '" + port.name + "' (first at " + line_of(it->second) + ")");
        });
        guarded([&] {
          const Value& device = m.require("device");
          port.device_where = device.where();
          port.device = device.as_nonempty_string();
        });
        guarded([&] {
          Value list = m.require("addresses");
          auto cidrs = list.items();
          if (cidrs.empty()) list.fail("at least one address is required");
          for (const Value& c : cidrs) {
            guarded([&] {
              Cidr cidr = c.as_cidr();
              if (!cidr.address.is_v4())
                c.fail("IPv6 address " + cidr.str() + " is not supported yet (the data path is IPv4 for now)");
              auto [it, fresh] = addresses.emplace(cidr.address, c.where());
              if (!fresh)
                c.fail("address " + cidr.address.str() + " is already given (at " + line_of(it->second) + ")");
              port.addresses.push_back(cidr);
            });
          }
        });
        guarded([&] {
          if (auto mac = m.get("mac")) {
            MacAddr a = mac->as_mac();
            if (a.is_zero() || a.is_multicast()) mac->fail(a.str() + " is not a unicast MAC address");
            port.mac = a;
          }
        });
        guarded([&] {
          if (auto gw = m.get("gateway")) {
            IpAddr ip = gw->as_ip();
            bool inside = std::any_of(port.addresses.begin(), port.addresses.end(),
                                      [&](const Cidr& c) { return c.contains(ip); });
            if (!inside && !port.addresses.empty()) {
              std::string subnets;
              for (const auto& c : port.addresses)
                subnets += (subnets.empty() ? "" : ", ") + subnet_of(c);
              gw->fail("gateway " + ip.str() + " is not inside any subnet of this port (" + subnets + ")");
            }
            port.gateway = ip;
          }
        });
        guarded([&] {
          if (auto k = m.get("kernel_address")) {
            port.kernel_address_where = k->where();
            Cidr c = k->as_cidr();
            if (!c.address.is_v4()) k->fail("IPv6 kernel addresses are not supported yet");
            for (const Cidr& own : port.addresses)
              if (own.address == c.address)
                k->fail("the kernel address " + c.address.str() + " is already one of this port's addresses");
            port.kernel_address = c;
          }
        });
        config_.dataplane.ports.push_back(std::move(port));
      });
    }
  }

  void parse_neighbors(const Value& v) {
    std::map<IpAddr, SourceLocation> seen;
    for (const Value& item : v.items()) {
      guarded([&] {
        MapReader m(item, {"ip", "mac"}, &errors_);
        NeighborConfig n;
        n.where = item.where();
        bool ok = true;
        guarded([&] {
          ok = false;
          Value ip = m.require("ip");
          n.ip = ip.as_ip();
          if (!n.ip.is_v4()) ip.fail("IPv6 neighbor " + n.ip.str() + " is not supported yet (the data path is IPv4 for now)");
          auto [it, fresh] = seen.emplace(n.ip, ip.where());
          if (!fresh) ip.fail("duplicate neighbor " + n.ip.str() + " (first at " + line_of(it->second) + ")");
          const auto& ports = config_.dataplane.ports;
          bool on_link = std::any_of(ports.begin(), ports.end(), [&](const PortConfig& p) {
            return std::any_of(p.addresses.begin(), p.addresses.end(), [&](const Cidr& c) { return c.contains(n.ip); });
          });
          if (!on_link && !ports.empty()) ip.fail("neighbor " + n.ip.str() + " is not inside any port's subnet");
          ok = true;
        });
        guarded([&] {
          Value mac = m.require("mac");
          n.mac = mac.as_mac();
          if (n.mac.is_zero() || n.mac.is_multicast()) mac.fail(n.mac.str() + " is not a unicast MAC address");
        });
        if (ok) config_.dataplane.neighbors.push_back(n);
      });
    }
  }

  void parse_flows(const Value& v) {
    MapReader m(v, {"capacity", "timeouts", "pipeline_above"}, &errors_);
    FlowConfig& flows = config_.dataplane.flows;
    guarded([&] {
      if (auto c = m.get("capacity")) flows.capacity = c->as_integer<uint32_t>(kMinFlowCapacity, kMaxFlowCapacity);
    });
    guarded([&] {
      if (auto p = m.get("pipeline_above")) flows.pipeline_above = p->as_integer<uint32_t>(0, kMaxFlowCapacity);
    });
    guarded([&] {
      auto t = m.get("timeouts");
      if (!t) return;
      MapReader tm(*t, {"tcp_established", "tcp_transitory", "udp"}, &errors_);
      auto timeout = [&](std::string_view key, Milliseconds& out) {
        guarded([&] {
          if (auto d = tm.get(key)) {
            Milliseconds ms = d->as_duration_ms();
            if (ms == 0) d->fail("must be greater than 0");
            out = ms;
          }
        });
      };
      timeout("tcp_established", flows.timeouts.tcp_established);
      timeout("tcp_transitory", flows.timeouts.tcp_transitory);
      timeout("udp", flows.timeouts.udp);
    });
  }

  // ------------------------------------------------------------ forwarding

  void parse_forwarding(const Value& v) {
    MapReader m(v, {"mode", "backends", "on_backend_removed", "frontends", "snat", "snat_ports", "maglev"},
                &errors_);
    ForwardingConfig& fw = config_.forwarding;
    fw.frontends_where = v.where();
    guarded([&] {
      if (auto b = m.get("backends")) {
        std::string s = b->as_string();
        if (s == "nodes") fw.backends = BackendKind::nodes;
        else if (s == "pods") fw.backends = BackendKind::pods;
        else b->fail("unsupported value " + yaml::quote(s) + ": supported values: \"nodes\", \"pods\"");
      }
    });
    guarded([&] {
      if (auto r = m.get("on_backend_removed")) {
        std::string s = r->as_string();
        if (s == "keep") fw.on_backend_removed = OnBackendRemoved::keep;
        else if (s == "reset") fw.on_backend_removed = OnBackendRemoved::reset;
        else r->fail("unsupported value " + yaml::quote(s) + ": supported values: \"keep\", \"reset\"");
      }
    });
    guarded([&] {
      if (auto mode = m.get("mode")) {
        std::string s = mode->as_string();
        if (s != "nat") mode->fail("unsupported mode " + yaml::quote(s) + ": supported modes: \"nat\"");
        fw.mode = ForwardingMode::nat;
      }
    });
    guarded([&] {
      Value list = m.require("frontends");
      fw.frontends_where = list.where();
      fw.frontends = address_list(list, "frontend", frontend_where_);
    });
    guarded([&] {
      Value list = m.require("snat");
      fw.snat = address_list(list, "SNAT address", snat_where_);
    });
    // Frontends and SNAT addresses must differ: a reply to a SNAT address
    // would otherwise be taken for a new client connection.
    for (size_t i = 0; i < fw.snat.size(); ++i) {
      if (std::find(fw.frontends.begin(), fw.frontends.end(), fw.snat[i]) != fw.frontends.end())
        error(snat_where_[i], "forwarding.snat[" + std::to_string(i) + "]",
              fw.snat[i].str() + " is also a frontend; SNAT addresses must differ from frontends");
    }
    check_families();
    guarded([&] {
      if (auto p = m.get("snat_ports")) {
        fw.snat_ports = p->as_port_range();
        snat_ports_ = *p;
      }
    });
    if (fw.snat_ports.size() < 2 * config_.dataplane.workers) {
      const Value* at = snat_ports_ ? &*snat_ports_ : nullptr;
      error(at ? at->where() : v.where(), "forwarding.snat_ports",
            std::to_string(fw.snat_ports.size()) + " ports for " + std::to_string(config_.dataplane.workers) +
                " workers: each worker needs at least 2");
    }
    guarded([&] {
      if (auto mg = m.get("maglev")) parse_maglev(*mg);
    });
  }

  std::vector<IpAddr> address_list(const Value& list, const std::string& what,
                                   std::vector<SourceLocation>& where) {
    std::vector<IpAddr> out;
    auto items = list.items();
    if (items.empty()) list.fail("at least one " + what + " is required");
    std::map<IpAddr, SourceLocation> seen;
    for (const Value& item : items) {
      guarded([&] {
        IpAddr ip = item.as_ip();
        auto [it, fresh] = seen.emplace(ip, item.where());
        if (!fresh) item.fail("duplicate " + what + " " + ip.str() + " (first at " + line_of(it->second) + ")");
        if (!ip.is_v4())
          error(item, "IPv6 " + what + " " + ip.str() +
                          " is not supported yet in nat mode (the data path is IPv4 for now)");
        if (ip.is_unspecified()) item.fail(ip.str() + " is not a usable address");
        out.push_back(ip);
        where.push_back(item.where());
      });
    }
    return out;
  }

  // nat mode rewrites both addresses of a packet within one family.
  void check_families() {
    const auto& fw = config_.forwarding;
    if (fw.frontends.empty()) return;
    IpFamily family = fw.frontends[0].family;
    auto check = [&](const std::vector<IpAddr>& list, const std::vector<SourceLocation>& where, const char* key) {
      for (size_t i = 0; i < list.size(); ++i) {
        if (list[i].family != family) {
          error(where[i], std::string("forwarding.") + key + "[" + std::to_string(i) + "]",
                "mixed address families: " + list[i].str() + " is " + family_name(list[i]) + " but " +
                    fw.frontends[0].str() + " (forwarding.frontends[0]) is " + family_name(fw.frontends[0]));
          return;
        }
      }
    };
    check(fw.frontends, frontend_where_, "frontends");
    check(fw.snat, snat_where_, "snat");
  }

  void parse_maglev(const Value& v) {
    MapReader m(v, {"seed", "min_table_size", "max_table_size"}, &errors_);
    MaglevConfig& mg = config_.forwarding.maglev;
    guarded([&] {
      if (auto s = m.get("seed")) mg.seed = s->as_integer<uint64_t>();
    });
    std::optional<Value> min_at, max_at;
    guarded([&] {
      if (auto s = m.get("min_table_size")) {
        min_at = s;
        mg.min_table_size = s->as_integer<uint32_t>(3, 1u << 30);
        if (!is_prime(mg.min_table_size)) s->fail(std::to_string(mg.min_table_size) + " is not a prime number");
      }
    });
    guarded([&] {
      if (auto s = m.get("max_table_size")) {
        max_at = s;
        mg.max_table_size = s->as_integer<uint32_t>(3, 1u << 30);
      }
    });
    if (mg.max_table_size < mg.min_table_size) {
      const Value& at = max_at ? *max_at : min_at ? *min_at : v;
      error(at.where(), "forwarding.maglev.max_table_size",
            std::to_string(mg.max_table_size) + " is below min_table_size " + std::to_string(mg.min_table_size));
    }
  }

  // ------------------------------------------------------------ api

  // The control API has no authentication: it listens on loopback or on a
  // Unix socket, never on an address other hosts reach.
  void parse_health(const Value& v) {
    MapReader m(v, {"probe", "interval", "timeout", "rise", "fall", "http"}, &errors_);
    HealthSettings& h = config_.health;
    guarded([&] {
      if (auto probe = m.get("probe")) {
        std::string text = probe->as_nonempty_string();
        if (text == "tcp") h.probe = HealthProbe::tcp;
        else if (text == "http") h.probe = HealthProbe::http;
        else if (text == "none") h.probe = HealthProbe::none;
        else probe->fail("unsupported value " + yaml::quote(text) + ": supported values: \"tcp\", \"http\", \"none\"");
      }
    });
    guarded([&] {
      if (auto interval = m.get("interval")) {
        h.interval = interval->as_duration_ms();
        if (h.interval < 100 || h.interval > 3'600'000) interval->fail("must be between 100ms and 1h");
      }
    });
    guarded([&] {
      if (auto timeout = m.get("timeout")) {
        h.timeout = timeout->as_duration_ms();
        if (h.timeout < 10) timeout->fail("must be at least 10ms");
      }
    });
    guarded([&] {
      if (auto rise = m.get("rise")) h.rise = rise->as_integer<uint32_t>(1, 100);
    });
    guarded([&] {
      if (auto fall = m.get("fall")) h.fall = fall->as_integer<uint32_t>(1, 100);
    });
    guarded([&] {
      if (auto http = m.get("http")) {
        MapReader hm(*http, {"path", "status"}, &errors_);
        guarded([&] {
          if (auto path = hm.get("path")) {
            h.http_path = path->as_nonempty_string();
            if (h.http_path[0] != '/') path->fail("must start with '/'");
          }
        });
        guarded([&] {
          if (auto status = hm.get("status")) h.http_status = status->as_integer<int>(100, 599);
        });
      }
    });
    if (h.timeout >= h.interval)
      v.fail("health.timeout (" + std::to_string(h.timeout) + "ms) must be shorter than health.interval (" +
             std::to_string(h.interval) + "ms)");
  }

  void parse_api(const Value& v) {
    MapReader m(v, {"listen"}, &errors_);
    ApiConfig& api = config_.api;
    api.where = v.where();
    auto listen = m.get("listen");
    if (!listen) return;
    api.where = listen->where();
    std::string text = listen->as_nonempty_string();
    const std::string usage = "expected \"IP:PORT\" on a loopback address (IPv6 as \"[::1]:PORT\") or \"unix:/path\", got " +
                              yaml::quote(text);
    if (text.starts_with("unix:")) {
      std::filesystem::path p(text.substr(5));
      if (p.empty()) listen->fail(usage);
      if (p.is_relative()) p = std::filesystem::path(config_.base_dir) / p;
      api.listen = "unix:" + p.lexically_normal().string();
      return;
    }
    std::string host, port;
    if (text.starts_with("[")) {
      auto close = text.find("]:");
      if (close == std::string::npos) listen->fail(usage);
      host = text.substr(1, close - 1);
      port = text.substr(close + 2);
    } else {
      auto colon = text.rfind(':');
      if (colon == std::string::npos || text.find(':') != colon) listen->fail(usage);
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
    auto ip = parse_ip(host);
    bool digits = !port.empty() && port.size() <= 5 &&
                  std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!ip || !digits) listen->fail(usage);
    unsigned long number = std::stoul(port);
    if (number < 1 || number > 65535) listen->fail("port " + port + " is not between 1 and 65535");
    bool loopback = ip->is_v4() ? ip->bytes[0] == 127 : *ip == *parse_ip("::1");
    if (!loopback)
      listen->fail(ip->str() + " is not a loopback address: the control API has no authentication; listen on "
                               "127.0.0.1:PORT, [::1]:PORT or unix:/path");
    api.listen = text;
  }

  // ------------------------------------------------------------ cluster

  void parse_cluster(const Value& v) {
    MapReader m(v, {"node_port_range", "nodes", "manifests"}, &errors_);
    ClusterConfig& cl = config_.cluster;
    guarded([&] {
      if (auto r = m.get("node_port_range")) cl.node_port_range = r->as_port_range();
    });
    guarded([&] {
      if (auto n = m.get("nodes")) parse_nodes(*n);
    });
    guarded([&] {
      if (auto list = m.get("manifests")) parse_manifests(*list);
    });
  }

  void parse_nodes(const Value& v) {
    std::map<std::string, SourceLocation> names;
    std::map<IpAddr, SourceLocation> addresses;
    const auto& fw = config_.forwarding;
    for (const Value& item : v.items()) {
      guarded([&] {
        MapReader m(item, {"name", "address"}, &errors_);
        CompactNode node;
        node.where = item.where();
        bool ok = true;
        guarded([&] {
          ok = false;
          Value name = m.require("name");
          node.name = name.as_nonempty_string();
          auto [it, fresh] = names.emplace(node.name, name.where());
          if (!fresh) name.fail("duplicate node name '" + node.name + "' (first at " + line_of(it->second) + ")");
          ok = true;
        });
        guarded([&] {
          ok = false;
          Value address = m.require("address");
          node.address = address.as_ip();
          auto [it, fresh] = addresses.emplace(node.address, address.where());
          if (!fresh)
            address.fail("duplicate node address " + node.address.str() + " (first at " + line_of(it->second) + ")");
          if (std::find(fw.frontends.begin(), fw.frontends.end(), node.address) != fw.frontends.end())
            address.fail("backend address equals a VIP: " + node.address.str() + " is in forwarding.frontends");
          if (std::find(fw.snat.begin(), fw.snat.end(), node.address) != fw.snat.end())
            address.fail("backend address equals a SNAT address: " + node.address.str() + " is in forwarding.snat");
          for (const auto& port : config_.dataplane.ports)
            for (const auto& c : port.addresses)
              if (c.address == node.address)
                address.fail("backend address " + node.address.str() + " is the appliance's own address on port '" +
                             port.name + "'");
          if (!node.address.is_v4())
            address.fail("IPv6 node address " + node.address.str() +
                         " is not supported yet in nat mode (the data path is IPv4 for now)");
          ok = true;
        });
        if (ok) config_.cluster.nodes.push_back(std::move(node));
      });
    }
  }

  void parse_manifests(const Value& v) {
    namespace fs = std::filesystem;
    for (const Value& item : v.items()) {
      guarded([&] {
        std::string written = item.as_nonempty_string();
        fs::path p(written);
        if (p.is_relative()) p = fs::path(config_.base_dir) / p;
        std::string resolved = p.lexically_normal().string();
        std::error_code ec;
        if (!fs::exists(resolved, ec))
          item.fail(yaml::quote(written) + " not found (looked for " + resolved + ")");
        config_.cluster.manifests.push_back(resolved);
        config_.cluster.manifests_where.push_back(item.where());
      });
    }
  }

  ApplianceConfig& config_;
  std::vector<ConfigError>& errors_;
  std::vector<SourceLocation> frontend_where_, snat_where_;
  std::optional<Value> snat_ports_;
};

std::string folder_of(const std::string& file) {
  std::string dir = std::filesystem::path(file).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

SettingsLoad parse_settings(const std::string& config_file) {
  SettingsLoad out;
  ApplianceConfig config;
  config.config_file = config_file;
  config.base_dir = folder_of(config_file);
  auto fail = [&](ConfigError e) {
    out.errors.push_back(std::move(e));
    out.fatal = true;
    return out;
  };

  yaml::YamlFile file = yaml::parse_file(config_file);
  if (!file.errors.empty()) {
    out.errors = std::move(file.errors);
    out.fatal = true;
    return out;
  }
  // A config of only comments, or only "---", is almost always a mistake
  // (an unexpanded template, a truncated copy): say so rather than start bare.
  auto nonempty = std::count_if(file.documents.begin(), file.documents.end(),
                                [](const YAML::Node& d) { return !d.IsNull(); });
  if (nonempty == 0) return fail({{config_file, 0, 0}, "the configuration is empty"});
  if (file.documents.size() > 1) {
    Value second(file.documents[1], &file.path, "");
    return fail({second.where(), "the configuration must be a single YAML document, found " +
                                     std::to_string(file.documents.size())});
  }
  Value root(file.documents[0], &file.path, "");
  if (!root.is_map()) return fail({root.where(), "expected a mapping at the top level, got " + root.kind_name()});
  try {
    SettingsParser(config, out.errors).parse(root);
  } catch (const YamlError& e) {
    out.errors.push_back(e.to_config_error());
  }
  if (!out.errors.empty()) out.fatal = true;
  out.config = std::move(config);
  return out;
}

LoadResult load_configuration(const std::string& config_file) {
  ConfigLoader loader(config_file);
  return loader.load(/*dry_run=*/true);
}

}  // namespace nplb
