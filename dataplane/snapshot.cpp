#include "snapshot.hpp"

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
  size_t count = frontends_be.size() + snat_be.size() + local_be.size();
  address_slots.assign(std::bit_ceil(std::max<size_t>(16, count * 2)), AddressSlot{});
  size_t mask = address_slots.size() - 1;
  auto add = [&](uint32_t a, uint8_t role) {
    if (a == 0) return;
    for (size_t i = address_slot(a) & mask;; i = (i + 1) & mask) {
      AddressSlot& slot = address_slots[i];
      if (slot.address_be == 0 || slot.address_be == a) {
        slot.address_be = a;
        slot.roles |= role;
        return;
      }
    }
  };
  for (uint32_t a : frontends_be) add(a, kFrontend | kLocal);
  for (uint32_t a : snat_be) add(a, kSnat | kLocal);
  for (uint32_t a : local_be) add(a, kLocal);
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
