#include "control/snapshot_builder.hpp"

#include <algorithm>
#include <stdexcept>

namespace nplb {

uint32_t StableIds::id_of(std::map<std::string, uint32_t>& ids, const std::string& label, uint32_t& next) {
  auto [it, inserted] = ids.try_emplace(label, next);
  if (inserted) ++next;
  return it->second;
}

std::string service_port_label(const ResolvedService& service, const ResolvedServicePort& port) {
  std::string label = service.namespace_ + "/" + service.name + ":" + std::to_string(port.spec.port);
  for (const ResolvedServicePort& other : service.ports) {
    if (&other == &port) break;
    if (other.spec.port == port.spec.port) return label + "/" + std::string(protocol_name(port.spec.protocol));
  }
  return label;
}

std::shared_ptr<const MaglevTable> MaglevCache::get(const std::vector<MaglevBackend>& backends, uint32_t size,
                                                    uint64_t seed) {
  Key key{{}, size, seed};
  for (const MaglevBackend& b : backends) key.keys.push_back(b.key);
  used_[key] = true;
  auto found = tables_.find(key);
  if (found != tables_.end()) return found->second;
  ++builds_;
  auto table = std::make_shared<const MaglevTable>(MaglevTable::build(backends, size, seed));
  tables_.emplace(std::move(key), table);
  return table;
}

void MaglevCache::prune() {
  for (auto it = tables_.begin(); it != tables_.end();)
    it = used_.count(it->first) ? std::next(it) : tables_.erase(it);
  used_.clear();
}

BuiltSnapshot build_snapshot(const ApplianceConfig& config, const Model& model, const std::vector<MacAddr>& port_macs,
                             StableIds& ids, uint64_t generation, uint64_t tsc_hz, MaglevCache* cache,
                             const BackendJudge& judge) {
  BuiltSnapshot built;
  built.snapshot = std::make_unique<Snapshot>();
  Snapshot& s = *built.snapshot;
  s.generation = generation;
  s.maglev_seed = config.forwarding.maglev.seed;
  s.tsc_hz = tsc_hz;
  s.reset_on_backend_removed = config.forwarding.on_backend_removed == OnBackendRemoved::reset;

  for (size_t i = 0; i < config.dataplane.ports.size(); ++i) {
    const PortConfig& pc = config.dataplane.ports[i];
    PortView view;
    view.mac = i < port_macs.size() ? port_macs[i] : pc.mac.value_or(MacAddr{});
    view.subnets = pc.addresses;
    view.gateway_be = pc.gateway ? pc.gateway->v4_be() : 0;
    if (pc.kernel_address && pc.kernel_address->address.is_v4()) {
      view.kernel_be = pc.kernel_address->address.v4_be();
      view.arp_answers_be.push_back(view.kernel_be);
      s.local_be.push_back(view.kernel_be);
    }
    for (const Cidr& c : pc.addresses)
      if (c.address.is_v4()) s.local_be.push_back(c.address.v4_be());
    s.ports.push_back(std::move(view));
  }
  s.index_routes();
  for (const IpAddr& f : model.frontends)
    if (f.is_v4()) s.frontends_be.push_back(f.v4_be());
  for (const IpAddr& a : config.forwarding.snat)
    if (a.is_v4()) s.snat_be.push_back(a.v4_be());
  for (uint32_t a : s.frontends_be) s.local_be.push_back(a);
  for (uint32_t a : s.snat_be) s.local_be.push_back(a);
  s.index_addresses();
  for (PortView& port : s.ports)
    for (const Cidr& c : port.subnets)
      if (c.address.is_v4()) port.arp_answers_be.push_back(c.address.v4_be());
  for (uint32_t a : s.local_be) {
    bool own = false;
    for (const PortView& port : s.ports) own |= Snapshot::contains(port.arp_answers_be, a);
    if (own) continue;
    Route r = s.route_to(a);
    bool on_some_link = r.found && r.next_hop_be == a;
    for (uint16_t p = 0; p < s.ports.size(); ++p)
      if (!on_some_link || p == r.port) s.ports[p].arp_answers_be.push_back(a);
  }

  // Services with the same backend set share one Maglev table (in node mode
  // most services differ only by nodePort, so key by addresses and port).
  std::map<std::vector<std::string>, const MaglevTable*> tables;
  size_t exposed_ports = 0;
  for (const ResolvedService& svc : model.services) exposed_ports += svc.ports.size();
  s.reserve_service_keys(exposed_ports * std::max<size_t>(1, s.frontends_be.size()));

  for (const ResolvedService& svc : model.services) {
    for (const ResolvedServicePort& port : svc.ports) {
      std::string label = service_port_label(svc, port);
      ServicePortView view;
      view.stable_id = ids.service(label);
      if (view.stable_id >= kMaxServicePorts) throw std::runtime_error("more than 65536 service ports");
      view.protocol = static_cast<uint8_t>(port.spec.protocol);
      if (svc.session_affinity == SessionAffinity::ClientIP)
        view.affinity_timeout_tsc = uint64_t(svc.affinity_timeout_seconds) * (tsc_hz ? tsc_hz : 1'000'000'000ull);
      view.first_backend = static_cast<uint32_t>(s.backends.size());
      // Maglev keys: the node (or pod) address, with the port only when the
      // backends differ by port. In node mode every service's backends are
      // the same nodes on its own nodePort, so services share one table.
      std::vector<ResolvedBackend> backends;
      for (const ResolvedBackend& b : port.backends) {
        if (!b.address.is_v4()) continue;
        BackendRotation rotation = judge ? judge(svc, port, b) : BackendRotation::serve;
        if (rotation == BackendRotation::serve) {
          backends.push_back(b);
        } else if (rotation == BackendRotation::drain) {
          // Out of the Maglev table, but its connections stay live.
          std::string label = b.address.str() + ":" + std::to_string(b.port);
          s.mark_backend_live(ids.backend(label));
          built.backend_labels.emplace_back(label, ids.backend(label));
        }
      }
      bool one_port = std::all_of(backends.begin(), backends.end(),
                                  [&](const ResolvedBackend& b) { return b.port == backends.front().port; });
      auto maglev_key = [one_port](const ResolvedBackend& b) {
        return one_port ? b.address.str() : b.address.str() + ":" + std::to_string(b.port);
      };
      // Positions in the service's backend range follow the sorted keys, so
      // equal key sets mean equal tables.
      std::sort(backends.begin(), backends.end(),
                [&](const ResolvedBackend& a, const ResolvedBackend& b) { return maglev_key(a) < maglev_key(b); });
      std::vector<MaglevBackend> maglev_backends;
      std::vector<std::string> keys;
      for (const ResolvedBackend& b : backends) {
        std::string label = b.address.str() + ":" + std::to_string(b.port);
        BackendView bv;
        bv.address_be = b.address.v4_be();
        bv.port_be = __builtin_bswap16(b.port);
        bv.stable_id = ids.backend(label);
        if (bv.stable_id >= kMaxBackends) throw std::runtime_error("more than 262144 backends");
        // A pod off our links is reached through its node.
        if (!b.via.is_unspecified() && b.via.is_v4()) {
          bv.route = s.route_to(b.via.v4_be());
          if (bv.route.found && bv.route.next_hop_be != b.via.v4_be()) bv.route.found = false;  // node not on a link
        } else {
          bv.route = s.route_to(bv.address_be);
        }
        s.mark_backend_live(bv.stable_id);
        keys.push_back(maglev_key(b));
        maglev_backends.push_back(MaglevBackend{keys.back(), static_cast<uint32_t>(s.backends.size() - view.first_backend)});
        built.backend_labels.emplace_back(label, bv.stable_id);
        s.backends.push_back(bv);
      }
      view.backend_count = static_cast<uint32_t>(s.backends.size() - view.first_backend);
      auto found = tables.find(keys);
      if (found != tables.end()) {
        view.maglev = found->second;
      } else {
        uint32_t size = MaglevTable::choose_size(maglev_backends.size(), config.forwarding.maglev.min_table_size,
                                                 config.forwarding.maglev.max_table_size);
        s.maglev_tables.push_back(cache ? cache->get(maglev_backends, size, config.forwarding.maglev.seed)
                                        : std::make_shared<const MaglevTable>(MaglevTable::build(
                                              maglev_backends, size, config.forwarding.maglev.seed)));
        view.maglev = s.maglev_tables.back().get();
        tables.emplace(keys, view.maglev);
      }
      uint32_t index = static_cast<uint32_t>(s.services.size());
      s.services.push_back(view);
      built.service_labels.emplace_back(label, view.stable_id);
      for (uint32_t frontend : s.frontends_be)
        s.index_service(frontend, __builtin_bswap16(port.spec.node_port), view.protocol, index);
    }
  }
  return built;
}

}  // namespace nplb
