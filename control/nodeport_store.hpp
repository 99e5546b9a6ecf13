// nplb's own nodePort allocations. A service with pod backends and no
// nodePort written gets one from nplb, as the API server would allocate it
// (KEP-3668: requested ports in a static band at the bottom of the range,
// automatic ones preferably in the dynamic band above it). Allocations are
// kept in STATE_DIR/nodeports.json, keyed "namespace/name/port-name/PROTOCOL",
// written atomically (temporary file, fsync, rename, fsync of the folder), so
// a port stays the same across reloads and restarts.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "control/model.hpp"

namespace nplb {

using NodePortAllocations = std::map<std::string, uint16_t>;

// KEP-3668: the static band's size, min(max(16, size/32), 128); 0 for a
// range of 16 ports or fewer (everything is then one band).
uint32_t node_port_static_band(const PortRange& range);

// A free port for `key`: the dynamic (upper) band first, the static (lower)
// band when the upper is full; nothing when the range is full. The scan
// starts at a point derived from the key, so that appliances given the same
// objects allocate alike (Kubernetes picks at random).
std::optional<uint16_t> allocate_node_port(const PortRange& range, const std::function<bool(uint16_t)>& taken,
                                           std::string_view key);

std::string node_port_key(const std::string& namespace_, const std::string& name, const std::string& port_name,
                          L4Protocol protocol);

class NodePortStore {
 public:
  static constexpr const char* kFileName = "nodeports.json";

  NodePortStore() = default;
  // Reads STATE_DIR/nodeports.json if it exists. An unreadable or invalid
  // file is an error (never silently reallocated): the load that asked fails.
  std::optional<ConfigError> open(const std::string& state_dir);
  const std::string& state_dir() const { return dir_; }
  std::string file() const;
  const NodePortAllocations& allocations() const { return allocations_; }
  // Makes `next` the stored set: writes it atomically when it differs.
  std::optional<ConfigError> commit(const NodePortAllocations& next);
  size_t writes() const { return writes_; }

 private:
  std::string dir_;
  bool opened_ = false;
  NodePortAllocations allocations_;
  size_t writes_ = 0;
};

}  // namespace nplb
