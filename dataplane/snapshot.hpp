// The immutable view of the configuration the workers forward by.
//
// The control thread builds a Snapshot off the fast path, publishes it with
// one atomic pointer swap, and frees the previous one only after every worker
// has passed a quiescent state (rte_rcu_qsbr). Workers never see a
// half-applied change and never take a lock. Containers are filled before
// publication and never touched again, so workers read them freely.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "maglev.hpp"
#include "net_types.hpp"

namespace nplb {

inline constexpr uint16_t kMaxPorts = 8;
inline constexpr uint32_t kMaxServicePorts = 65536;  // stable ids for per-service counters
inline constexpr uint32_t kMaxBackends = 262144;     // stable ids for per-backend counters

// Where a destination leaves: the port, and the next hop whose MAC we need.
struct Route {
  uint16_t port = 0;
  uint32_t next_hop_be = 0;
  bool found = false;
};

struct PortView {
  MacAddr mac;
  // Addresses this port answers ARP for: its own, and the frontends and
  // SNAT addresses in its subnets (those in no port's subnet: on every port).
  std::vector<uint32_t> arp_answers_be;
  // The kernel's address on this port (dataplane.ports[].kernel_address):
  // frames to it go to the kernel through a tap. 0: none.
  uint32_t kernel_be = 0;
  std::vector<Cidr> subnets;  // the port's own addresses with their prefixes
  uint32_t gateway_be = 0;    // 0: none
};

struct BackendView {
  uint32_t address_be = 0;
  uint16_t port_be = 0;
  uint32_t stable_id = 0;  // counters index
  Route route;             // a pod reached through its node: next hop is the node
};

struct ServicePortView {
  uint32_t stable_id = 0;       // counters index
  uint8_t protocol = 0;
  uint64_t affinity_timeout_tsc = 0;  // sessionAffinity ClientIP; 0: none
  uint32_t first_backend = 0;   // backends[first_backend, first_backend + backend_count)
  uint32_t backend_count = 0;
  const MaglevTable* maglev = nullptr;  // indices relative to first_backend
};

// Open-addressing map from (frontend, protocol, nodePort) to a service port.
struct ServiceKey {
  uint32_t frontend_be = 0;
  uint16_t port_be = 0;
  uint8_t protocol = 0;
  uint8_t used = 0;
};

struct Snapshot {
  uint64_t generation = 0;
  uint64_t maglev_seed = 0;

  std::vector<PortView> ports;
  std::vector<uint32_t> frontends_be;
  std::vector<uint32_t> snat_be;
  std::vector<uint32_t> local_be;  // every address the appliance answers ARP for

  // The three lists above as one hashed table whose multiplier
  // index_addresses() picks so that nothing collides: a lookup is a
  // multiply, a load and a compare, with no probe loop. (A loop's length
  // differs between a random client's absent address and present VIPs or
  // SNAT addresses, and a burst mixes both directions at random: the
  // predictor guessed wrong about once a packet.) Up to kDirectAddresses
  // addresses each gets a slot of its own (128 addresses: 2-4K slots of 8
  // bytes); more go in buckets of four, a lookup reading one bucket. 0.0.0.0
  // fills empty slots, with no roles.
  enum AddressRole : uint8_t { kFrontend = 1, kSnat = 2, kLocal = 4 };
  static constexpr size_t kDirectAddresses = 128;
  static constexpr int kAddressesPerBucket = 4;
  struct AddressSlot {
    uint32_t address_be = 0;
    uint32_t roles = 0;
  };
  struct alignas(32) AddressBucket {
    uint32_t address_be[kAddressesPerBucket] = {};
    uint32_t roles[kAddressesPerBucket] = {};
  };
  std::vector<AddressSlot> address_slots;      // one address each, or empty when the buckets are used
  std::vector<AddressBucket> address_buckets;  // four addresses each, when there are too many for slots
  uint64_t address_multiplier = 0x9e3779b97f4a7c15ull;  // odd
  uint32_t address_shift = 63;  // 64 - log2(table size); any valid shift while both tables are empty

  std::vector<ServicePortView> services;
  std::vector<BackendView> backends;
  // Shared by services with the same backend set, and by consecutive
  // snapshots while the set does not change (a reload rebuilds no table it
  // does not have to).
  std::vector<std::shared_ptr<const MaglevTable>> maglev_tables;

  // Backends (by stable id) that some service of this snapshot still uses.
  // A connection whose backend left: UDP moves at once, TCP keeps going
  // unless reset_on_backend_removed.
  // One bit per stable id, for every id there can be: no bounds to check
  // per packet beyond one compare with a constant (32 KiB a snapshot).
  std::unique_ptr<uint64_t[]> live_backends{new uint64_t[kMaxBackends / 64]()};
  bool reset_on_backend_removed = false;
  uint64_t tsc_hz = 0;

  std::vector<ServiceKey> service_keys;       // power-of-two sized
  std::vector<uint32_t> service_key_values;   // index into services

  // Lookups used on the fast path.
  const ServicePortView* find_service(uint32_t frontend_be, uint16_t port_be, uint8_t protocol) const {
    if (service_keys.empty()) return nullptr;
    size_t mask = service_keys.size() - 1;
    for (size_t i = service_slot(frontend_be, port_be, protocol) & mask;; i = (i + 1) & mask) {
      const ServiceKey& k = service_keys[i];
      if (!k.used) return nullptr;
      if (k.frontend_be == frontend_be && k.port_be == port_be && k.protocol == protocol)
        return &services[service_key_values[i]];
    }
  }
  static size_t service_slot(uint32_t frontend_be, uint16_t port_be, uint8_t protocol) {
    uint64_t x = (uint64_t(frontend_be) << 24) ^ (uint64_t(port_be) << 8) ^ protocol;
    return static_cast<size_t>((x * 0x9e3779b97f4a7c15ull) >> 40);
  }
  static bool contains(const std::vector<uint32_t>& set, uint32_t a) {
    for (uint32_t x : set)
      if (x == a) return true;
    return false;
  }
  bool backend_is_live(uint32_t stable_id) const {
    return backend_bit(live_backends.get(), stable_id);
  }
  static bool backend_bit(const uint64_t* words, uint32_t stable_id) {
    return stable_id < kMaxBackends && (words[stable_id / 64] >> (stable_id % 64) & 1);
  }
  void mark_backend_live(uint32_t stable_id) {
    if (stable_id < kMaxBackends) live_backends[stable_id / 64] |= 1ull << (stable_id % 64);
  }
  uint8_t roles_of(uint32_t a) const {
    size_t at = address_index(a);
    if (!address_slots.empty()) {  // the same way for every packet of a snapshot: predicted
      const AddressSlot& slot = address_slots[at];
      return slot.address_be == a ? static_cast<uint8_t>(slot.roles) : 0;  // empty slots: 0.0.0.0, no roles
    }
    if (address_buckets.empty()) return 0;
    const AddressBucket& b = address_buckets[at];
    uint32_t roles = 0;
    for (int i = 0; i < kAddressesPerBucket; ++i) roles |= b.address_be[i] == a ? b.roles[i] : 0;
    return static_cast<uint8_t>(roles);
  }
  size_t address_index(uint32_t a) const {
    return static_cast<size_t>((uint64_t(a) * address_multiplier) >> address_shift);
  }
  bool is_frontend(uint32_t a) const { return roles_of(a) & kFrontend; }
  bool is_snat(uint32_t a) const { return roles_of(a) & kSnat; }
  bool is_local(uint32_t a) const { return roles_of(a) & kLocal; }
  // Control side: builds address_slots or address_buckets from frontends_be,
  // snat_be and local_be, and sets address_epoch.
  void index_addresses();
  // A digest of everything that decides whether a flow's addresses may be
  // forwarded (the address roles above, the ports' kernel addresses): equal
  // epochs, equal decisions. A worker whose every connection was checked
  // under this epoch skips the address checks for packets that match one
  // (WorkerState::trusted_address_epoch). Never 0 once indexed.
  uint64_t address_epoch = 0;

  // The port whose subnet holds `dst`, else the first port with a gateway.
  // From the IPv4 subnets as masks (index_routes()): a new connection's
  // route to its client is a few integer compares.
  Route route_to(uint32_t dst_be) const {
    for (const V4Subnet& subnet : v4_subnets)
      if ((dst_be & subnet.mask_be) == subnet.network_be) return Route{subnet.port, dst_be, true};
    return default_route;
  }
  struct V4Subnet {
    uint32_t network_be = 0;
    uint32_t mask_be = 0;
    uint16_t port = 0;
  };
  std::vector<V4Subnet> v4_subnets;  // ports' subnets, in port order
  Route default_route;               // the first port with a gateway, else not found
  // Control side: builds v4_subnets and default_route from `ports`.
  void index_routes();

  // Control side: builds the service map from `services` and the keys given.
  void index_service(uint32_t frontend_be, uint16_t port_be, uint8_t protocol, uint32_t service_index);
  void reserve_service_keys(size_t count);
};

}  // namespace nplb
