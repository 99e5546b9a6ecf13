// HealthChecker against real sockets on loopback (127.0.0.1 and ::1). The peers are
// served from the test's own loop, between the checker's poll() calls: single-threaded,
// like the control thread, so a listener closes exactly when the test says so.
#include "control/health_checker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using nplb::HealthChange;
using nplb::HealthChecker;
using nplb::HealthState;
using nplb::HealthTarget;
using nplb::IpAddr;
using nplb::ProbeKind;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

IpAddr ip(const char* text) { return *nplb::parse_ip(text); }

// What a listening peer does with a connection.
enum class Mode {
  accept_close,     // TCP target: accept, close
  http,             // read the request, answer `status`, close
  silent,           // accept, read, never answer
  close_no_status,  // read the request, close without a word
};

class Peer {
 public:
  Peer(const char* address, Mode mode, int status = 200) : mode_(mode), status_(status), address_(ip(address)) {
    open(0);
  }
  ~Peer() {
    close_listener();
    for (auto& c : conns_) ::close(c.fd);
  }

  uint16_t port() const { return port_; }
  const IpAddr& address() const { return address_; }
  int accepted() const { return accepted_; }
  const std::string& last_request() const { return last_request_; }
  void set_status(int status) { status_ = status; }

  void close_listener() {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }
  void reopen() { open(port_); }

  // Non-blocking: accept what is waiting, read requests, answer.
  void serve() {
    if (listen_fd_ >= 0) {
      for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        ++accepted_;
        if (mode_ == Mode::accept_close) {
          ::close(fd);
          continue;
        }
        conns_.push_back({fd, {}});
      }
    }
    for (size_t i = 0; i < conns_.size();) {
      Conn& c = conns_[i];
      char buf[4096];
      bool gone = false;
      for (;;) {
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          c.in.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) gone = true;
        break;
      }
      const bool complete = c.in.find("\r\n\r\n") != std::string::npos;
      if (complete && !c.answered) {
        last_request_ = c.in;
        c.answered = true;
        if (mode_ == Mode::http) {
          std::string answer = "HTTP/1.0 " + std::to_string(status_) + " Whatever\r\nContent-Type: application/json\r\n"
                               "Content-Length: 21\r\n\r\n{\"localEndpoints\": 1}";
          [[maybe_unused]] auto n = ::send(c.fd, answer.data(), answer.size(), MSG_NOSIGNAL);
          gone = true;
        } else if (mode_ == Mode::close_no_status) {
          gone = true;
        }
      }
      if (gone) {
        ::close(c.fd);
        conns_.erase(conns_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
  }

 private:
  struct Conn {
    int fd;
    std::string in;
    bool answered = false;
  };

  void open(uint16_t port) {
    const bool v4 = address_.is_v4();
    listen_fd_ = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket");
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len;
    if (v4) {
      auto* s = reinterpret_cast<sockaddr_in*>(&ss);
      s->sin_family = AF_INET;
      s->sin_port = htons(port);
      std::memcpy(&s->sin_addr, address_.bytes.data(), 4);
      len = sizeof *s;
    } else {
      auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
      s->sin6_family = AF_INET6;
      s->sin6_port = htons(port);
      std::memcpy(&s->sin6_addr, address_.bytes.data(), 16);
      len = sizeof *s;
    }
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(listen_fd_, 1024) != 0)
      throw std::runtime_error(std::string("bind/listen: ") + std::strerror(errno));
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(v4 ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }

  Mode mode_;
  int status_;
  IpAddr address_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  int accepted_ = 0;
  std::string last_request_;
  std::vector<Conn> conns_;
};

// A port on which nobody listens (bound once, then released).
uint16_t refused_port(const char* address) {
  Peer p(address, Mode::accept_close);
  return p.port();
}

HealthTarget tcp_target(const std::string& key, const Peer& p, nplb::HealthParams params) {
  HealthTarget t;
  t.key = key;
  t.address = p.address();
  t.port = p.port();
  t.params = params;
  return t;
}

HealthTarget http_target(const std::string& key, const Peer& p, nplb::HealthParams params, std::string path = "/healthz",
                         int expect = 200) {
  HealthTarget t = tcp_target(key, p, params);
  t.kind = ProbeKind::http;
  t.path = std::move(path);
  t.expect_status = expect;
  return t;
}

nplb::HealthParams fast(uint32_t rise = 2, uint32_t fall = 3) {
  nplb::HealthParams p;
  p.interval = 100ms;
  p.timeout = 100ms;
  p.rise = rise;
  p.fall = fall;
  return p;
}

// Drives the checker and the peers until pred() holds or max passes; collects changes.
struct Loop {
  HealthChecker& hc;
  std::vector<Peer*> peers;
  std::vector<HealthChange> changes;

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds max) {
    const auto end = Clock::now() + max;
    while (Clock::now() < end) {
      hc.poll(2);
      for (Peer* p : peers) p->serve();
      for (auto& c : hc.take_changes()) changes.push_back(std::move(c));
      if (pred()) return true;
    }
    return pred();
  }
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }
  HealthState state(const std::string& key) const {
    const auto* s = hc.status(key);
    return s ? s->state : HealthState::unknown;
  }
  bool reaches(const std::string& key, HealthState want, std::chrono::milliseconds max = 2s) {
    return run_until([&] { return state(key) == want; }, max);
  }
};

}  // namespace

TEST(HealthChecker, TcpUpAfterFirstSuccessV4AndV6) {
  Peer p4("127.0.0.1", Mode::accept_close), p6("::1", Mode::accept_close);
  HealthChecker hc;
  hc.set_targets({tcp_target("v4", p4, fast()), tcp_target("v6", p6, fast())});
  EXPECT_EQ(hc.size(), 2u);
  EXPECT_EQ(hc.status("v4")->state, HealthState::unknown);
  Loop loop{hc, {&p4, &p6}, {}};
  // unknown -> up after one success, although rise is 2: a fresh start serves at once.
  ASSERT_TRUE(loop.run_until([&] { return loop.state("v4") == HealthState::up && loop.state("v6") == HealthState::up; }, 1s));
  for (const char* key : {"v4", "v6"}) {
    const auto* s = hc.status(key);
    EXPECT_EQ(s->probes, 1u) << key;
    EXPECT_EQ(s->consecutive_ok, 1u) << key;
    EXPECT_EQ(s->last_error, "") << key;
  }
  ASSERT_EQ(loop.changes.size(), 2u);
  EXPECT_EQ(loop.changes[0].from, HealthState::unknown);
  EXPECT_EQ(loop.changes[0].to, HealthState::up);
  EXPECT_EQ(loop.changes[0].reason, "connected (1 consecutive success)");
  EXPECT_EQ(hc.status("nope"), nullptr);
}

TEST(HealthChecker, DownAfterFallWhenListenerClosesThenRiseToComeBack) {
  for (const char* addr : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(addr);
    Peer peer(addr, Mode::accept_close);
    HealthChecker hc;
    const auto params = fast(/*rise=*/2, /*fall=*/3);
    hc.set_targets({tcp_target("node", peer, params)});
    Loop loop{hc, {&peer}, {}};
    ASSERT_TRUE(loop.reaches("node", HealthState::up));

    // Fail: connection refused from now on. Detection within interval x fall + timeout.
    peer.close_listener();
    const auto failed_at = Clock::now();
    ASSERT_TRUE(loop.run_until([&] { return hc.status("node")->consecutive_fail == 2; }, 1s));
    EXPECT_EQ(loop.state("node"), HealthState::up);  // fall is 3
    ASSERT_TRUE(loop.reaches("node", HealthState::down));
    const auto detect = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - failed_at);
    const auto bound = params.interval * params.fall + params.timeout + 100ms;  // slack for a loaded test machine
    std::printf("[ measured ] %s: down %lld ms after the listener closed (bound %lld ms)\n", addr,
                static_cast<long long>(detect.count()), static_cast<long long>(bound.count()));
    EXPECT_LE(detect, bound);
    EXPECT_GE(detect, params.interval * (params.fall - 1) - 20ms);
    const auto* s = hc.status("node");
    EXPECT_EQ(s->last_error, "connect: Connection refused");
    EXPECT_EQ(s->consecutive_fail, 3u);
    ASSERT_FALSE(loop.changes.empty());
    EXPECT_EQ(loop.changes.back().from, HealthState::up);
    EXPECT_EQ(loop.changes.back().to, HealthState::down);
    EXPECT_EQ(loop.changes.back().reason, "connect: Connection refused (3 consecutive failures)");

    // Return: down -> up only after `rise` successes.
    peer.reopen();
    ASSERT_TRUE(loop.run_until([&] { return hc.status("node")->consecutive_ok == 1; }, 1s));
    EXPECT_EQ(loop.state("node"), HealthState::down);
    EXPECT_EQ(hc.status("node")->last_error, "");
    ASSERT_TRUE(loop.reaches("node", HealthState::up));
    EXPECT_EQ(hc.status("node")->consecutive_ok, 2u);
    EXPECT_EQ(loop.changes.back().reason, "connected (2 consecutive successes)");
  }
}

TEST(HealthChecker, UnknownGoesDownAfterFallFailures) {
  IpAddr lo = ip("127.0.0.1");
  HealthTarget t;
  t.key = "dead";
  t.address = lo;
  t.port = refused_port("127.0.0.1");
  t.params = fast(2, 2);
  HealthChecker hc;
  hc.set_targets({t});
  Loop loop{hc, {}, {}};
  ASSERT_TRUE(loop.run_until([&] { return hc.status("dead")->probes == 1; }, 1s));
  EXPECT_EQ(loop.state("dead"), HealthState::unknown);
  ASSERT_TRUE(loop.reaches("dead", HealthState::down));
  EXPECT_EQ(hc.status("dead")->probes, 2u);
  ASSERT_EQ(loop.changes.size(), 1u);
  EXPECT_EQ(loop.changes[0].from, HealthState::unknown);
}

TEST(HealthChecker, Http200Versus503) {
  Peer ok4("127.0.0.1", Mode::http, 200), bad4("127.0.0.1", Mode::http, 503);
  Peer ok6("::1", Mode::http, 200), bad6("::1", Mode::http, 503);
  HealthChecker hc;
  hc.set_targets({http_target("ok4", ok4, fast()), http_target("bad4", bad4, fast()),
                  http_target("ok6", ok6, fast()), http_target("bad6", bad6, fast()),
                  // kube-proxy's /healthz on a node without local endpoints: expecting 503 is "up"
                  http_target("want503", bad4, fast(), "/healthz", 503)});
  Loop loop{hc, {&ok4, &bad4, &ok6, &bad6}, {}};
  ASSERT_TRUE(loop.run_until(
      [&] {
        return loop.state("ok4") == HealthState::up && loop.state("ok6") == HealthState::up &&
               loop.state("bad4") == HealthState::down && loop.state("bad6") == HealthState::down &&
               loop.state("want503") == HealthState::up;
      },
      2s));
  EXPECT_EQ(hc.status("bad4")->last_error, "HTTP 503");
  EXPECT_EQ(hc.status("bad6")->last_error, "HTTP 503");
  EXPECT_EQ(hc.status("ok4")->last_error, "");
  EXPECT_EQ(ok4.last_request(), "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(ok4.port()) +
                                    "\r\nUser-Agent: nplb-health\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(ok6.last_request(), "GET /healthz HTTP/1.0\r\nHost: [::1]:" + std::to_string(ok6.port()) +
                                    "\r\nUser-Agent: nplb-health\r\nConnection: close\r\n\r\n");
  bool saw = false;
  for (const auto& c : loop.changes)
    if (c.key == "ok4") {
      EXPECT_EQ(c.reason, "HTTP 200 (1 consecutive success)");
      saw = true;
    }
  EXPECT_TRUE(saw);

  // The node loses its local endpoints: 200 -> 503, down after fall.
  ok4.set_status(503);
  ASSERT_TRUE(loop.reaches("ok4", HealthState::down));
  EXPECT_EQ(loop.changes.back().reason, "HTTP 503 (3 consecutive failures)");
}

TEST(HealthChecker, HttpTimeoutAndNoDoubledProbe) {
  Peer silent("127.0.0.1", Mode::silent);
  HealthChecker hc;
  nplb::HealthParams params;
  params.interval = 100ms;
  params.timeout = 250ms;  // longer than the interval: the ticks in between are skipped
  params.fall = 2;
  hc.set_targets({http_target("mute", silent, params)});
  Loop loop{hc, {&silent}, {}};
  size_t max_in_flight = 0;
  const auto start = Clock::now();
  ASSERT_TRUE(loop.run_until(
      [&] {
        max_in_flight = std::max(max_in_flight, hc.probes_in_flight());
        return loop.state("mute") == HealthState::down;
      },
      2s));
  const auto took = Clock::now() - start;
  const auto* s = hc.status("mute");
  EXPECT_EQ(s->last_error, "timeout after 250 ms");
  EXPECT_GE(s->last_latency, 250ms);
  EXPECT_LT(s->last_latency, 350ms);
  EXPECT_EQ(max_in_flight, 1u);
  EXPECT_EQ(silent.accepted(), 2);  // one probe per 300 ms, never two at once
  // first probe at 0 times out at 250; the next tick on the grid is 300; down at 550.
  EXPECT_GE(took, 540ms);
  EXPECT_LE(took, 900ms);
}

TEST(HealthChecker, HttpClosedBeforeStatusLine) {
  Peer mute("::1", Mode::close_no_status);
  HealthChecker hc;
  hc.set_targets({http_target("eof", mute, fast(2, 1))});
  Loop loop{hc, {&mute}, {}};
  ASSERT_TRUE(loop.reaches("eof", HealthState::down));
  EXPECT_EQ(hc.status("eof")->last_error, "connection closed before a status line");
}

TEST(HealthChecker, IntervalIsStartToStart) {
  Peer peer("127.0.0.1", Mode::http, 200);
  HealthChecker hc;
  hc.set_targets({http_target("n", peer, fast())});
  Loop loop{hc, {&peer}, {}};
  loop.run_for(1050ms);  // ticks at 0, 100, ..., 1000
  EXPECT_GE(hc.status("n")->probes, 9u);
  EXPECT_LE(hc.status("n")->probes, 11u);
}

TEST(HealthChecker, SetTargetsKeepsSurvivingState) {
  Peer a("127.0.0.1", Mode::accept_close), b("127.0.0.1", Mode::accept_close), c("::1", Mode::accept_close);
  HealthChecker hc;
  hc.set_targets({tcp_target("a", a, fast()), tcp_target("b", b, fast())});
  Loop loop{hc, {&a, &b, &c}, {}};
  ASSERT_TRUE(loop.run_until([&] { return loop.state("a") == HealthState::up && loop.state("b") == HealthState::up; }, 1s));
  loop.run_for(250ms);
  const auto probes_a = hc.status("a")->probes;
  const auto changed_a = hc.status("a")->last_change;
  loop.changes.clear();

  hc.set_targets({tcp_target("a", a, fast()), tcp_target("c", c, fast())});
  EXPECT_EQ(hc.size(), 2u);
  EXPECT_EQ(hc.status("b"), nullptr);
  ASSERT_NE(hc.status("a"), nullptr);
  EXPECT_EQ(hc.status("a")->state, HealthState::up);
  EXPECT_EQ(hc.status("a")->probes, probes_a);
  EXPECT_EQ(hc.status("a")->last_change, changed_a);
  EXPECT_EQ(hc.status("c")->state, HealthState::unknown);
  ASSERT_TRUE(loop.reaches("c", HealthState::up));
  EXPECT_EQ(loop.state("a"), HealthState::up);
  ASSERT_EQ(loop.changes.size(), 1u);  // only c's; removing b is no change
  EXPECT_EQ(loop.changes[0].key, "c");

  // The surviving target keeps its grid: no extra probe because of set_targets.
  const auto before = hc.status("a")->probes;
  hc.set_targets({tcp_target("a", a, fast()), tcp_target("c", c, fast())});
  loop.run_for(150ms);
  EXPECT_LE(hc.status("a")->probes, before + 2);
}

TEST(HealthChecker, RejectsBadTargetsAndKeepsTheSet) {
  Peer a("127.0.0.1", Mode::accept_close);
  HealthChecker hc;
  hc.set_targets({tcp_target("a", a, fast())});
  EXPECT_THROW(hc.set_targets({tcp_target("x", a, fast()), tcp_target("x", a, fast())}), std::invalid_argument);
  auto zero_port = tcp_target("z", a, fast());
  zero_port.port = 0;
  EXPECT_THROW(hc.set_targets({zero_port}), std::invalid_argument);
  auto bad_path = http_target("p", a, fast(), "/x y");
  EXPECT_THROW(hc.set_targets({bad_path}), std::invalid_argument);
  auto bad_source = tcp_target("s", a, fast());
  bad_source.source = ip("::1");
  EXPECT_THROW(hc.set_targets({bad_source}), std::invalid_argument);
  EXPECT_EQ(hc.size(), 1u);
  EXPECT_NE(hc.status("a"), nullptr);
}

TEST(HealthChecker, BindsToTheSourceAddress) {
  Peer peer("127.0.0.1", Mode::accept_close);
  HealthChecker hc;
  auto t = tcp_target("src", peer, fast());
  t.source = ip("127.0.0.2");  // 127/8 is all loopback
  auto missing = tcp_target("missing", peer, fast());
  missing.source = ip("192.0.2.1");  // TEST-NET-1: not on this host -> a local error, not a verdict
  hc.set_targets({t, missing});
  Loop loop{hc, {&peer}, {}};
  ASSERT_TRUE(loop.reaches("src", HealthState::up));
  loop.run_for(250ms);
  const auto* m = hc.status("missing");
  EXPECT_EQ(m->state, HealthState::unknown);
  EXPECT_EQ(m->probes, 0u);
  EXPECT_EQ(m->last_error, "local: bind 192.0.2.1: Cannot assign requested address");
}

TEST(HealthChecker, FdTurnsReadableWhenWorkIsDue) {
  // A caller that multiplexes: it waits on fd() only, then calls poll(0).
  Peer peer("127.0.0.1", Mode::http, 200);
  HealthChecker hc;
  hc.set_targets({http_target("n", peer, fast())});
  const auto end = Clock::now() + 1s;
  int wakeups = 0;
  while (Clock::now() < end && hc.status("n")->probes < 3) {
    pollfd pfd{hc.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 20) > 0) ++wakeups;
    hc.poll(0);
    peer.serve();
  }
  EXPECT_GE(hc.status("n")->probes, 3u);
  EXPECT_EQ(hc.status("n")->state, HealthState::up);
  EXPECT_GT(wakeups, 0);
}

TEST(HealthChecker, NewTargetsAreSpreadNotBurst) {
  // 1,000 new targets at 1 s: at most 200 us apart, so not all probed in the first poll,
  // and all within the first interval.
  Peer peer("127.0.0.1", Mode::accept_close);
  std::vector<HealthTarget> targets;
  nplb::HealthParams params;
  for (int i = 0; i < 1000; ++i) targets.push_back(tcp_target("t" + std::to_string(i), peer, params));
  HealthChecker hc;
  hc.set_targets(targets);
  hc.poll(0);
  size_t probed = 0;
  for (int i = 0; i < 1000; ++i) probed += hc.status("t" + std::to_string(i))->probes;
  EXPECT_LT(hc.probes_in_flight() + probed, 100u);
  Loop loop{hc, {&peer}, {}};
  ASSERT_TRUE(loop.run_until(
      [&] {
        for (int i = 0; i < 1000; ++i)
          if (hc.status("t" + std::to_string(i))->state != HealthState::up) return false;
        return true;
      },
      3s));  // 200 ms of spread; more only when a loaded machine drops a SYN
}
