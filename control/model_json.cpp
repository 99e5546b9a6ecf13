// The resolved model as `nplb --check` prints it. Other tools parse this:
// keep the key names and their order; new keys go after the existing ones.
#include "control/json_writer.hpp"
#include "control/model.hpp"

namespace nplb {

std::string_view service_type_name(ServiceType t) {
  switch (t) {
    case ServiceType::ClusterIP: return "ClusterIP";
    case ServiceType::NodePort: return "NodePort";
    case ServiceType::LoadBalancer: return "LoadBalancer";
    case ServiceType::ExternalName: return "ExternalName";
  }
  return "?";
}

std::string model_to_json(const Model& model) {
  JsonWriter w;
  w.begin_object();
  w.key("frontends").begin_array();
  for (const auto& ip : model.frontends) w.value(ip.str());
  w.end_array();
  w.key("nodes").begin_array();
  for (const auto& n : model.nodes) {
    w.begin_object();
    w.key("name").value(n.name);
    w.key("address").value(n.address.str());
    w.end_object();
  }
  w.end_array();
  w.key("services").begin_array();
  for (const auto& s : model.services) {
    w.begin_object();
    w.key("namespace").value(s.namespace_);
    w.key("name").value(s.name);
    w.key("type").value(service_type_name(s.type));
    w.key("ports").begin_array();
    for (const auto& p : s.ports) {
      const auto& spec = p.spec;
      w.begin_object();
      w.key("name").value(spec.name);
      w.key("protocol").value(protocol_name(spec.protocol));
      w.key("port").value(uint64_t{spec.port});
      // targetPort as written: a number, or a port name.
      w.key("targetPort");
      if (const auto* number = std::get_if<uint16_t>(&spec.target_port))
        w.value(uint64_t{*number});
      else
        w.value(std::get<std::string>(spec.target_port));
      w.key("nodePort").value(uint64_t{spec.node_port});
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str();
}

}  // namespace nplb
