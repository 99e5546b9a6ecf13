#!/usr/bin/env bash
# Installs everything nplb needs to build and to run its tests, on a fresh
# minimal Debian 12 (bookworm): compilers, meson, DPDK 22.11, the libraries,
# and the tools the tests drive (scapy, tshark, iproute2, ethtool, curl, wrk).
# Idempotent: when every package is already installed, apt is not touched.
# Run as root.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential g++ meson ninja-build pkg-config
  # libraries (Debian's packages only)
  libdpdk-dev dpdk libyaml-cpp-dev libspdlog-dev libbenchmark-dev
  googletest libgtest-dev libgmock-dev libpcap-dev
  # what the tests use
  python3 python3-scapy tshark iproute2 ethtool procps lua5.4 curl wrk
  dpdk-dev  # dpdk-testpmd: the generator and the baseline of pktgen-scripts/memif-bench.sh
  ca-certificates
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive
# tshark (wireshark-common) asks whether non-root users may capture: answer
# "no" ahead of time so the install never stops on a question.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup.sh: done"
