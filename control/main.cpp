// nplb: the appliance.
//   nplb --config FILE [--check] [--exit-when-idle MS] [-- EAL-ARGS...]
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "control/appliance.hpp"
#include "control/config_loader.hpp"
#include "control/model.hpp"

namespace {

constexpr const char* kUsage =
    "usage: nplb --config FILE [--check] [--exit-when-idle MS] [-- EAL-ARGS...]\n"
    "  --config FILE         appliance settings and Kubernetes manifests (YAML)\n"
    "  --check               validate everything that needs no NIC, print the resolved model as JSON\n"
    "  --exit-when-idle MS   stop once every RX queue has been idle for MS milliseconds\n"
    "  -- EAL-ARGS           appended to dataplane.eal\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "nplb: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr; stdout carries only JSON.
  spdlog::set_default_logger(spdlog::stderr_color_mt("nplb"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::string config_file;
  bool check = false;
  nplb::RunOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) options.extra_eal.emplace_back(argv[i]);
      break;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--exit-when-idle" && i + 1 < argc) {
      std::string ms = argv[++i];
      char* end = nullptr;
      long value = std::strtol(ms.c_str(), &end, 10);
      if (ms.empty() || *end != '\0' || value < 0 || value > 86'400'000)
        return usage_error("--exit-when-idle takes milliseconds, 0 to 86400000: \"" + ms + "\"");
      options.exit_when_idle_ms = value;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      return usage_error("unknown or incomplete argument \"" + std::string(arg) + "\"");
    }
  }
  if (config_file.empty()) return usage_error("--config FILE is required");

  // The loader lives as long as the appliance: reloads reuse its caches and
  // its nodePort allocations. --check is a dry run: it writes nothing.
  nplb::ConfigLoader loader(config_file);
  nplb::LoadResult loaded = loader.load(/*dry_run=*/check);
  for (const std::string& note : loaded.notes) spdlog::info("{}", note);
  for (const nplb::ConfigError& e : loaded.errors) std::fprintf(stderr, "%s\n", e.format().c_str());
  // Errors in settings or YAML stop everything. A rejected Kubernetes object
  // fails --check, but a start serves the rest, as the API server would have
  // refused only that object.
  if (loaded.fatal || !loaded.config || (check && !loaded.errors.empty())) return 1;
  if (check) {
    std::printf("%s\n", nplb::model_to_json(loaded.model).c_str());
    return 0;
  }
  return nplb::run_appliance(loader, std::move(loaded), options);
}
