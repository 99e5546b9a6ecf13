// HealthChecker: see health_checker.hpp for the states, the schedule and the probes.
//
// One epoll set holds every probe socket in flight plus a timerfd. Deadlines (the next
// tick of each target, the timeout of each probe in flight) live in one min-heap;
// entries are never removed early, they carry the sequence number they were set for
// and are skipped when it no longer matches (a probe that finished, a target that was
// removed). Sequence numbers come from one counter, so a reused slot never matches a
// stale entry.
#include "control/health_checker.hpp"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <unordered_set>

namespace nplb {

namespace {

constexpr size_t kMaxStatusBytes = 4096;      // bounded read of the status line
constexpr int64_t kSpreadNs = 200'000;        // new targets: at most 200 us apart
constexpr uint64_t kTimerFdTag = ~uint64_t{0};
constexpr int kMaxEvents = 512;

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string errno_text(int err) { return std::generic_category().message(err); }

// Errors that say something about this host, not about the target.
// Errors that say something about this host, not about the target: they
// never count against a backend. ENETUNREACH at connect() means the kernel
// has no route at all toward the target (no kernel_address on its link and
// no management route): such a probe cannot leave, so it proves nothing.
bool is_local_error(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
         err == EADDRNOTAVAIL || err == EAGAIN || err == ENETUNREACH;
}

socklen_t to_sockaddr(const IpAddr& ip, uint16_t port, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  if (ip.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.bytes.data(), 4);
    return sizeof *sin;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
  return sizeof *sin6;
}

std::string host_port(const IpAddr& ip, uint16_t port) {
  return ip.is_v4() ? ip.str() + ":" + std::to_string(port)
                    : "[" + ip.str() + "]:" + std::to_string(port);
}

// Closes with an RST (SO_LINGER 0): no TIME_WAIT left on the appliance.
void close_abort(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

bool same_probe(const HealthTarget& a, const HealthTarget& b) {
  return a.address == b.address && a.port == b.port && a.kind == b.kind && a.path == b.path &&
         a.expect_status == b.expect_status && a.source == b.source &&
         a.params.timeout == b.params.timeout;
}

// "1 consecutive failure", "3 consecutive failures"
std::string count_text(uint32_t n, const char* one, const char* many) {
  return std::to_string(n) + " consecutive " + (n == 1 ? one : many);
}

void validate(const HealthTarget& t) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("health target " + (t.key.empty() ? std::string("\"\"") : t.key) + ": " + why);
  };
  if (t.key.empty()) fail("empty key");
  if (t.port == 0) fail("port 0");
  if (t.params.interval.count() <= 0) fail("interval must be positive");
  if (t.params.timeout.count() <= 0) fail("timeout must be positive");
  if (!t.source.is_unspecified() && t.source.family != t.address.family)
    fail("source " + t.source.str() + " is not of the target's address family");
  if (t.kind == ProbeKind::http) {
    if (t.path.empty() || t.path[0] != '/') fail("HTTP path must start with '/'");
    for (unsigned char c : t.path)
      if (c <= ' ' || c == 0x7f) fail("HTTP path holds a space or control character");
    if (t.expect_status < 100 || t.expect_status > 599) fail("expected status outside 100..599");
  }
}

}  // namespace

const char* health_state_name(HealthState s) {
  switch (s) {
    case HealthState::unknown: return "unknown";
    case HealthState::up: return "up";
    case HealthState::down: return "down";
  }
  return "unknown";
}

const char* probe_kind_name(ProbeKind k) { return k == ProbeKind::http ? "http" : "tcp"; }

struct HealthChecker::Target {
  enum class Phase { idle, connecting, sending, reading };

  HealthTarget def;
  HealthStatus st;
  uint32_t slot = 0;
  sockaddr_storage dst{};
  socklen_t dst_len = 0;
  sockaddr_storage src{};
  socklen_t src_len = 0;  // 0: no bind()
  std::string request;    // http

  uint64_t tick_seq = 0;

  // The probe in flight (fd >= 0).
  int fd = -1;
  Phase phase = Phase::idle;
  uint64_t probe_seq = 0;
  int64_t started_ns = 0;
  size_t sent = 0;
  std::string rx;

  void prepare() {
    dst_len = to_sockaddr(def.address, def.port, dst);
    src_len = def.source.is_unspecified() ? 0 : to_sockaddr(def.source, 0, src);
    request.clear();
    if (def.kind == ProbeKind::http)
      request = "GET " + def.path + " HTTP/1.0\r\nHost: " + host_port(def.address, def.port) +
                "\r\nUser-Agent: nplb-health\r\nConnection: close\r\n\r\n";
  }
};

HealthChecker::HealthChecker() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::runtime_error("health checker: epoll_create1: " + errno_text(errno));
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) {
    int err = errno;
    ::close(epoll_fd_);
    throw std::runtime_error("health checker: timerfd_create: " + errno_text(err));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerFdTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev) != 0) {
    int err = errno;
    ::close(timer_fd_);
    ::close(epoll_fd_);
    throw std::runtime_error("health checker: epoll_ctl: " + errno_text(err));
  }
}

HealthChecker::~HealthChecker() {
  for (auto& t : slots_)
    if (t && t->fd >= 0) close_abort(t->fd);
  ::close(timer_fd_);
  ::close(epoll_fd_);
}

void HealthChecker::set_targets(std::vector<HealthTarget> targets) {
  // Check everything first: a bad entry leaves the set as it was.
  std::unordered_set<std::string_view> keys;
  keys.reserve(targets.size());
  for (const auto& t : targets) {
    validate(t);
    if (!keys.insert(t.key).second) throw std::invalid_argument("health target " + t.key + ": duplicate key");
  }

  // Drop the targets that are gone.
  for (auto it = index_.begin(); it != index_.end();) {
    if (keys.count(it->first)) {
      ++it;
      continue;
    }
    uint32_t slot = it->second;
    abandon_probe(*slots_[slot]);
    slots_[slot].reset();
    free_slots_.push_back(slot);
    it = index_.erase(it);
  }

  size_t fresh = 0;
  for (const auto& t : targets) fresh += index_.count(t.key) ? 0 : 1;

  const int64_t now = steady_ns();
  const auto wall_now = std::chrono::system_clock::now();
  size_t k = 0;
  for (auto& def : targets) {
    if (auto it = index_.find(def.key); it != index_.end()) {
      Target& t = *slots_[it->second];
      if (!same_probe(t.def, def)) abandon_probe(t);
      t.def = std::move(def);
      t.prepare();
      continue;  // the pending tick stays; a new interval applies from it on
    }
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    auto t = std::make_unique<Target>();
    t->slot = slot;
    t->def = std::move(def);
    t->st.last_change = wall_now;
    t->prepare();
    const int64_t interval_ns = std::chrono::nanoseconds(t->def.params.interval).count();
    const int64_t step = std::min<int64_t>(kSpreadNs, interval_ns / static_cast<int64_t>(fresh));
    t->tick_seq = next_seq_++;
    push_timer({now + static_cast<int64_t>(k++) * step, t->tick_seq, slot, false});
    index_.emplace(t->def.key, slot);
    slots_[slot] = std::move(t);
  }
  arm_timerfd();
}

void HealthChecker::poll(int timeout_ms) {
  run_timers(steady_ns());

  int wait_ms = timeout_ms;
  if (!timers_.empty()) {
    const int64_t until = timers_.front().at_ns - steady_ns();
    const int64_t ms = until <= 0 ? 0 : (until + 999'999) / 1'000'000;
    if (wait_ms < 0 || ms < wait_ms) wait_ms = static_cast<int>(ms);
  }

  std::array<epoll_event, kMaxEvents> events;
  for (int round = 0; round < 8; ++round) {
    int n = ::epoll_wait(epoll_fd_, events.data(), kMaxEvents, round == 0 ? wait_ms : 0);
    if (n < 0) {
      if (errno == EINTR) break;
      throw std::runtime_error("health checker: epoll_wait: " + errno_text(errno));
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTimerFdTag) {
        uint64_t expirations;
        [[maybe_unused]] auto r = ::read(timer_fd_, &expirations, sizeof expirations);
        armed_ns_ = -1;  // fired (or about to be rearmed anyway)
        continue;
      }
      const auto slot = static_cast<uint32_t>(tag >> 32);
      if (slot >= slots_.size() || !slots_[slot]) continue;
      Target& t = *slots_[slot];
      if (t.fd < 0 || static_cast<uint32_t>(t.probe_seq) != static_cast<uint32_t>(tag)) continue;
      on_socket_event(t, events[i].events);
    }
    if (n < kMaxEvents) break;
  }

  run_timers(steady_ns());
  arm_timerfd();
}

std::vector<HealthChange> HealthChecker::take_changes() {
  std::vector<HealthChange> out;
  out.swap(changes_);
  return out;
}

const HealthStatus* HealthChecker::status(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &slots_[it->second]->st;
}

void HealthChecker::push_timer(Timer timer) {
  timers_.push_back(timer);
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>{});
}

void HealthChecker::arm_timerfd() {
  // Drop stale entries from the top so the timerfd does not fire for nothing.
  while (!timers_.empty()) {
    const Timer& top = timers_.front();
    const Target* t = top.slot < slots_.size() ? slots_[top.slot].get() : nullptr;
    const bool live = t && (top.is_timeout ? (t->fd >= 0 && t->probe_seq == top.seq) : t->tick_seq == top.seq);
    if (live) break;
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>{});
    timers_.pop_back();
  }
  const int64_t want = timers_.empty() ? -1 : timers_.front().at_ns;
  if (want == armed_ns_) return;
  itimerspec its{};
  if (want >= 0) {
    its.it_value.tv_sec = want / 1'000'000'000;
    its.it_value.tv_nsec = want % 1'000'000'000;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  }
  ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
  armed_ns_ = want;
}

void HealthChecker::run_timers(int64_t now_ns) {
  while (!timers_.empty() && timers_.front().at_ns <= now_ns) {
    const Timer timer = timers_.front();
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>{});
    timers_.pop_back();
    if (timer.slot >= slots_.size() || !slots_[timer.slot]) continue;
    Target& t = *slots_[timer.slot];
    if (timer.is_timeout) {
      if (t.fd >= 0 && t.probe_seq == timer.seq)
        finish(t, false, "timeout after " + std::to_string(t.def.params.timeout.count()) + " ms");
    } else if (t.tick_seq == timer.seq) {
      on_tick(t, timer.at_ns, now_ns);
    }
  }
}

void HealthChecker::on_tick(Target& t, int64_t scheduled_ns, int64_t now_ns) {
  // The next tick on the grid start + n * interval, the first one after now: a late
  // poll() keeps the phase, ticks missed entirely are skipped.
  const int64_t interval_ns = std::chrono::nanoseconds(t.def.params.interval).count();
  int64_t next = scheduled_ns + interval_ns;
  if (next <= now_ns) next += ((now_ns - next) / interval_ns + 1) * interval_ns;
  t.tick_seq = next_seq_++;
  push_timer({next, t.tick_seq, t.slot, false});
  if (t.fd < 0) start_probe(t, now_ns);  // a probe still running is not doubled
}

void HealthChecker::start_probe(Target& t, int64_t now_ns) {
  const int family = t.def.address.is_v4() ? AF_INET : AF_INET6;
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    t.st.last_error = "local: socket: " + errno_text(errno);
    return;
  }
  if (t.src_len) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&t.src), t.src_len) != 0) {
      t.st.last_error = "local: bind " + t.def.source.str() + ": " + errno_text(errno);
      ::close(fd);
      return;
    }
  }
  t.fd = fd;
  t.probe_seq = next_seq_++;
  t.started_ns = now_ns;
  t.sent = 0;
  t.rx.clear();
  ++in_flight_;

  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&t.dst), t.dst_len);
  const int err = rc == 0 ? 0 : errno;
  if (rc != 0 && err != EINPROGRESS) {
    if (is_local_error(err)) {  // e.g. no ephemeral port left
      t.st.last_error = "local: connect: " + errno_text(err);
      abandon_probe(t);
    } else {
      finish(t, false, "connect: " + errno_text(err));
    }
    return;
  }
  if (rc == 0 && t.def.kind == ProbeKind::tcp) {
    finish(t, true, {});
    return;
  }
  t.phase = rc == 0 ? Target::Phase::sending : Target::Phase::connecting;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = (uint64_t{t.slot} << 32) | static_cast<uint32_t>(t.probe_seq);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    t.st.last_error = "local: epoll_ctl: " + errno_text(errno);
    abandon_probe(t);
    return;
  }
  push_timer({now_ns + std::chrono::nanoseconds(t.def.params.timeout).count(), t.probe_seq, t.slot, true});
}

void HealthChecker::on_socket_event(Target& t, uint32_t events) {
  if (t.phase == Target::Phase::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(t.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      finish(t, false, "connect: " + errno_text(err));
      return;
    }
    if (!(events & EPOLLOUT)) {
      finish(t, false, "connect: connection closed");
      return;
    }
    if (t.def.kind == ProbeKind::tcp) {
      finish(t, true, {});
      return;
    }
    t.phase = Target::Phase::sending;
  }
  if (t.phase == Target::Phase::sending) {
    send_request(t);
    return;
  }
  if (t.phase == Target::Phase::reading) read_status(t);
}

void HealthChecker::send_request(Target& t) {
  while (t.sent < t.request.size()) {
    ssize_t n = ::send(t.fd, t.request.data() + t.sent, t.request.size() - t.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // EPOLLOUT again
      if (errno == EINTR) continue;
      finish(t, false, "send: " + errno_text(errno));
      return;
    }
    t.sent += static_cast<size_t>(n);
  }
  t.phase = Target::Phase::reading;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = (uint64_t{t.slot} << 32) | static_cast<uint32_t>(t.probe_seq);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, t.fd, &ev) != 0) {
    t.st.last_error = "local: epoll_ctl: " + errno_text(errno);
    abandon_probe(t);
    return;
  }
  read_status(t);  // the answer may be there already
}

void HealthChecker::read_status(Target& t) {
  std::array<char, kMaxStatusBytes> buf;
  bool eof = false;
  for (;;) {
    ssize_t n = ::recv(t.fd, buf.data(), kMaxStatusBytes - t.rx.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      finish(t, false, "read: " + errno_text(errno));
      return;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    t.rx.append(buf.data(), static_cast<size_t>(n));
    if (t.rx.find('\n') != std::string::npos || t.rx.size() >= kMaxStatusBytes) break;
  }

  const size_t nl = t.rx.find('\n');
  if (nl == std::string::npos) {
    if (t.rx.size() >= kMaxStatusBytes) {
      finish(t, false, "no status line in the first " + std::to_string(kMaxStatusBytes) + " bytes");
    } else if (eof) {
      finish(t, false, t.rx.empty() ? "connection closed before a status line"
                                    : "connection closed in the status line");
    }
    return;  // wait for more
  }
  // "HTTP/1.1 200 OK": the protocol, one space, three digits, then a space or the end.
  std::string_view line(t.rx.data(), nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t sp = line.find(' ');
  int code = -1;
  if (line.starts_with("HTTP/") && sp != std::string_view::npos && line.size() >= sp + 4 &&
      (line.size() == sp + 4 || line[sp + 4] == ' ')) {
    code = 0;
    for (size_t i = sp + 1; i < sp + 4; ++i) {
      if (line[i] < '0' || line[i] > '9') {
        code = -1;
        break;
      }
      code = code * 10 + (line[i] - '0');
    }
  }
  if (code < 100) {
    finish(t, false, "malformed status line");
  } else if (code == t.def.expect_status) {
    finish(t, true, {});
  } else {
    finish(t, false, "HTTP " + std::to_string(code));
  }
}

void HealthChecker::abandon_probe(Target& t) {
  if (t.fd < 0) return;
  close_abort(t.fd);
  t.fd = -1;
  t.phase = Target::Phase::idle;
  t.probe_seq = 0;
  t.rx.clear();
  t.rx.shrink_to_fit();
  --in_flight_;
}

void HealthChecker::finish(Target& t, bool ok, std::string error) {
  const int64_t elapsed = steady_ns() - t.started_ns;
  abandon_probe(t);
  HealthStatus& st = t.st;
  ++st.probes;
  st.last_latency = std::chrono::milliseconds(elapsed / 1'000'000);
  const uint32_t rise = std::max<uint32_t>(1, t.def.params.rise);
  const uint32_t fall = std::max<uint32_t>(1, t.def.params.fall);
  const HealthState from = st.state;
  std::string reason;
  if (ok) {
    ++st.consecutive_ok;
    st.consecutive_fail = 0;
    st.last_error.clear();
    if (st.state == HealthState::unknown || (st.state == HealthState::down && st.consecutive_ok >= rise)) {
      st.state = HealthState::up;
      reason = (t.def.kind == ProbeKind::http ? "HTTP " + std::to_string(t.def.expect_status) : std::string("connected")) +
               " (" + count_text(st.consecutive_ok, "success", "successes") + ")";
    }
  } else {
    ++st.consecutive_fail;
    st.consecutive_ok = 0;
    st.last_error = std::move(error);
    if (st.state != HealthState::down && st.consecutive_fail >= fall) {
      st.state = HealthState::down;
      reason = st.last_error + " (" + count_text(st.consecutive_fail, "failure", "failures") + ")";
    }
  }
  if (st.state != from) {
    st.last_change = std::chrono::system_clock::now();
    changes_.push_back({t.def.key, from, st.state, std::move(reason)});
  }
}

}  // namespace nplb
