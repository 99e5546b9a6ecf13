// The running appliance: EAL, ports, workers, and the control loop on the
// main lcore (neighbour resolution, snapshot publication and reclamation,
// idle detection, signals, final counters).
#pragma once

#include <string>
#include <vector>

#include "control/model.hpp"

namespace nplb {

class ConfigLoader;

struct RunOptions {
  std::vector<std::string> extra_eal;  // after `--` on the command line
  long exit_when_idle_ms = -1;         // -1: run until a signal
};

// Runs until SIGINT/SIGTERM (or idle, with exit_when_idle_ms). Prints the
// final counters as one JSON object on stdout. Returns the process exit code;
// start-time errors are printed as "file:line: message" lines on stderr.
// `loader` produced `loaded` and is asked again on every reload (SIGHUP, a
// change of the files, POST /v1/reload).
int run_appliance(ConfigLoader& loader, LoadResult loaded, const RunOptions& options);

}  // namespace nplb
