// sessionAffinity: ClientIP. A worker remembers, per (client address,
// service port), the backend a client's last new connection went to, and
// sends the client's next connections there while the entry is younger than
// the service's timeout (Kubernetes: timeoutSeconds, default 10800).
//
// The first choice for a client is Maglev over the client address alone, so
// every worker (RSS spreads a client's connections over them) and every
// appliance agrees without sharing this table; the table keeps a client on
// its backend when the backend set changes under it, as kube-proxy does.
//
// Fixed size, 4-way sets, the least recently used way replaced: bounded
// memory, no heap on the fast path. Refreshed by every new connection.
#pragma once

#include <cstdint>
#include <memory>

namespace nplb {

class AffinityTable {
 public:
  explicit AffinityTable(uint32_t sets) : mask_(round_up(sets) - 1), ways_(new Way[(mask_ + 1) * kWays]()) {}

  bool lookup(uint32_t client_be, uint32_t service_id, uint64_t now, uint64_t timeout, uint32_t& backend_id) const {
    const Way* set = &ways_[set_of(client_be, service_id) * kWays];
    for (int i = 0; i < kWays; ++i)
      if (set[i].service_plus1 == service_id + 1 && set[i].client_be == client_be) {
        if (now - set[i].last_used > timeout) return false;
        backend_id = set[i].backend_id;
        return true;
      }
    return false;
  }

  void remember(uint32_t client_be, uint32_t service_id, uint32_t backend_id, uint64_t now) {
    Way* set = &ways_[set_of(client_be, service_id) * kWays];
    Way* victim = &set[0];
    for (int i = 0; i < kWays; ++i) {
      if (set[i].service_plus1 == service_id + 1 && set[i].client_be == client_be) {
        victim = &set[i];
        break;
      }
      if (set[i].last_used < victim->last_used) victim = &set[i];
    }
    *victim = Way{client_be, service_id + 1, backend_id, now};
  }

 private:
  static constexpr int kWays = 4;
  struct Way {
    uint32_t client_be = 0;
    uint32_t service_plus1 = 0;  // 0: empty
    uint32_t backend_id = 0;
    uint64_t last_used = 0;
  };
  static uint32_t round_up(uint32_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
  }
  // Every bit of the address must reach the index (clients often differ in
  // the last octet only, the top byte of client_be): mix, then fold.
  uint32_t set_of(uint32_t client_be, uint32_t service_id) const {
    uint64_t x = (uint64_t(service_id) << 32 | client_be) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return static_cast<uint32_t>(x >> 32) & mask_;
  }
  uint32_t mask_;
  std::unique_ptr<Way[]> ways_;
};

}  // namespace nplb
