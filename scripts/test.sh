#!/usr/bin/env bash
# Installs, builds and runs the whole test suite (every meson suite:
# unit, fixtures, config, pcap, live, ...). Run as root on Debian 12.
# With CI set, warnings are errors.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/setup.sh

build=${NPLB_BUILD_DIR:-build}   # another folder keeps a shared tree's build/ untouched
opts=()
if [ -n "${CI:-}" ]; then
  opts+=(-Dwerror=true)
else
  opts+=(-Dwerror=false)
fi

if [ -f "$build/meson-private/coredata.dat" ]; then
  # Reuse the build folder; --reconfigure applies the options above and
  # picks up meson.build changes.
  meson setup --reconfigure "${opts[@]}" "$build"
else
  meson setup "${opts[@]}" "$build"
fi

ninja -C "$build"
meson test -C "$build" --print-errorlogs
