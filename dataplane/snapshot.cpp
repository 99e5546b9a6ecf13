#include "snapshot.hpp"

#include <algorithm>
#include <bit>

namespace nplb {

void Snapshot::index_routes() {
  v4_subnets.clear();
  default_route = Route{};
  for (uint16_t p = 0; p < ports.size(); ++p)
    for (const Cidr& subnet : ports[p].subnets) {
      if (!subnet.address.is_v4()) continue;
      uint32_t mask = subnet.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - subnet.prefix_len);
      uint32_t mask_be = __builtin_bswap32(mask);
      v4_subnets.push_back(V4Subnet{subnet.address.v4_be() & mask_be, mask_be, p});
    }
  for (uint16_t p = 0; p < ports.size(); ++p)
    if (ports[p].gateway_be) {
      default_route = Route{p, ports[p].gateway_be, true};
      break;
    }
}

void Snapshot::index_addresses() {
  // Each address once, with all its roles.
  struct Wanted {
    uint32_t address_be;
    uint8_t roles;
  };
  std::vector<Wanted> wanted;
  for (uint32_t a : frontends_be) wanted.push_back(Wanted{a, uint8_t(kFrontend | kLocal)});
  for (uint32_t a : snat_be) wanted.push_back(Wanted{a, uint8_t(kSnat | kLocal)});
  for (uint32_t a : local_be) wanted.push_back(Wanted{a, uint8_t(kLocal)});
  std::erase_if(wanted, [](const Wanted& w) { return w.address_be == 0; });
  std::sort(wanted.begin(), wanted.end(),
            [](const Wanted& x, const Wanted& y) { return x.address_be < y.address_be; });
  size_t merged = 0;
  for (const Wanted& w : wanted) {
    if (merged && wanted[merged - 1].address_be == w.address_be)
      wanted[merged - 1].roles |= w.roles;
    else
      wanted[merged++] = w;
  }
  wanted.resize(merged);

  // FNV-1a over the sorted roles and the ports' kernel addresses in order.
  uint64_t epoch = 0xcbf29ce484222325ull;
  auto mix = [&epoch](uint64_t word) {
    for (int byte = 0; byte < 8; ++byte) epoch = (epoch ^ ((word >> (8 * byte)) & 0xff)) * 0x100000001b3ull;
  };
  for (const Wanted& w : wanted) mix(uint64_t(w.address_be) << 8 | w.roles);
  mix(ports.size());
  for (const PortView& port : ports) mix(port.kernel_be);
  address_epoch = epoch | 1;

  // Multipliers from an LCG until one places every address; 64 tries per
  // table size, then twice the size. One address per slot needs room for
  // the birthday odds (n^2/8 slots: 2048 for 128 addresses); four per
  // bucket overflow with odds of about 1 in 6000 per bucket at half an
  // address per bucket.
  uint64_t candidate = 0x9e3779b97f4a7c15ull;
  auto try_multipliers = [&](size_t size, auto&& place_all) {
    address_shift = static_cast<uint32_t>(64 - std::countr_zero(size));
    for (int attempt = 0; attempt < 64; ++attempt) {
      address_multiplier = candidate | 1;
      candidate = candidate * 6364136223846793005ull + 1442695040888963407ull;
      if (place_all()) return true;
    }
    return false;
  };
  address_slots.clear();
  address_buckets.clear();
  if (wanted.size() <= kDirectAddresses) {
    for (size_t size = std::bit_ceil(std::max<size_t>(16, wanted.size() * 4)); size <= 16384; size *= 2) {
      bool placed = try_multipliers(size, [&] {
        address_slots.assign(size, AddressSlot{});
        for (const Wanted& w : wanted) {
          AddressSlot& slot = address_slots[address_index(w.address_be)];
          if (slot.address_be != 0) return false;
          slot = AddressSlot{w.address_be, w.roles};
        }
        return true;
      });
      if (placed) return;
    }
    address_slots.clear();
  }
  for (size_t count = std::bit_ceil(std::max<size_t>(4, wanted.size() * 2));; count *= 2) {
    bool placed = try_multipliers(count, [&] {
      address_buckets.assign(count, AddressBucket{});
      for (const Wanted& w : wanted) {
        AddressBucket& b = address_buckets[address_index(w.address_be)];
        int free = 0;
        while (free < kAddressesPerBucket && b.address_be[free] != 0) ++free;
        if (free == kAddressesPerBucket) return false;
        b.address_be[free] = w.address_be;
        b.roles[free] = w.roles;
      }
      return true;
    });
    if (placed) return;
  }
}

void Snapshot::reserve_service_keys(size_t count) {
  size_t size = std::bit_ceil(std::max<size_t>(16, count * 2));
  service_keys.assign(size, ServiceKey{});
  service_key_values.assign(size, 0);
}

void Snapshot::index_service(uint32_t frontend_be, uint16_t port_be, uint8_t protocol, uint32_t service_index) {
  size_t mask = service_keys.size() - 1;
  for (size_t i = service_slot(frontend_be, port_be, protocol) & mask;; i = (i + 1) & mask) {
    ServiceKey& k = service_keys[i];
    if (!k.used || (k.frontend_be == frontend_be && k.port_be == port_be && k.protocol == protocol)) {
      k = ServiceKey{frontend_be, port_be, protocol, 1};
      service_key_values[i] = service_index;
      return;
    }
  }
}

}  // namespace nplb
