#include "control/nodeport_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "control/json_writer.hpp"
#include "control/yaml_reader.hpp"

namespace nplb {

uint32_t node_port_static_band(const PortRange& range) {
  uint32_t size = range.size();
  if (size <= 16) return 0;
  return std::min<uint32_t>(std::max<uint32_t>(16, size / 32), 128);
}

std::optional<uint16_t> allocate_node_port(const PortRange& range, const std::function<bool(uint16_t)>& taken,
                                           std::string_view key) {
  // FNV-1a: stable across builds and platforms, unlike std::hash.
  uint64_t h = 1469598103934665603ull;
  for (char c : key) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  uint32_t band = node_port_static_band(range);
  auto scan = [&](uint32_t first, uint32_t count) -> std::optional<uint16_t> {
    if (count == 0) return std::nullopt;
    uint32_t start = static_cast<uint32_t>(h % count);
    for (uint32_t i = 0; i < count; ++i) {
      auto port = static_cast<uint16_t>(first + (start + i) % count);
      if (!taken(port)) return port;
    }
    return std::nullopt;
  };
  if (auto p = scan(range.first + band, range.size() - band)) return p;
  return scan(range.first, band);
}

std::string node_port_key(const std::string& namespace_, const std::string& name, const std::string& port_name,
                          L4Protocol protocol) {
  return namespace_ + "/" + name + "/" + port_name + "/" + std::string(protocol_name(protocol));
}

std::string NodePortStore::file() const {
  return dir_.empty() ? std::string() : (std::filesystem::path(dir_) / kFileName).string();
}

std::optional<ConfigError> NodePortStore::open(const std::string& state_dir) {
  if (opened_ && state_dir == dir_) return std::nullopt;
  std::string path = (std::filesystem::path(state_dir) / kFileName).string();
  NodePortAllocations loaded;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    yaml::YamlFile parsed = yaml::parse_file(path);
    if (!parsed.errors.empty()) return parsed.errors.front();
    auto bad = [&](const std::string& what) {
      return ConfigError{{path, 0, 0}, what + "; nplb will not reallocate nodePorts over it: repair or remove the file"};
    };
    if (parsed.documents.size() != 1 || !parsed.documents[0].IsMap()) return bad("not a JSON object");
    YAML::Node ports = parsed.documents[0]["nodePorts"];
    if (!ports || !ports.IsMap()) return bad("no \"nodePorts\" object");
    for (const auto& entry : ports) {
      yaml::Value v(entry.second, &parsed.path, "nodePorts." + entry.first.Scalar());
      try {
        loaded[entry.first.Scalar()] = v.as_integer<uint16_t>(1, 65535);
      } catch (const yaml::YamlError& e) {
        return e.to_config_error();
      }
    }
  }
  dir_ = state_dir;
  opened_ = true;
  allocations_ = std::move(loaded);
  return std::nullopt;
}

namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::optional<ConfigError> NodePortStore::commit(const NodePortAllocations& next) {
  if (dir_.empty()) return ConfigError{{}, "no state_dir: nodePort allocations cannot be kept"};
  if (next == allocations_ && std::filesystem::exists(file())) return std::nullopt;
  if (next.empty() && allocations_.empty()) return std::nullopt;  // never create an empty file for nothing
  JsonWriter w;
  w.begin_object();
  w.key("version").value(1);
  w.key("nodePorts").begin_object();
  for (const auto& [key, port] : next) w.key(key).value(uint64_t{port});
  w.end_object();
  w.end_object();
  std::string text = w.str() + "\n";

  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return ConfigError{{dir_, 0, 0}, "state_dir: cannot create " + dir_ + ": " + ec.message()};
  const std::string target = file();
  const std::string tmp = target + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ConfigError{{tmp, 0, 0}, errno_text("cannot create", tmp)};
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  std::string failure = ok ? "" : errno_text("cannot write", tmp);
  if (::close(fd) != 0 && ok) {
    ok = false;
    failure = errno_text("cannot close", tmp);
  }
  if (ok && ::rename(tmp.c_str(), target.c_str()) != 0) {
    ok = false;
    failure = errno_text("cannot rename onto", target);
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return ConfigError{{target, 0, 0}, failure};
  }
  // The rename is durable only once the folder's entry is.
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  allocations_ = next;
  ++writes_;
  return std::nullopt;
}

}  // namespace nplb
