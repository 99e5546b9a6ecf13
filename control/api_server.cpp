#include "api_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "json_writer.hpp"

namespace nplb {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxDrainBytes = 4 * 1024 * 1024;  // discarded after a response
constexpr int kLingerMs = 1000;                          // ... for at most this long
constexpr std::size_t kAcceptsPerPoll = 128;

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail(const std::string& listen, const std::string& why) {
  throw std::runtime_error("api.listen \"" + listen + "\": " + why);
}

bool is_tchar(unsigned char c) {
  if (std::isalnum(c)) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = lower(c);
  return r;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; '+' means space in query components. False on a bad escape or NUL.
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
      if (h < 0 || l < 0) return false;
      char d = static_cast<char>(h * 16 + l);
      if (d == '\0') return false;
      out += d;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

bool parse_port(std::string_view s, uint16_t& port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

std::string head_text(int status, std::string_view content_type, std::size_t length,
                      std::string_view extra_headers) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + http_reason(status) + "\r\n";
  if (!content_type.empty()) {
    h += "Content-Type: ";
    h += content_type;
    h += "\r\n";
  }
  h += "Content-Length: " + std::to_string(length) + "\r\n";
  h += extra_headers;
  h += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  return h;
}

}  // namespace

const char* http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

HttpResponse json_error(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = "{\"error\": " + JsonWriter::escape(message) + "}\n";
  return r;
}

struct ApiServer::Conn {
  enum class State { Reading, Writing, Draining };
  int fd = -1;
  State state = State::Reading;
  Clock::time_point deadline;
  std::string in;
  std::string out;
  std::size_t out_off = 0;
  std::size_t drained = 0;
  // Parsing progress.
  bool headers_done = false;
  std::size_t body_start = 0;
  std::size_t content_length = 0;
  bool want_continue = false;
  HttpRequest req;
};

ApiServer::ApiServer(const std::string& listen) : ApiServer(listen, Limits{}) {}

ApiServer::ApiServer(const std::string& listen, Limits limits) : limits_(limits) {
  if (listen.rfind("unix:", 0) == 0) {
    std::string path = listen.substr(5);
    if (path.empty()) fail(listen, "empty socket path (expected unix:/path/to/api.sock)");
    sockaddr_un sun{};
    if (path.size() >= sizeof sun.sun_path)
      fail(listen, "socket path too long (" + std::to_string(path.size()) + " bytes, at most " +
                       std::to_string(sizeof sun.sun_path - 1) + ")");
    if (path.find('\0') != std::string::npos) fail(listen, "socket path contains NUL");
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.data(), path.size());

    // A socket file left by an earlier run: remove it, unless someone still accepts on it.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) fail(listen, path + " exists and is not a socket");
      int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe < 0) fail(listen, "socket: " + errno_text(errno));
      int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&sun), sizeof sun);
      int err = errno;
      ::close(probe);
      if (rc == 0) fail(listen, "address already in use (another process accepts on " + path + ")");
      if (err != ECONNREFUSED)
        fail(listen, "cannot check the existing socket " + path + ": " + errno_text(err));
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        fail(listen, "cannot remove the stale socket " + path + ": " + errno_text(errno));
    }

    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) fail(listen, "socket: " + errno_text(errno));
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0) {
      int err = errno;
      ::close(listen_fd_);
      listen_fd_ = -1;
      std::string why = "cannot bind: " + errno_text(err);
      if (err == ENOENT) {
        auto slash = path.rfind('/');
        why += " (does " + (slash == std::string::npos ? std::string(".") : path.substr(0, std::max<std::size_t>(slash, 1))) +
               " exist?)";
      }
      if (err == EADDRINUSE) why = "address already in use";
      fail(listen, why);
    }
    // Owner only, before anyone can connect (connections need listen()).
    if (::chmod(path.c_str(), 0600) != 0) {
      int err = errno;
      ::close(listen_fd_);
      listen_fd_ = -1;
      ::unlink(path.c_str());
      fail(listen, "chmod 0600: " + errno_text(err));
    }
    struct stat mine {};
    if (::stat(path.c_str(), &mine) == 0) {
      unix_dev_ = static_cast<unsigned long>(mine.st_dev);
      unix_ino_ = static_cast<unsigned long>(mine.st_ino);
    }
    unix_path_ = path;
    address_ = "unix:" + path;
  } else {
    std::string host;
    std::string_view port_text;
    if (!listen.empty() && listen.front() == '[') {
      auto close = listen.find(']');
      if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
        fail(listen, "expected [IPv6]:PORT, e.g. [::1]:9080");
      host = listen.substr(1, close - 1);
      port_text = std::string_view(listen).substr(close + 2);
    } else {
      auto colon = listen.rfind(':');
      if (colon == std::string::npos)
        fail(listen, "expected ADDRESS:PORT (127.0.0.1:9080, [::1]:9080) or unix:/path");
      host = listen.substr(0, colon);
      if (host.find(':') != std::string::npos)
        fail(listen, "an IPv6 address needs brackets: [" + host + "]:PORT");
      port_text = std::string_view(listen).substr(colon + 1);
      if (host == "localhost") host = "127.0.0.1";
    }
    uint16_t port = 0;
    if (!parse_port(port_text, port))
      fail(listen, "bad port \"" + std::string(port_text) + "\" (expected 0..65535)");

    sockaddr_storage ss{};
    socklen_t len = 0;
    in_addr a4{};
    in6_addr a6{};
    bool v6 = false;
    if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) {
      if ((ntohl(a4.s_addr) >> 24) != 127)
        fail(listen, host + " is not a loopback address (the API listens on loopback or a Unix socket only)");
      auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
      s4->sin_family = AF_INET;
      s4->sin_port = htons(port);
      s4->sin_addr = a4;
      len = sizeof *s4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
      bool loop = IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
      if (!loop)
        fail(listen, host + " is not a loopback address (the API listens on loopback or a Unix socket only)");
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(port);
      s6->sin6_addr = a6;
      len = sizeof *s6;
      v6 = true;
    } else {
      fail(listen, "\"" + host + "\" is not an IP address");
    }

    listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) fail(listen, "socket: " + errno_text(errno));
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (v6) ::setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
      int err = errno;
      ::close(listen_fd_);
      listen_fd_ = -1;
      if (err == EADDRINUSE) fail(listen, "address already in use");
      if (err == EADDRNOTAVAIL) fail(listen, "address not available on this host");
      fail(listen, "cannot bind: " + errno_text(err));
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &blen);
    char text[INET6_ADDRSTRLEN] = {};
    if (v6) {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&bound);
      ::inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
      address_ = std::string("[") + text + "]:" + std::to_string(ntohs(s6->sin6_port));
    } else {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&bound);
      ::inet_ntop(AF_INET, &s4->sin_addr, text, sizeof text);
      address_ = std::string(text) + ":" + std::to_string(ntohs(s4->sin_port));
    }
  }

  if (::listen(listen_fd_, 128) != 0) {
    int err = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
    fail(listen, "listen: " + errno_text(err));
  }
}

ApiServer::~ApiServer() {
  for (auto& c : conns_)
    if (c->fd >= 0) ::close(c->fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (!unix_path_.empty()) {
    // Only our own socket file: a newer instance may have replaced it.
    struct stat st {};
    if (::lstat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        static_cast<unsigned long>(st.st_dev) == unix_dev_ &&
        static_cast<unsigned long>(st.st_ino) == unix_ino_)
      ::unlink(unix_path_.c_str());
  }
}

void ApiServer::route(std::string method, std::string path, Handler handler) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  routes_[std::move(path)][std::move(method)] = std::move(handler);
}

void ApiServer::poll(int timeout_ms) {
  auto now = Clock::now();
  int wait = timeout_ms;
  for (auto& c : conns_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->deadline - now).count() + 1;
    if (left < 0) left = 0;
    if (wait < 0 || left < wait) wait = static_cast<int>(left);
  }

  std::vector<pollfd> pfds;
  pfds.reserve(conns_.size() + 1);
  pfds.push_back({listen_fd_, POLLIN, 0});
  for (auto& c : conns_) {
    short ev = 0;
    if (c->state != Conn::State::Writing) ev |= POLLIN;
    if (c->out_off < c->out.size()) ev |= POLLOUT;
    pfds.push_back({c->fd, ev, 0});
  }
  int n = ::poll(pfds.data(), pfds.size(), wait);
  if (n < 0) return;  // EINTR: the caller polls again

  // Connections first (their indices match pfds), then new ones.
  std::size_t count = conns_.size();
  for (std::size_t i = 0; i < count; ++i) {
    Conn& c = *conns_[i];
    short re = pfds[i + 1].revents;
    if (re == 0 || c.fd < 0) continue;
    if (re & POLLNVAL) {
      close_conn(c);
      continue;
    }
    if ((re & POLLOUT) && c.fd >= 0) on_writable(c);
    if ((re & (POLLIN | POLLHUP | POLLERR)) && c.fd >= 0) {
      if (c.state == Conn::State::Writing) {
        if (re & (POLLHUP | POLLERR)) close_conn(c);
      } else {
        on_readable(c);
      }
    }
  }
  if (pfds[0].revents & POLLIN) accept_all();

  // Deadlines.
  now = Clock::now();
  for (auto& cp : conns_) {
    Conn& c = *cp;
    if (c.fd < 0 || now < c.deadline) continue;
    if (c.state == Conn::State::Reading && !c.in.empty())
      respond(c, json_error(408, "request not complete within " +
                                     std::to_string(limits_.request_timeout_ms) + " ms"));
    else
      close_conn(c);
  }
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->fd < 0; }),
               conns_.end());
}

void ApiServer::accept_all() {
  for (std::size_t i = 0; i < kAcceptsPerPoll; ++i) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: the backlog keeps them for later
    }
    // Connections that are only lingering after their answer count half.
    std::size_t busy = 0;
    for (const auto& c : conns_) busy += c->state != Conn::State::Draining ? 2 : 1;
    if (busy >= 2 * limits_.max_connections) {
      HttpResponse r = json_error(503, "too many connections");
      std::string msg = head_text(503, r.content_type, r.body.size(), "") + r.body;
      [[maybe_unused]] auto sent = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->deadline = Clock::now() + std::chrono::milliseconds(limits_.request_timeout_ms);
    conns_.push_back(std::move(c));
    // Most requests are already there: read at once.
    on_readable(*conns_.back());
  }
}

void ApiServer::close_conn(Conn& c) {
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
}

void ApiServer::on_readable(Conn& c) {
  char buf[kReadChunk];
  for (;;) {
    if (c.fd < 0) return;
    ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
      return;
    }
    if (n == 0) {  // end of the client's side
      if (c.state == Conn::State::Reading && !c.in.empty()) {
        respond(c, json_error(400, "incomplete request"));
      } else if (c.state == Conn::State::Reading || c.state == Conn::State::Draining) {
        close_conn(c);
      }
      return;
    }
    if (c.state == Conn::State::Draining) {
      c.drained += static_cast<std::size_t>(n);
      if (c.drained > kMaxDrainBytes) close_conn(c);
      continue;
    }
    if (c.state != Conn::State::Reading) return;
    c.in.append(buf, static_cast<std::size_t>(n));
    process(c);
    if (c.state != Conn::State::Reading) {
      if (c.state == Conn::State::Draining) continue;  // keep discarding
      return;
    }
  }
}

void ApiServer::process(Conn& c) {
  if (!c.headers_done) {
    // Leading empty lines before the request line are allowed (RFC 9112 2.2).
    std::size_t skip = 0;
    while (skip < c.in.size() && (c.in[skip] == '\r' || c.in[skip] == '\n')) ++skip;
    if (skip > 0) c.in.erase(0, skip);

    // Garbage (TLS, binary) is refused as soon as the request line is there.
    auto eol = c.in.find('\n');
    if (eol == std::string::npos) {
      for (unsigned char ch : c.in)
        if ((ch < 0x20 && ch != '\r') || ch >= 0x7f)
          return respond(c, json_error(400, "malformed request line"));
      if (c.in.size() > limits_.max_header_bytes)
        return respond(c, json_error(414, "request line longer than " +
                                              std::to_string(limits_.max_header_bytes) + " bytes"));
      return;
    }

    if (eol > limits_.max_header_bytes)
      return respond(c, json_error(414, "request line longer than " +
                                            std::to_string(limits_.max_header_bytes) + " bytes"));

    std::size_t end = std::string::npos, body_start = 0;
    auto crlf = c.in.find("\r\n\r\n");
    auto lflf = c.in.find("\n\n");
    if (crlf != std::string::npos && (lflf == std::string::npos || crlf < lflf)) {
      end = crlf;
      body_start = crlf + 4;
    } else if (lflf != std::string::npos) {
      end = lflf;
      body_start = lflf + 2;
    }
    if (end == std::string::npos) {
      if (c.in.size() > limits_.max_header_bytes)
        return respond(c, json_error(431, "request headers larger than " +
                                              std::to_string(limits_.max_header_bytes) + " bytes"));
      return;
    }
    if (body_start > limits_.max_header_bytes)
      return respond(c, json_error(431, "request headers larger than " +
                                            std::to_string(limits_.max_header_bytes) + " bytes"));

    // Split into lines.
    std::vector<std::string_view> lines;
    std::string_view head(c.in.data(), end);
    std::size_t pos = 0;
    while (pos <= head.size()) {
      auto nl = head.find('\n', pos);
      std::string_view line = head.substr(pos, nl == std::string_view::npos ? head.size() - pos : nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      lines.push_back(line);
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }

    // Request line: METHOD SP TARGET SP HTTP/1.x
    std::string_view rl = lines[0];
    auto sp1 = rl.find(' ');
    auto sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
        rl.find(' ', sp2 + 1) != std::string_view::npos || sp1 == 0 || sp2 == sp1 + 1)
      return respond(c, json_error(400, "malformed request line"));
    std::string_view method = rl.substr(0, sp1), target = rl.substr(sp1 + 1, sp2 - sp1 - 1),
                     version = rl.substr(sp2 + 1);
    for (unsigned char ch : method)
      if (!is_tchar(ch)) return respond(c, json_error(400, "malformed method"));
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        !std::isdigit(static_cast<unsigned char>(version[5])) ||
        !std::isdigit(static_cast<unsigned char>(version[7])))
      return respond(c, json_error(400, "malformed HTTP version"));
    if (version[5] != '1') return respond(c, json_error(505, "only HTTP/1.0 and HTTP/1.1 are supported"));
    if (target.empty() || target.front() != '/')
      return respond(c, json_error(400, "request target must be a path starting with '/'"));
    for (unsigned char ch : target)
      if (ch <= 0x20 || ch >= 0x7f) return respond(c, json_error(400, "invalid character in request target"));

    HttpRequest& req = c.req;
    req.method = std::string(method);
    auto q = target.find('?');
    std::string_view raw_path = target.substr(0, q);
    if (auto hash = raw_path.find('#'); hash != std::string_view::npos) raw_path = raw_path.substr(0, hash);
    if (!percent_decode(raw_path, false, req.path))
      return respond(c, json_error(400, "bad percent-encoding in path"));
    while (req.path.size() > 1 && req.path.back() == '/') req.path.pop_back();
    if (q != std::string_view::npos) {
      std::string_view query = target.substr(q + 1);
      if (auto hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
      req.query = std::string(query);
      std::size_t p = 0;
      while (p <= query.size()) {
        auto amp = query.find('&', p);
        std::string_view part = query.substr(p, amp == std::string_view::npos ? query.size() - p : amp - p);
        if (!part.empty()) {
          auto eq = part.find('=');
          std::string k, v;
          if (!percent_decode(part.substr(0, eq), true, k) ||
              (eq != std::string_view::npos && !percent_decode(part.substr(eq + 1), true, v)))
            return respond(c, json_error(400, "bad percent-encoding in query"));
          req.params[k] = v;
        }
        if (amp == std::string_view::npos) break;
        p = amp + 1;
      }
    }

    // Header fields.
    bool have_length = false;
    for (std::size_t i = 1; i < lines.size(); ++i) {
      std::string_view line = lines[i];
      if (line.empty()) continue;
      if (line.front() == ' ' || line.front() == '\t')
        return respond(c, json_error(400, "obsolete header line folding"));
      auto colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0)
        return respond(c, json_error(400, "malformed header line"));
      std::string_view name = line.substr(0, colon);
      for (unsigned char ch : name)
        if (!is_tchar(ch)) return respond(c, json_error(400, "malformed header name"));
      std::string_view value = trim_ows(line.substr(colon + 1));
      for (unsigned char ch : value)
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
          return respond(c, json_error(400, "invalid character in header value"));
      std::string lname = to_lower(name);
      if (lname == "content-length") {
        if (value.empty() || value.size() > 18)
          return respond(c, json_error(value.size() > 18 ? 413 : 400, "bad Content-Length"));
        std::size_t len = 0;
        for (char ch : value) {
          if (ch < '0' || ch > '9') return respond(c, json_error(400, "bad Content-Length"));
          len = len * 10 + static_cast<std::size_t>(ch - '0');
        }
        if (have_length && len != c.content_length)
          return respond(c, json_error(400, "conflicting Content-Length headers"));
        have_length = true;
        c.content_length = len;
      }
      auto [it, fresh] = req.headers.emplace(lname, std::string(value));
      if (!fresh && lname != "content-length") it->second += ", " + std::string(value);
    }
    if (req.headers.count("transfer-encoding"))
      return respond(c, json_error(411, "chunked request bodies are not supported: send Content-Length"));
    if (c.content_length > limits_.max_body_bytes)
      return respond(c, json_error(413, "request body larger than " +
                                            std::to_string(limits_.max_body_bytes) + " bytes"));
    if (auto e = req.headers.find("expect"); e != req.headers.end()) {
      if (to_lower(e->second) != "100-continue")
        return respond(c, json_error(417, "unsupported Expect: " + e->second));
      c.want_continue = true;
    }
    c.headers_done = true;
    c.body_start = body_start;
    if (c.want_continue && c.in.size() < c.body_start + c.content_length) {
      c.out += "HTTP/1.1 100 Continue\r\n\r\n";
      on_writable(c);
    }
  }

  if (c.in.size() < c.body_start + c.content_length) return;
  c.req.body = c.in.substr(c.body_start, c.content_length);
  c.in.clear();
  bool head_only = false;
  std::string allow;
  HttpResponse r = dispatch(c.req, head_only);
  if (r.status == 405) {
    auto it = routes_.find(c.req.path);
    if (it != routes_.end()) {
      allow = "Allow: ";
      bool first = true;
      bool has_get = false, has_head = false;
      for (auto& [m, h] : it->second) {
        allow += (first ? "" : ", ") + m;
        first = false;
        has_get |= m == "GET";
        has_head |= m == "HEAD";
      }
      if (has_get && !has_head) allow += ", HEAD";
      allow += "\r\n";
    }
  }
  std::string out = head_text(r.status, r.content_type, r.body.size(), allow);
  if (!head_only) out += r.body;
  c.out += out;
  c.state = Conn::State::Writing;
  c.deadline = Clock::now() + std::chrono::milliseconds(limits_.write_timeout_ms);
  on_writable(c);
}

HttpResponse ApiServer::dispatch(HttpRequest& req, bool& head_only) const {
  auto it = routes_.find(req.path);
  if (it == routes_.end()) return json_error(404, "no such path: " + req.path);
  auto h = it->second.find(req.method);
  if (h == it->second.end() && req.method == "HEAD") {
    h = it->second.find("GET");
    head_only = h != it->second.end();
  }
  if (h == it->second.end())
    return json_error(405, "method " + req.method + " not allowed on " + req.path);
  try {
    return h->second(req);
  } catch (const std::exception& e) {
    return json_error(500, std::string("internal error: ") + e.what());
  } catch (...) {
    return json_error(500, "internal error");
  }
}

void ApiServer::respond(Conn& c, const HttpResponse& r, bool head_only) {
  c.out += head_text(r.status, r.content_type, r.body.size(), "");
  if (!head_only) c.out += r.body;
  c.in.clear();
  c.state = Conn::State::Writing;
  c.deadline = Clock::now() + std::chrono::milliseconds(limits_.write_timeout_ms);
  on_writable(c);
}

void ApiServer::on_writable(Conn& c) {
  while (c.fd >= 0 && c.out_off < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
      return;
    }
    c.out_off += static_cast<std::size_t>(n);
  }
  if (c.fd < 0 || c.out_off < c.out.size()) return;
  c.out.clear();
  c.out_off = 0;
  if (c.state == Conn::State::Writing) {
    // All sent: end our side, then read and discard what the client still sends, so
    // that closing does not reset the connection before it has read the response.
    ::shutdown(c.fd, SHUT_WR);
    c.state = Conn::State::Draining;
    c.deadline = Clock::now() + std::chrono::milliseconds(kLingerMs);
  }
}

}  // namespace nplb
