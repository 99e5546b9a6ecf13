// Active health checks for the control thread (design.md "Health"): TCP connect and
// HTTP GET probes over kernel sockets, event-driven with epoll, no threads of its own.
//
//   HealthChecker hc;
//   hc.set_targets({{.key = "198.51.100.21:30080", .address = ..., .port = 30080}, ...});
//   for (;;) {
//     hc.poll(100);                          // starts due probes, completes and times out
//     for (auto& c : hc.take_changes()) ...  // republish the snapshot on up <-> down
//   }
//
// A caller that multiplexes puts fd() (an epoll fd) into its own poll set: it turns
// readable when a probe socket has news or when the next probe or timeout is due (a
// timerfd inside it is kept armed for the earliest deadline); then it calls poll(0).
//
// States (HealthState). "draining" is an operator state kept by the caller.
//   unknown -> up     after 1 success: a fresh start serves at once
//   unknown -> down   after `fall` consecutive failures
//   up      -> down   after `fall` consecutive failures
//   down    -> up     after `rise` consecutive successes
// rise and fall of 0 count as 1. A target removed by set_targets() leaves no change.
//
// Schedule. Probes start every `interval`, measured start to start on a fixed grid (a
// late poll() does not shift the grid; ticks missed entirely are skipped, never run
// back to back). A probe still running at the next tick is not doubled: that tick is
// skipped. Each probe ends by success, failure, or `timeout` after its start. New
// targets are probed at once, spread by at most 200 us each and never beyond their
// first interval (5,000 new targets at 1 s: 5 per ms), so a large set does not start
// as one burst.
//
// Probes. TCP: a non-blocking connect(); success when the socket turns writable with
// SO_ERROR 0. HTTP: then "GET PATH HTTP/1.0" with Host, User-Agent: nplb-health and
// Connection: close; the status line is read (at most 4 KiB) and its code compared with
// expect_status. Every probe socket is closed with SO_LINGER 0 (an RST), so probes
// leave no TIME_WAIT on the appliance. With `source` set, the socket is bound to that
// address first (IP_BIND_ADDRESS_NO_PORT: the port is picked at connect time).
//
// last_error texts: "connect: Connection refused", "timeout after 500 ms", "HTTP 503",
// "connection closed before a status line", "read: Connection reset by peer",
// "malformed status line", "no status line in the first 4096 bytes". It is empty when
// the latest probe succeeded. Local failures (socket(), bind(): out of descriptors, a
// source address the host does not hold) say so ("local: socket: Too many open
// files") and do not count as a failure of the target: its state and counters stay,
// and it is tried again at its next tick.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/net_types.hpp"

namespace nplb {

enum class ProbeKind { tcp, http };
enum class HealthState { unknown, up, down };  // "draining" is an operator state kept by the caller

const char* health_state_name(HealthState s);  // "unknown", "up", "down"
const char* probe_kind_name(ProbeKind k);      // "tcp", "http"

struct HealthParams {
  std::chrono::milliseconds interval{1000}, timeout{500};
  uint32_t rise = 2, fall = 3;
  bool operator==(const HealthParams&) const = default;
};

struct HealthTarget {
  std::string key;            // stable identity, e.g. "198.51.100.21:30080" or "198.51.100.21:32000/healthz"
  IpAddr address;
  uint16_t port = 0;
  ProbeKind kind = ProbeKind::tcp;
  std::string path = "/";     // http: starts with '/', no spaces or control characters
  int expect_status = 200;    // http: this status means healthy (others, and timeouts, unhealthy)
  HealthParams params;
  IpAddr source;              // optional: bind() the probe socket to this local address; unspecified = kernel's choice
};

struct HealthStatus {
  HealthState state = HealthState::unknown;
  std::string last_error;                              // of the latest probe; empty after a success
  std::chrono::system_clock::time_point last_change;   // of `state`; for a new target: when it was added
  uint32_t consecutive_ok = 0, consecutive_fail = 0;
  uint64_t probes = 0;                                 // probes completed (success, failure, timeout)
  std::chrono::milliseconds last_latency{0};           // start to verdict of the latest completed probe
};

struct HealthChange {
  std::string key;
  HealthState from, to;
  std::string reason;  // "connect: Connection refused (3 consecutive failures)", "HTTP 200 (2 consecutive successes)"
};

class HealthChecker {
 public:
  HealthChecker();   // throws std::runtime_error when epoll or timerfd cannot be created
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Replaces the set. Targets whose key stays keep their state, counters and schedule
  // (a changed interval applies from the next tick; a changed address, port, kind,
  // path, status or source abandons a probe in flight, without a verdict). New targets
  // start `unknown` and are probed at once (spread, see above). Throws
  // std::invalid_argument, leaving the set untouched, for a duplicate or empty key,
  // port 0, a zero interval or timeout, an HTTP path not starting with '/' or holding
  // spaces or control characters, a status outside 100..599, or a source of the other
  // address family.
  void set_targets(std::vector<HealthTarget> targets);

  // Waits at most timeout_ms (0: not at all; negative: until the next deadline or
  // socket activity), starting due probes, completing finished ones and timing out
  // late ones.
  void poll(int timeout_ms);

  std::vector<HealthChange> take_changes();  // state transitions since the last call, in order

  // nullptr for an unknown key. Valid until the next set_targets().
  const HealthStatus* status(const std::string& key) const;
  size_t size() const { return index_.size(); }
  size_t probes_in_flight() const { return in_flight_; }
  int fd() const { return epoll_fd_; }  // the epoll fd, for callers that multiplex

 private:
  struct Target;
  struct Timer {
    int64_t at_ns;      // steady clock
    uint64_t seq;       // Target::tick_seq or Target::probe_seq at the time it was set
    uint32_t slot;
    bool is_timeout;
    bool operator>(const Timer& o) const { return at_ns > o.at_ns; }
  };

  void run_timers(int64_t now_ns);
  void on_tick(Target& t, int64_t scheduled_ns, int64_t now_ns);
  void start_probe(Target& t, int64_t now_ns);
  void on_socket_event(Target& t, uint32_t events);
  void send_request(Target& t);
  void read_status(Target& t);
  void finish(Target& t, bool ok, std::string error);
  void abandon_probe(Target& t);
  void push_timer(Timer timer);
  void arm_timerfd();

  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int64_t armed_ns_ = -1;   // what timer_fd_ is set to; -1: disarmed
  uint64_t next_seq_ = 1;
  size_t in_flight_ = 0;
  std::vector<std::unique_ptr<Target>> slots_;   // nullptr: free
  std::vector<uint32_t> free_slots_;
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<Timer> timers_;                    // min-heap on at_ns; stale entries skipped by seq
  std::vector<HealthChange> changes_;
};

}  // namespace nplb
