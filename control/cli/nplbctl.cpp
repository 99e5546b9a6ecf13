// nplbctl: talks to a running nplb through its control API (docs/api.md), in kubectl's
// manner. A standalone program: no DPDK, no control library, only json_value.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/cli/json_value.hpp"

#ifndef NPLB_VERSION
#define NPLB_VERSION "unknown"
#endif

namespace {

using nplb::JsonValue;

constexpr const char* kDefaultServer = "127.0.0.1:9080";

constexpr const char* kUsage = R"(Usage: nplbctl [-s ADDR] COMMAND [ARGS] [-o FORMAT]

Talks to a running nplb through its control API (api.listen in nplb's config).

Commands:
  get svc|services [NAME...]   services nplb exposes: frontends, ports, backends
  get nodes [NAME...]          nodes and their state
  get endpoints [SERVICE...]   the backends of every service port and their state
  get stats                    counters of the running data plane
  status                       version, generation, uptime, last reload
  drain NODE [--undo]          no new connections to NODE (its connections go on); --undo ends it
  reload                       re-read the config and manifests; prints what changed
                               (one line per change) or the errors (exit 1)
  version                      nplbctl's and nplb's versions

Options:
  -s, --server ADDR            127.0.0.1:9080, [::1]:9080 or unix:/path
                               (default: $NPLB_API, else 127.0.0.1:9080)
  -o, --output FORMAT          wide, json or yaml (get svc|nodes|endpoints);
                               json or yaml (get stats, status, reload)
  -n, --namespace NS           only services of namespace NS (get svc, get endpoints)
  -A, --all-namespaces         every namespace (the default)
      --request-timeout TIME   give up after TIME (30s; 500ms, 2m)
  -h, --help                   this text
      --version                nplbctl's version

Exit status: 0 success, 1 nplb unreachable or a failed request/reload, 2 usage error.
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ------------------------------------------------------------------ HTTP client

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
  std::string host_header;
};

Endpoint resolve(const std::string& server) {
  std::string spec = server;
  if (spec.rfind("http://", 0) == 0) {
    spec = spec.substr(7);
    while (!spec.empty() && spec.back() == '/') spec.pop_back();
  }
  Endpoint ep;
  auto bad = [&](const std::string& why) -> Failure {
    return Failure("bad server address \"" + server + "\": " + why +
                   " (expected 127.0.0.1:9080, [::1]:9080 or unix:/path)");
  };
  if (spec.rfind("unix:", 0) == 0) {
    std::string path = spec.substr(5);
    auto* sun = reinterpret_cast<sockaddr_un*>(&ep.addr);
    if (path.empty()) throw bad("empty socket path");
    if (path.size() >= sizeof sun->sun_path) throw bad("socket path too long");
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, path.data(), path.size());
    ep.len = sizeof(sockaddr_un);
    ep.family = AF_UNIX;
    ep.host_header = "localhost";
    return ep;
  }
  std::string host, port;
  if (!spec.empty() && spec.front() == '[') {
    auto close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
      throw bad("expected [IPv6]:PORT");
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    auto colon = spec.rfind(':');
    if (colon == std::string::npos) throw bad("no port");
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    if (host.find(':') != std::string::npos) throw bad("an IPv6 address needs brackets");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) == 0 || std::stoul(port) > 65535)
    throw bad("bad port \"" + port + "\"");
  uint16_t p = static_cast<uint16_t>(std::stoul(port));
  if (host == "localhost") host = "127.0.0.1";
  in_addr a4{};
  in6_addr a6{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(p);
    s4->sin_addr = a4;
    ep.len = sizeof *s4;
    ep.family = AF_INET;
    ep.host_header = host + ":" + port;
  } else if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(p);
    s6->sin6_addr = a6;
    ep.len = sizeof *s6;
    ep.family = AF_INET6;
    ep.host_header = "[" + host + "]:" + port;
  } else {
    throw bad("\"" + host + "\" is not an IP address");
  }
  return ep;
}

struct HttpAnswer {
  int status = 0;
  std::string reason;
  std::string body;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string format_ms(long ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

HttpAnswer http(const std::string& server, const std::string& method, const std::string& target,
                long timeout_ms) {
  Endpoint ep = resolve(server);
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left = [&]() -> int {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(ms);
  };
  auto timed_out = [&]() {
    return Failure("nplb at " + server + " did not answer within " + format_ms(timeout_ms));
  };
  auto unreachable = [&](int err) {
    return Failure("cannot reach nplb at " + server + ": " + std::strerror(err));
  };

  Fd fd(::socket(ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw unreachable(errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) throw unreachable(errno);
    pollfd p{fd.get(), POLLOUT, 0};
    int n;
    do n = ::poll(&p, 1, left());
    while (n < 0 && errno == EINTR);
    if (n == 0) throw timed_out();
    int err = 0;
    socklen_t el = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) throw unreachable(err);
  }

  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + ep.host_header +
                    "\r\nUser-Agent: nplbctl/" NPLB_VERSION "\r\nAccept: application/json\r\n"
                    "Connection: close\r\n";
  if (method == "POST" || method == "PUT") req += "Content-Length: 0\r\n";
  req += "\r\n";
  std::size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n >= 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      throw Failure("lost the connection to nplb at " + server + ": " + std::strerror(errno));
    pollfd p{fd.get(), POLLOUT, 0};
    if (::poll(&p, 1, left()) == 0) throw timed_out();
  }

  std::string in;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<std::size_t>(n));
      if (in.size() > (256u << 20)) throw Failure("answer from nplb at " + server + " is too large");
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      throw Failure("lost the connection to nplb at " + server + ": " + std::strerror(errno));
    pollfd p{fd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, left());
    if (r == 0) throw timed_out();
  }

  auto invalid = [&](const std::string& why) {
    return Failure("invalid answer from nplb at " + server + ": " + why);
  };
  // Interim 1xx answers come before the real one.
  for (;;) {
    auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) throw invalid(in.empty() ? "empty answer" : "incomplete HTTP header");
    std::string head = in.substr(0, end);
    std::string rest = in.substr(end + 4);
    auto eol = head.find("\r\n");
    std::string status_line = head.substr(0, eol);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ')
      throw invalid("not HTTP");
    HttpAnswer a;
    a.status = std::atoi(status_line.substr(9, 3).c_str());
    if (a.status < 100 || a.status > 599) throw invalid("bad status line");
    a.reason = status_line.size() > 13 ? status_line.substr(13) : "";
    if (a.status < 200) {
      in = rest;
      continue;
    }
    std::optional<std::size_t> length;
    std::size_t pos = eol == std::string::npos ? head.size() : eol + 2;
    while (pos < head.size()) {
      auto e = head.find("\r\n", pos);
      std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
      pos = e == std::string::npos ? head.size() : e + 2;
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length") length = std::strtoull(line.c_str() + colon + 1, nullptr, 10);
    }
    if (length) {
      if (rest.size() < *length) throw invalid("answer cut short");
      rest.resize(*length);
    }
    a.body = std::move(rest);
    return a;
  }
}

// ------------------------------------------------------------------ output helpers

// kubectl's tabwriter: left-aligned columns, three spaces apart, no trailing spaces.
void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  auto width = [](const std::string& s) {
    std::size_t w = 0;
    for (unsigned char c : s) w += (c & 0xC0) != 0x80;
    return w;
  };
  std::vector<std::size_t> w(header.size(), 0);
  for (std::size_t i = 0; i < header.size(); ++i) w[i] = width(header[i]);
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out.append(w[i] - width(cells[i]) + 3, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::string or_none(const std::string& s) { return s.empty() ? "<none>" : s; }

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string r;
  for (const auto& s : v) {
    if (!r.empty()) r += sep;
    r += s;
  }
  return r;
}

std::string host_port(const std::string& addr, const std::string& port) {
  if (addr.find(':') != std::string::npos) return "[" + addr + "]:" + port;
  return addr + ":" + port;
}

// kubectl's HumanDuration.
std::string human_duration(long long s) {
  if (s < 0) return "<invalid>";
  if (s < 120) return std::to_string(s) + "s";
  long long m = s / 60, h = s / 3600, d = s / 86400;
  if (m < 10) return std::to_string(m) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  if (m < 180) return std::to_string(m) + "m";
  if (h < 8) return std::to_string(h) + "h" + (m % 60 ? std::to_string(m % 60) + "m" : "");
  if (h < 48) return std::to_string(h) + "h";
  if (h < 24 * 8) return std::to_string(d) + "d" + (h % 24 ? std::to_string(h % 24) + "h" : "");
  if (d < 365 * 2) return std::to_string(d) + "d";
  return std::to_string(d / 365) + "y" + (d % 365 ? std::to_string(d % 365) + "d" : "");
}

// "2026-11-28T04:40:00Z" (fractions and offsets accepted) -> age; the text itself when
// it is not a timestamp.
std::string age_of(const JsonValue& v) {
  std::string t = v.text_or("");
  if (t.empty()) return "<none>";
  std::tm tm{};
  int Y, M, D, h, m, s;
  int used = 0;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &s, &used) != 6) return t;
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  long long when = static_cast<long long>(::timegm(&tm));
  const char* rest = t.c_str() + used;
  if (*rest == '.')
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest) {
    }
  if (*rest == '+' || *rest == '-') {
    int oh = 0, om = 0;
    if (std::sscanf(rest + 1, "%2d:%2d", &oh, &om) == 2)
      when -= (*rest == '+' ? 1 : -1) * (oh * 3600LL + om * 60LL);
  } else if (*rest != 'Z' && *rest != 'z') {
    return t;
  }
  return human_duration(static_cast<long long>(std::time(nullptr)) - when);
}

std::string seconds_text(const JsonValue& v) {
  if (!v.is_number()) return v.text_or("<unknown>");
  double s = v.as_double();
  if (s < 120) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", s);
    return buf;
  }
  return human_duration(static_cast<long long>(s));
}

// ------------------------------------------------------------------ commands

struct Options {
  std::string server;
  std::string output;
  std::string ns;
  long timeout_ms = 30000;
  std::vector<std::string> args;  // positional
};

JsonValue fetch(const Options& o, const std::string& method, const std::string& path) {
  HttpAnswer a = http(o.server, method, path, o.timeout_ms);
  std::optional<JsonValue> v;
  std::string parse_error;
  try {
    v = JsonValue::parse(a.body);
  } catch (const nplb::JsonParseError& e) {
    parse_error = e.what();
  }
  if (a.status != 200) {
    std::string msg = "nplb at " + o.server + " answered " + std::to_string(a.status) +
                      (a.reason.empty() ? "" : " " + a.reason) + " to " + method + " " + path;
    if (v && (*v)["error"].is_string()) msg += ": " + (*v)["error"].as_string();
    throw Failure(msg);
  }
  if (!v) throw Failure("invalid answer from nplb at " + o.server + " to " + path + ": " + parse_error);
  return *v;
}

void require_output(const Options& o, std::initializer_list<const char*> allowed) {
  if (o.output.empty()) return;
  std::string list;
  for (const char* a : allowed) {
    if (o.output == a) return;
    list += list.empty() ? a : std::string(", ") + a;
  }
  throw UsageError("unsupported output format \"" + o.output + "\"" +
                   (list.empty() ? std::string(" (this command has none)") : " (" + list + ")"));
}

// Prints -o json|yaml; false when the table form is wanted.
bool print_structured(const Options& o, const JsonValue& v) {
  if (o.output == "json") {
    std::cout << v.dump(2) << "\n";
    return true;
  }
  if (o.output == "yaml") {
    std::cout << v.to_yaml();
    return true;
  }
  return false;
}

bool ns_name_matches(const Options& o, const std::string& ns, const std::string& name) {
  if (!o.ns.empty() && ns != o.ns) return false;
  if (o.args.empty()) return true;
  for (const auto& a : o.args)
    if (a == name || a == ns + "/" + name) return true;
  return false;
}

// Keeps the list's items that match; the list is v[key].
JsonValue filtered(const JsonValue& v, const std::string& key,
                   bool (*keep)(const Options&, const JsonValue&), const Options& o) {
  JsonValue::Object members;
  for (const auto& [k, val] : v.as_object()) {
    if (k == key && val.is_array()) {
      JsonValue::Array items;
      for (const auto& item : val.as_array())
        if (keep(o, item)) items.push_back(item);
      members.emplace_back(k, JsonValue::array(std::move(items)));
    } else {
      members.emplace_back(k, val);
    }
  }
  return JsonValue::object(std::move(members));
}

const JsonValue::Array& list_of(const JsonValue& v, const char* key, const Options& o) {
  const JsonValue* l = v.find(key);
  if (!l || !l->is_array())
    throw Failure("invalid answer from nplb at " + o.server + ": no \"" + key + "\" list");
  return l->as_array();
}

void check_found(const Options& o, const JsonValue::Array& items, const char* what) {
  if (!items.empty()) return;
  if (!o.args.empty()) throw Failure(std::string(what) + " \"" + join(o.args, "\", \"") + "\" not found");
  std::cerr << "No resources found" << (o.ns.empty() ? "" : " in " + o.ns + " namespace") << ".\n";
}

int get_services(const Options& o) {
  require_output(o, {"wide", "json", "yaml"});
  JsonValue all = fetch(o, "GET", "/v1/services");
  list_of(all, "services", o);
  JsonValue v = filtered(all, "services", [](const Options& op, const JsonValue& s) {
    return ns_name_matches(op, s["namespace"].text_or("default"), s["name"].text_or());
  }, o);
  if (print_structured(o, v)) return 0;
  const auto& svcs = v["services"].as_array();
  check_found(o, svcs, "service");
  if (svcs.empty()) return 0;
  bool wide = o.output == "wide";
  std::vector<std::string> header = {"NAMESPACE", "NAME", "TYPE", "FRONTENDS", "PORT(S)", "BACKENDS"};
  if (wide) header.insert(header.end(), {"POLICY", "AFFINITY", "ADDRESSES"});
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : svcs) {
    std::vector<std::string> frontends, ports, addresses;
    for (const auto& f : s["frontends"].is_array() ? s["frontends"].as_array() : JsonValue::Array{})
      frontends.push_back(f.text_or());
    std::set<std::string> hosts, seen;
    for (const auto& p : s["ports"].is_array() ? s["ports"].as_array() : JsonValue::Array{}) {
      std::string port = p["port"].text_or("?");
      std::string node_port = p["nodePort"].text_or("0");
      std::string proto = p["protocol"].text_or("TCP");
      ports.push_back(node_port == "0" ? port + "/" + proto : port + ":" + node_port + "/" + proto);
      for (const auto& b : p["backends"].is_array() ? p["backends"].as_array() : JsonValue::Array{}) {
        std::string addr = b["address"].text_or();
        hosts.insert(addr);
        std::string hp = host_port(addr, b["port"].text_or("?"));
        std::string state = b["state"].text_or("up");
        if (state != "up") hp += "(" + state + ")";
        if (seen.insert(hp).second) addresses.push_back(hp);
      }
    }
    std::vector<std::string> row = {s["namespace"].text_or("default"), s["name"].text_or(),
                                    s["type"].text_or("<unknown>"), or_none(join(frontends)),
                                    or_none(join(ports)), std::to_string(hosts.size())};
    if (wide)
      row.insert(row.end(), {s["externalTrafficPolicy"].text_or("<none>"),
                             s["sessionAffinity"].text_or("<none>"), or_none(join(addresses))});
    rows.push_back(std::move(row));
  }
  print_table(header, rows);
  return 0;
}

int get_nodes(const Options& o) {
  require_output(o, {"wide", "json", "yaml"});
  JsonValue all = fetch(o, "GET", "/v1/nodes");
  list_of(all, "nodes", o);
  JsonValue v = filtered(all, "nodes", [](const Options& op, const JsonValue& n) {
    if (op.args.empty()) return true;
    for (const auto& a : op.args)
      if (a == n["name"].text_or()) return true;
    return false;
  }, o);
  if (print_structured(o, v)) return 0;
  const auto& nodes = v["nodes"].as_array();
  Options no_ns = o;
  no_ns.ns.clear();
  check_found(no_ns, nodes, "node");
  if (nodes.empty()) return 0;
  bool wide = o.output == "wide";
  std::vector<std::string> header = {"NAME", "ADDRESS", "STATE", "SINCE"};
  if (wide) header.insert(header.end(), {"LAST-CHANGE", "LAST-ERROR"});
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : nodes) {
    std::vector<std::string> row = {n["name"].text_or(), or_none(n["address"].text_or()),
                                    n["state"].text_or("<unknown>"), age_of(n["last_change"])};
    if (wide) row.insert(row.end(), {or_none(n["last_change"].text_or()), or_none(n["last_error"].text_or())});
    rows.push_back(std::move(row));
  }
  print_table(header, rows);
  return 0;
}

int get_endpoints(const Options& o) {
  require_output(o, {"wide", "json", "yaml"});
  JsonValue all = fetch(o, "GET", "/v1/endpoints");
  list_of(all, "endpoints", o);
  JsonValue v = filtered(all, "endpoints", [](const Options& op, const JsonValue& e) {
    std::string svc = e["service"].text_or();
    auto slash = svc.find('/');
    std::string ns = slash == std::string::npos ? "default" : svc.substr(0, slash);
    std::string name = slash == std::string::npos ? svc : svc.substr(slash + 1);
    return ns_name_matches(op, ns, name);
  }, o);
  if (print_structured(o, v)) return 0;
  const auto& eps = v["endpoints"].as_array();
  check_found(o, eps, "endpoints of service");
  if (eps.empty()) return 0;
  bool wide = o.output == "wide";
  std::vector<std::string> header = {"SERVICE", "PORT", "ENDPOINT", "NODE", "STATE", "SINCE"};
  if (wide) header.insert(header.end(), {"LAST-CHANGE", "LAST-ERROR"});
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : eps) {
    std::string port = e["port"].text_or();
    std::vector<std::string> row = {e["service"].text_or(), port.empty() ? "<unset>" : port,
                                    host_port(e["address"].text_or(), e["port_number"].text_or("?")),
                                    or_none(e["node"].text_or()), e["state"].text_or("<unknown>"),
                                    age_of(e["last_change"])};
    if (wide) row.insert(row.end(), {or_none(e["last_change"].text_or()), or_none(e["last_error"].text_or())});
    rows.push_back(std::move(row));
  }
  print_table(header, rows);
  return 0;
}

void flatten(const std::string& prefix, const JsonValue& v, std::vector<std::vector<std::string>>& rows) {
  if (v.is_object()) {
    for (const auto& [k, val] : v.as_object()) flatten(prefix.empty() ? k : prefix + "." + k, val, rows);
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) flatten(prefix + "[" + std::to_string(i) + "]", v[i], rows);
  } else {
    rows.push_back({prefix, v.text_or("null")});
  }
}

int get_stats(const Options& o) {
  require_output(o, {"json", "yaml"});
  JsonValue v = fetch(o, "GET", "/v1/stats");
  if (print_structured(o, v)) return 0;
  if (!v.is_object()) throw Failure("invalid answer from nplb at " + o.server + ": stats are not an object");
  // Scalars (and objects of scalars, like drops) as COUNTER VALUE; objects of objects
  // (ports, services, backends) as tables of their own.
  std::vector<std::vector<std::string>> scalars;
  std::vector<std::pair<std::string, const JsonValue*>> tables;
  for (const auto& [k, val] : v.as_object()) {
    bool table = val.is_object() && val.size() > 0;
    if (table)
      for (const auto& [ik, iv] : val.as_object()) table &= iv.is_object();
    if (table)
      tables.emplace_back(k, &val);
    else
      flatten(k, val, scalars);
  }
  bool first = true;
  for (const auto& [name, t] : tables) {
    std::string title = name;
    if (title.size() > 1 && title.back() == 's') title.pop_back();
    for (char& c : title) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::vector<std::string> keys;
    for (const auto& [rk, row] : t->as_object())
      for (const auto& [ck, cv] : row.as_object())
        if (std::find(keys.begin(), keys.end(), ck) == keys.end()) keys.push_back(ck);
    std::vector<std::string> header = {title};
    for (auto k : keys) {
      for (char& c : k) c = c == '_' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      header.push_back(k);
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& [rk, row] : t->as_object()) {
      std::vector<std::string> r = {rk};
      for (const auto& k : keys) r.push_back(row[k].text_or(row[k].is_null() ? "0" : row[k].dump()));
      rows.push_back(std::move(r));
    }
    if (!first) std::cout << "\n";
    first = false;
    print_table(header, rows);
  }
  if (!scalars.empty()) {
    if (!first) std::cout << "\n";
    print_table({"COUNTER", "VALUE"}, scalars);
  }
  return 0;
}

int status(const Options& o) {
  require_output(o, {"json", "yaml"});
  JsonValue v = fetch(o, "GET", "/v1/status");
  if (print_structured(o, v)) return 0;
  std::vector<std::pair<std::string, std::string>> lines = {
      {"Server", o.server},
      {"Version", v["version"].text_or("<unknown>")},
      {"Generation", v["generation"].text_or("<unknown>")},
      {"Uptime", seconds_text(v["uptime_seconds"])},
      {"Workers", v["workers"].text_or("<unknown>")},
      {"Config", or_none(v["config"].text_or())},
  };
  const JsonValue& lr = v["last_reload"];
  if (lr.is_object()) {
    std::string when = lr["time"].text_or("<unknown>");
    std::string age = age_of(lr["time"]);
    if (age != when) when += " (" + age + " ago)";
    lines.push_back({"Last reload", when});
    lines.push_back({"  Trigger", lr["trigger"].text_or("<unknown>")});
    lines.push_back({"  Result", lr["ok"].is_bool() ? (lr["ok"].as_bool() ? "ok" : "refused") : "<unknown>"});
  } else {
    lines.push_back({"Last reload", "<none>"});
  }
  std::size_t w = 0;
  for (const auto& [k, val] : lines) w = std::max(w, k.size());
  for (const auto& [k, val] : lines) std::cout << k << ":" << std::string(w - k.size() + 2, ' ') << val << "\n";
  auto list = [&](const char* key, const char* title) {
    const JsonValue& l = lr[key];
    if (!l.is_array() || l.size() == 0) return;
    std::cout << "  " << title << ":\n";
    for (const auto& item : l.as_array()) std::cout << "    " << item.text_or(item.dump()) << "\n";
  };
  list("changes", "Changes");
  list("errors", "Errors");
  list("restart_required", "Restart required");
  return 0;
}

int reload(const Options& o) {
  require_output(o, {"json", "yaml"});
  if (!o.args.empty()) throw UsageError("reload takes no arguments");
  JsonValue v = fetch(o, "POST", "/v1/reload");
  const JsonValue& ok = v["ok"];
  if (!ok.is_bool()) throw Failure("invalid answer from nplb at " + o.server + ": no \"ok\" in the reload result");
  if (print_structured(o, v)) return ok.as_bool() ? 0 : 1;
  auto items = [&](const char* key) {
    std::vector<std::string> r;
    if (v[key].is_array())
      for (const auto& i : v[key].as_array()) r.push_back(i.text_or(i.dump()));
    return r;
  };
  auto changes = items("changes"), errors = items("errors"), restart = items("restart_required");
  std::string gen = v["generation"].text_or("?");
  bool applied = v["applied"].is_bool() ? v["applied"].as_bool() : ok.as_bool();
  if (!applied) {
    for (const auto& e : errors) std::cerr << e << "\n";
    std::cerr << "nplbctl: reload refused; generation " << gen << " stays in force\n";
    return 1;
  }
  for (const auto& c : changes) std::cout << c << "\n";
  for (const auto& r : restart) std::cout << "restart required: " << r << "\n";
  if (changes.empty() && restart.empty()) std::cout << "no changes (generation " << gen << ")\n";
  if (ok.as_bool()) return 0;
  // Objects rejected on their own: the rest applied, but the user must fix them.
  for (const auto& e : errors) std::cerr << e << "\n";
  std::cerr << "nplbctl: " << errors.size() << " rejected; the rest applied (generation " << gen << ")\n";
  return 1;
}

int drain(const Options& o) {
  require_output(o, {"json", "yaml"});
  bool undo = false;
  std::vector<std::string> nodes;
  for (const auto& a : o.args) {
    if (a == "--undo") undo = true;
    else nodes.push_back(a);
  }
  if (nodes.size() != 1) throw UsageError("drain takes one node name (and --undo to bring it back)");
  JsonValue v = fetch(o, "POST", "/v1/drain?node=" + nodes[0] + (undo ? "&undo=1" : ""));
  if (print_structured(o, v)) return 0;
  std::cout << "node/" << nodes[0] << " " << (undo ? "back in rotation" : "draining") << " (generation "
            << v["generation"].text_or("?") << ")\n";
  return 0;
}

int version(const Options& o) {
  require_output(o, {});
  std::cout << "Client Version: " NPLB_VERSION "\n";
  JsonValue v = fetch(o, "GET", "/v1/status");
  std::cout << "Server Version: " << v["version"].text_or("<unknown>") << "\n";
  return 0;
}

long parse_duration_ms(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0 || i > 9) throw UsageError("bad --request-timeout \"" + s + "\" (e.g. 30s, 500ms, 2m)");
  long n = std::stol(s.substr(0, i));
  std::string unit = s.substr(i);
  long ms;
  if (unit == "ms") ms = n;
  else if (unit == "s" || unit.empty()) ms = n * 1000;
  else if (unit == "m") ms = n * 60000;
  else throw UsageError("bad --request-timeout \"" + s + "\" (e.g. 30s, 500ms, 2m)");
  if (ms <= 0) throw UsageError("--request-timeout must be positive");
  return ms;
}

int run(int argc, char** argv) {
  Options o;
  const char* env = std::getenv("NPLB_API");
  o.server = env && *env ? env : kDefaultServer;
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // Returns the option's value: "--opt=v", "-ov" or the next argument.
    auto value = [&](const std::string& shortf, const std::string& longf, std::string& out) {
      if (a == shortf || a == longf) {
        if (i + 1 >= argc) throw UsageError(a + " needs a value");
        out = argv[++i];
        return true;
      }
      if (a.rfind(longf + "=", 0) == 0) {
        out = a.substr(longf.size() + 1);
        return true;
      }
      if (!shortf.empty() && a.size() > 2 && a.rfind(shortf, 0) == 0 && a[1] != '-') {
        out = a.substr(shortf.size());
        if (!out.empty() && out[0] == '=') out.erase(0, 1);
        return true;
      }
      return false;
    };
    std::string val;
    if (a == "-h" || a == "--help") {
      help = true;
    } else if (a == "--version") {
      std::cout << "nplbctl " NPLB_VERSION "\n";
      return 0;
    } else if (a == "-A" || a == "--all-namespaces") {
      o.ns.clear();
    } else if (value("-s", "--server", val)) {
      o.server = val;
    } else if (value("-o", "--output", val)) {
      o.output = val;
    } else if (value("-n", "--namespace", val)) {
      o.ns = val;
    } else if (value("", "--request-timeout", val)) {
      o.timeout_ms = parse_duration_ms(val);
    } else if (a == "--undo") {
      o.args.push_back(a);  // drain's
    } else if (a == "--") {
      for (++i; i < argc; ++i) o.args.push_back(argv[i]);
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError("unknown option " + a);
    } else {
      o.args.push_back(a);
    }
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (o.args.empty()) throw UsageError("no command");
  std::string cmd = o.args.front();
  o.args.erase(o.args.begin());
  if (cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "get") {
    if (o.args.empty()) throw UsageError("get needs a resource: svc, nodes, endpoints or stats");
    std::string res = o.args.front();
    o.args.erase(o.args.begin());
    if (res == "svc" || res == "service" || res == "services") return get_services(o);
    if (res == "nodes" || res == "node" || res == "no") return get_nodes(o);
    if (res == "endpoints" || res == "endpoint" || res == "ep") return get_endpoints(o);
    if (res == "stats" || res == "stat") {
      if (!o.args.empty()) throw UsageError("get stats takes no names");
      return get_stats(o);
    }
    throw UsageError("unknown resource \"" + res + "\" (svc, nodes, endpoints, stats)");
  }
  if (cmd == "status") {
    if (!o.args.empty()) throw UsageError("status takes no arguments");
    return status(o);
  }
  if (cmd == "reload") return reload(o);
  if (cmd == "drain") return drain(o);
  if (cmd == "version") return version(o);
  throw UsageError("unknown command \"" + cmd + "\"");
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(true);
  try {
    int rc = run(argc, argv);
    std::cout.flush();
    return rc;
  } catch (const UsageError& e) {
    std::cerr << "nplbctl: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "nplbctl: " << e.what() << "\n";
    return 1;
  }
}
