// nplb-health-bench: one HealthChecker (the control thread's) keeps 5,000 targets at
// 1 s intervals (issue 4, "One control thread keeps at least 5,000 targets").
//
//   nplb-health-bench [--targets N] [--seconds S] [--interval-ms I] [--addresses A]
//
// Targets are TCP probes to listeners on loopback: A addresses 127.77.x.y (127/8 is all
// loopback) times N/A ports, every address listening on the same ports. A peer thread
// accepts and closes, and records when each target was reached: the gaps between two
// probes of one target are measured there, outside the checker. The main thread is the
// control thread: it only calls poll(), and its CPU time is getrusage(RUSAGE_THREAD).
// After one interval of warm-up (new targets are spread over it), S seconds are measured.
//
// Last line: health_targets=5000 probes_per_s=X cpu_percent=Y max_gap_ms=Z
// Exit 1 when the checker falls behind (probes/s below 98 % of N/interval), a target is
// starved (a gap above interval + 100 ms, or no probe in a window longer than that), or a target is
// not up at the end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "control/health_checker.hpp"

using Clock = std::chrono::steady_clock;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

double thread_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

uint32_t address_of(int i) {  // 127.77.0.1, 127.77.0.2, ...
  return (127u << 24) | (77u << 16) | static_cast<uint32_t>(i + 1);
}

int listen_on(uint32_t addr, uint16_t port, uint16_t* bound) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(addr);
  sin.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || listen(fd, 1024) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  *bound = ntohs(sin.sin_port);
  return fd;
}

uint64_t target_id(uint32_t addr, uint16_t port) { return (uint64_t{addr} << 16) | port; }

}  // namespace

int main(int argc, char** argv) {
  int targets_n = 5000, seconds = 5, interval_ms = 1000, addresses = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (a == "--targets") targets_n = v;
    else if (a == "--seconds") seconds = v;
    else if (a == "--interval-ms") interval_ms = v;
    else if (a == "--addresses") addresses = v;
    else {
      std::fprintf(stderr, "usage: %s [--targets N] [--seconds S] [--interval-ms I] [--addresses A]\n", argv[0]);
      return 2;
    }
  }
  if (targets_n <= 0 || seconds <= 0 || interval_ms <= 0 || addresses <= 0) return 2;
  addresses = std::min(addresses, targets_n);
  const int ports_per_address = (targets_n + addresses - 1) / addresses;

  // Descriptors: the listeners, the probes in flight, the peer's accepted sockets.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(targets_n) * 2 + 1024;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  // Listeners: the same ports on every address where possible.
  std::vector<int> listeners;
  std::vector<nplb::HealthTarget> targets;
  std::unordered_map<uint64_t, int> index;  // (address, port) -> target number
  std::vector<uint16_t> ports;
  for (int p = 0; p < ports_per_address; ++p) {
    uint16_t port = 0;
    int fd = listen_on(address_of(0), 0, &port);
    if (fd < 0) {
      std::perror("listen");
      return 2;
    }
    listeners.push_back(fd);
    ports.push_back(port);
  }
  for (int a = 0; a < addresses && static_cast<int>(targets.size()) < targets_n; ++a) {
    for (int p = 0; p < ports_per_address && static_cast<int>(targets.size()) < targets_n; ++p) {
      uint16_t port = ports[static_cast<size_t>(p)];
      if (a > 0) {
        int fd = listen_on(address_of(a), port, &port);
        if (fd < 0) fd = listen_on(address_of(a), 0, &port);  // that port is taken there
        if (fd < 0) {
          std::perror("listen");
          return 2;
        }
        listeners.push_back(fd);
      }
      nplb::HealthTarget t;
      t.address = nplb::IpAddr::v4(address_of(a));
      t.port = port;
      t.key = t.address.str() + ":" + std::to_string(port);
      t.params.interval = std::chrono::milliseconds(interval_ms);
      t.params.timeout = std::chrono::milliseconds(std::min(500, interval_ms));
      index.emplace(target_id(address_of(a), port), static_cast<int>(targets.size()));
      targets.push_back(std::move(t));
    }
  }

  // The peer: accept, note the time per target, close.
  std::vector<std::vector<int64_t>> seen(targets.size());
  std::atomic<bool> stop{false};
  int peer_ep = epoll_create1(EPOLL_CLOEXEC);
  for (int fd : listeners) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(peer_ep, EPOLL_CTL_ADD, fd, &ev);
  }
  std::thread peer([&] {
    std::vector<epoll_event> evs(1024);
    while (!stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(peer_ep, evs.data(), static_cast<int>(evs.size()), 50);
      for (int i = 0; i < n; ++i) {
        for (;;) {
          sockaddr_in local{};
          int c = accept4(evs[static_cast<size_t>(i)].data.fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) break;
          socklen_t len = sizeof local;
          getsockname(c, reinterpret_cast<sockaddr*>(&local), &len);
          const int64_t t = now_ns();
          close(c);
          auto it = index.find(target_id(ntohl(local.sin_addr.s_addr), ntohs(local.sin_port)));
          if (it != index.end()) seen[static_cast<size_t>(it->second)].push_back(t);
        }
      }
    }
  });

  nplb::HealthChecker hc;
  std::vector<std::string> keys;
  for (const auto& t : targets) keys.push_back(t.key);
  const size_t n = targets.size();
  hc.set_targets(std::move(targets));

  auto total_probes = [&] {
    uint64_t sum = 0;
    for (const auto& k : keys) sum += hc.status(k)->probes;
    return sum;
  };

  // Warm-up: the first interval, over which the new targets are spread.
  const int64_t warm_end = now_ns() + int64_t{interval_ms} * 1'000'000;
  while (now_ns() < warm_end) hc.poll(100);
  (void)hc.take_changes();

  const uint64_t probes0 = total_probes();
  const double cpu0 = thread_cpu_s();
  const int64_t t0 = now_ns();
  const int64_t t_end = t0 + int64_t{seconds} * 1'000'000'000;
  size_t max_in_flight = 0;
  while (now_ns() < t_end) {
    hc.poll(100);
    max_in_flight = std::max(max_in_flight, hc.probes_in_flight());
  }
  const int64_t t1 = now_ns();
  const double cpu1 = thread_cpu_s();
  const uint64_t probes1 = total_probes();
  stop = true;
  peer.join();

  // Gaps between consecutive probes of one target inside the window (plus the edges:
  // from the window's start to its first probe, and from its last probe to the end).
  int64_t max_gap = 0;
  size_t starved = 0;
  for (const auto& times : seen) {
    int64_t prev = t0;
    bool any = false;
    for (int64_t t : times) {
      if (t < t0 || t > t1) continue;
      max_gap = std::max(max_gap, t - prev);
      prev = t;
      any = true;
    }
    max_gap = std::max(max_gap, t1 - prev);
    // No probe in a window no longer than one interval (plus the slack) is
    // on schedule: its probes fell just before and just after the window.
    if (!any && t1 - t0 > (int64_t{interval_ms} + 100) * 1'000'000) ++starved;
  }
  size_t up = 0, failing = 0;
  std::unordered_map<std::string, size_t> errors;
  for (const auto& k : keys) {
    const auto* s = hc.status(k);
    up += s->state == nplb::HealthState::up;
    failing += s->consecutive_fail > 0;
    if (!s->last_error.empty()) ++errors[s->last_error];
  }
  for (const auto& [text, count] : errors) std::printf("last_error \"%s\": %zu targets\n", text.c_str(), count);

  const double wall = static_cast<double>(t1 - t0) / 1e9;
  const double probes_per_s = static_cast<double>(probes1 - probes0) / wall;
  const double required = static_cast<double>(n) * 1000.0 / interval_ms;
  const double cpu_percent = 100.0 * (cpu1 - cpu0) / wall;
  const double max_gap_ms = static_cast<double>(max_gap) / 1e6;
  std::printf("targets %zu on %d addresses x %d ports (%zu listeners), interval %d ms, window %.2f s\n", n, addresses,
              ports_per_address, listeners.size(), interval_ms, wall);
  std::printf("probes/s %.0f (required %.0f), control thread CPU %.1f %% (%.1f us per probe), in flight max %zu\n",
              probes_per_s, required, cpu_percent, 1e6 * (cpu1 - cpu0) / static_cast<double>(probes1 - probes0 + 1),
              max_in_flight);
  std::printf("up %zu/%zu, failing %zu, starved %zu, max gap %.1f ms\n", up, n, failing, starved, max_gap_ms);
  std::printf("health_targets=%zu probes_per_s=%.0f cpu_percent=%.1f max_gap_ms=%.1f\n", n, probes_per_s, cpu_percent,
              max_gap_ms);

  for (int fd : listeners) close(fd);
  close(peer_ep);
  const bool ok = probes_per_s >= 0.98 * required && starved == 0 && up == n &&
                  max_gap_ms <= interval_ms + 100.0;
  return ok ? 0 : 1;
}
