#!/usr/bin/env bash
# End-to-end benchmark on one 2-CPU machine, no NIC (issue 5, "End to end").
#
#   generator: dpdk-testpmd txonly, UDP 10.0.0.1:40000 -> VIP 203.0.113.10:30053,
#              --txonly-multi-flow, 64-byte frames, one forwarding lcore
#        |  net_memif (testpmd is the memif server, the forwarder the client)
#   forwarder: (a) build/nplb, one worker, one-armed full NAT to 4 nodes
#              (b) dpdk-testpmd in `mac` forwarding mode, in nplb's place
#
# Both forwarders send everything back out of the same memif; testpmd txonly
# never polls RX, so after the first ring (1024 frames) the return ring is full
# and every transmit is refused (nplb counts it as tx_full, testpmd as a
# TX drop): both pay the same failed tx_burst and mbuf free. The rate is taken
# on the forwarder's side: packets received and handled per second (nplb:
# ports.lan.rx from GET /v1/stats before and after the window, divided by the
# window measured with date; testpmd: the mean of its Rx-pps samples printed
# inside the window). In full mode a third phase, testpmd rxonly in the
# forwarder's place, gives the plumbing ceiling (generator + memif + RX).
#
# CPU placement (2 CPUs; override with MEMIF_BENCH_GEN_CPU / _FWD_CPU):
#   CPU 0: generator main lcore (sleeps in --stats-period) and forwarding
#          lcore (busy), forwarder's main lcore (nplb's control thread naps
#          up to 1 ms between polls, ~1% of the CPU; testpmd's main lcore
#          sleeps in its stats loop)
#   CPU 1: the forwarder's one worker / forwarding lcore, alone
# so the measured side owns a CPU and the only thing it shares CPU 0 with is
# the generator's own busy lcore, which it does not measure.
#
# Rounds: the two phases alternate (nplb, testpmd mac, nplb, ...), five
# rounds of 5 s windows by default, and the last line gives each side's best
# window (slow spells last seconds to minutes: five short windows find a
# quiet one more often than three long ones in the same time). On a
# shared host a window in which the whole machine slowed down would
# otherwise decide the ratio (seen here: 14-17 Mpps windows between 28-44
# Mpps ones, in either phase, sometimes two of three in a row, so a median
# is not enough); the host's noise only ever slows a window down, so each
# side's best is the closest to what it can do. When the two best windows
# are still implausibly far apart (ratio under 0.6 or over 1.25: one side
# never had a quiet window), rounds are added, up to twice the number asked.
#
# Usage: memif-bench.sh [--smoke] [--rounds N] [--duration S] [--warmup S] [--nplb PATH]
#   --smoke   one round of 2 s windows, 1 s warm-up, no ceiling phase (the
#             meson 'bench' test); exits 77 (skipped) when dpdk-testpmd is
#             not installed
# Last line of output, always: nplb_mpps=X baseline_mpps=Y ratio=Z
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NPLB=${NPLB:-$here/../build/nplb}
TESTPMD=${TESTPMD:-dpdk-testpmd}
GEN_CPU=${MEMIF_BENCH_GEN_CPU:-0}
FWD_CPU=${MEMIF_BENCH_FWD_CPU:-1}
smoke=0
duration=5
warmup=2
ceiling=1
rounds=5

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; duration=2; warmup=1; ceiling=0; rounds=1 ;;
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --nplb) NPLB=$2; shift ;;
    --no-ceiling) ceiling=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memif-bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v "$TESTPMD" >/dev/null 2>&1; then
  echo "memif-bench.sh: $TESTPMD not found (Debian: apt-get install dpdk-dev)" >&2
  [ "$smoke" = 1 ] && exit 77
  exit 1
fi
for tool in curl python3 timeout; do
  command -v "$tool" >/dev/null 2>&1 || { echo "memif-bench.sh: $tool not found" >&2; exit 1; }
done
case "$rounds" in ''|*[!0-9]*|0) echo "memif-bench.sh: --rounds wants a positive number" >&2; exit 2 ;; esac
if [ ! -x "$NPLB" ]; then
  echo "memif-bench.sh: $NPLB not built (ninja -C build nplb)" >&2
  exit 1
fi
NPLB=$(cd "$(dirname "$NPLB")" && pwd)/$(basename "$NPLB")
if [ "$(nproc --all)" -lt 2 ] || [ "$GEN_CPU" = "$FWD_CPU" ]; then
  echo "memif-bench.sh: needs two CPUs (generator on $GEN_CPU, forwarder on $FWD_CPU)" >&2
  exit 1
fi

base=/run
[ -w "$base" ] || base=${TMPDIR:-/tmp}
run_dir=$(mktemp -d "$base/nplb-memif-bench.XXXXXX")
tag=$(basename "$run_dir" | tr -c 'A-Za-z0-9\n' '_')
pids=()

stop_all() {  # stops every process this script started, by its id
  local pid
  # testpmd 22.11's txonly generator may segfault in its memif teardown
  # after SIGTERM (the window is over by then); bash reports it when it
  # reaps the job, wherever that happens: into the braces' stderr, not into
  # the results.
  {
    for pid in "${pids[@]}"; do kill -TERM "$pid" || true; done
    for pid in "${pids[@]}"; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" || true
    done
  } 2>/dev/null
  pids=()
}

cleanup() {
  stop_all
  if [ -n "${KEEP_RUN_DIR:-}" ]; then
    echo "memif-bench.sh: kept $run_dir" >&2
  else
    rm -rf "$run_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every process gets a hard bound, so nothing outlives a killed script for long.
bound=$((warmup + duration + 90))
eal_common=(--no-huge --no-shconf -m 1024 --no-pci --log-level '*:error')
GEN_MAC=02:00:00:00:00:fe
FWD_MAC=02:00:00:00:00:01
VIP=203.0.113.10
NODE_PORT=30053
CLIENT=10.0.0.1

# ---------------------------------------------------------------- nplb config
cat > "$run_dir/services.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default}
spec:
  type: NodePort
  ports:
    - {name: udp, protocol: UDP, port: 53, targetPort: 5353, nodePort: $NODE_PORT}
EOF

write_nplb_config() {  # $1 = memif socket
  # Clients (testpmd's multi-flow sources) are off-link behind the gateway,
  # nodes on-link; every next hop is a static neighbour: no ARP on the memif.
  cat > "$run_dir/nplb.yaml" <<EOF
dataplane:
  eal: ["--no-huge", "--no-shconf", "-m", "1024", "--lcores", "0@$GEN_CPU,1@$FWD_CPU",
        "--file-prefix", "${tag}_nplb", "--log-level", "*:error"]
  workers: 1
  ports:
    - name: lan
      device: "net_memif0,role=client,id=0,socket=$1,socket-abstract=no,mac=$FWD_MAC"
      addresses: ["192.0.2.1/24", "198.51.100.1/24"]
      mac: "$FWD_MAC"
      gateway: 192.0.2.254
  neighbors:
    - {ip: 192.0.2.254, mac: "$GEN_MAC"}
    - {ip: 198.51.100.21, mac: "02:00:00:00:01:21"}
    - {ip: 198.51.100.22, mac: "02:00:00:00:01:22"}
    - {ip: 198.51.100.23, mac: "02:00:00:00:01:23"}
    - {ip: 198.51.100.24, mac: "02:00:00:00:01:24"}
  flows:
    capacity: 65536
forwarding:
  mode: nat
  frontends: ["$VIP"]
  snat: ["198.51.100.2"]
cluster:
  nodes:
    - {name: n1, address: 198.51.100.21}
    - {name: n2, address: 198.51.100.22}
    - {name: n3, address: 198.51.100.23}
    - {name: n4, address: 198.51.100.24}
  manifests: ["services.yaml"]
api:
  listen: "unix:$run_dir/api.sock"
EOF
}

# ---------------------------------------------------------------- helpers
start_generator() {  # $1 = memif socket, $2 = log
  # Main lcore and forwarding lcore both on GEN_CPU (testpmd needs two lcores).
  timeout -k 5 "$bound" "$TESTPMD" "${eal_common[@]}" --lcores "0@$GEN_CPU,1@$GEN_CPU" \
    --file-prefix "${tag}_gen" \
    --vdev "net_memif0,role=server,id=0,socket=$1,socket-abstract=no,mac=$GEN_MAC" -- \
    --forward-mode=txonly --txonly-multi-flow --tx-ip="$CLIENT,$VIP" --tx-udp="40000,$NODE_PORT" \
    --eth-peer="0,$FWD_MAC" --nb-cores=1 --port-topology=loop --total-num-mbufs=16384 \
    --stats-period 1 </dev/null >"$2" 2>&1 &
  pids+=($!)
  # Wait for its first stats print: the port is started and the memif server
  # listens (a client that connects earlier may never come up).
  local i
  for i in $(seq 600); do   # 60 s: EAL start-up is slow on a loaded machine
    [ -S "$1" ] && grep -q 'Port statistics' "$2" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "memif-bench.sh: the generator did not start serving $1; its log:" >&2
  tail -20 "$2" >&2
  exit 1
}

start_testpmd_forwarder() {  # $1 = socket, $2 = mode, $3 = log
  timeout -k 5 "$bound" "$TESTPMD" "${eal_common[@]}" --lcores "0@$GEN_CPU,1@$FWD_CPU" \
    --file-prefix "${tag}_fwd" \
    --vdev "net_memif0,role=client,id=0,socket=$1,socket-abstract=no,mac=$FWD_MAC" -- \
    --forward-mode="$2" --eth-peer="0,$GEN_MAC" --nb-cores=1 --port-topology=loop \
    --total-num-mbufs=16384 --stats-period 1 </dev/null >"$3" 2>&1 &
  pids+=($!)
}

now() { date +%s.%N; }

# CPU time (clock ticks) of the forwarding thread (the lcore pinned to
# FWD_CPU: DPDK names it rte-worker-N / lcore-worker-N) of the process
# started under timeout $1. Compared with the window, it tells whether the
# measured side had its CPU to itself.
worker_ticks() {
  local child task comm
  child=$(pgrep -P "$1" | head -1)
  [ -n "$child" ] || { echo 0; return; }
  for task in /proc/"$child"/task/*; do
    comm=$(cat "$task/comm" 2>/dev/null || true)
    case "$comm" in
      rte-worker-*|lcore-worker-*)
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$task/stat"; return ;;
    esac
  done
  echo 0
}

share() {  # $1 ticks delta, $2 window seconds -> percent
  python3 -c 'import sys; print(f"{100 * int(sys.argv[1]) / int(sys.argv[3]) / float(sys.argv[2]):.0f}")' \
    "$1" "$2" "$(getconf CLK_TCK)"
}

stats() {  # GET /v1/stats from nplb (a few tries: the machine may be busy)
  local i
  for i in 1 2 3 4 5; do
    curl -sf --max-time 2 --unix-socket "$run_dir/api.sock" http://nplb/v1/stats && return 0
    sleep 0.1
  done
  return 1
}

json_field() {  # $1 = JSON, $2 = python expression on d
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# Mean of the Rx-pps (or Tx-pps) samples testpmd printed after byte offset $2.
testpmd_mean_pps() {  # $1 = log, $2 = offset, $3 = Rx|Tx
  tail -c +"$(( $2 + 1 ))" "$1" | awk -v key="$3-pps:" '
    $1 == key { n++; s += $2 } END { if (n) printf "%.0f %d\n", s / n, n; else print "0 0" }'
}

wait_testpmd_rx() {  # $1 = log: until a non-zero Rx-pps sample appears
  local i
  for i in $(seq 600); do
    if awk '$1 == "Rx-pps:" && $2 > 0 { found = 1 } END { exit !found }' "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "memif-bench.sh: the testpmd forwarder received nothing; its log:" >&2
  tail -20 "$1" >&2
  exit 1
}

mpps() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / 1e6:.2f}")' "$1"; }

echo "memif-bench.sh: $(nproc --all) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
  "generator on CPU $GEN_CPU, forwarder's worker on CPU $FWD_CPU; warm-up ${warmup}s, window ${duration}s"

# ---------------------------------------------------------------- (a) nplb
run_nplb_phase() {  # $1 = name; sets nplb_pps nplb_share gen_a
  local sock=$run_dir/memif-$1.sock s s1 s2 t1 t2 w1 w2 gen_off nplb_pid up
  local rx_delta fwd_delta other_drops tx_full flows
  write_nplb_config "$sock"
  start_generator "$sock" "$run_dir/gen-$1.log"
  timeout -k 5 "$bound" "$NPLB" --config "$run_dir/nplb.yaml" \
    >"$run_dir/nplb-$1.out" 2>"$run_dir/nplb-$1.err" </dev/null &
  pids+=($!)
  nplb_pid=$!
  up=0
  for _ in $(seq 600); do
    if s=$(stats 2>/dev/null) && [ "$(json_field "$s" 'd["ports"]["lan"]["rx"]')" -gt 0 ]; then up=1; break; fi
    if ! kill -0 "$nplb_pid" 2>/dev/null; then
      echo "memif-bench.sh: nplb stopped; its log:" >&2; tail -20 "$run_dir/nplb-$1.err" >&2; exit 1
    fi
    sleep 0.1
  done
  if [ "$up" = 0 ]; then
    echo "memif-bench.sh: nplb received nothing in 60 s (memif link down?); its log:" >&2
    tail -20 "$run_dir/nplb-$1.err" >&2
    exit 1
  fi
  sleep "$warmup"
  gen_off=$(stat -c %s "$run_dir/gen-$1.log")
  s1=$(stats); t1=$(now); w1=$(worker_ticks "$nplb_pid")
  sleep "$duration"
  s2=$(stats); t2=$(now); w2=$(worker_ticks "$nplb_pid")
  nplb_share=$(share $((w2 - w1)) "$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t1" "$t2")")
  gen_a=$(testpmd_mean_pps "$run_dir/gen-$1.log" "$gen_off" Tx)
  gen_a=${gen_a% *}
  stop_all
  read -r nplb_pps rx_delta fwd_delta other_drops tx_full flows < <(python3 - "$s1" "$s2" "$t1" "$t2" <<'EOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
window = float(sys.argv[4]) - float(sys.argv[3])
rx = b["ports"]["lan"]["rx"] - a["ports"]["lan"]["rx"]
fwd = b["forwarded"] - a["forwarded"]
drops = {k: b["drops"][k] - a["drops"][k] for k in b["drops"]}
tx_full = drops.pop("tx_full")
print(f"{rx / window:.0f} {rx} {fwd} {sum(drops.values())} {tx_full} {b['flows_created']}")
EOF
  )
  echo "nplb:     rx ${rx_delta} in the window, forwarded ${fwd_delta}, tx_full ${tx_full}," \
    "other drops ${other_drops}, flows ${flows}: $(mpps "$nplb_pps") Mpps" \
    "(generator Tx-pps $(mpps "$gen_a"); worker thread had ${nplb_share}% of CPU $FWD_CPU)"
  # The counters are read while the worker runs: rx is counted when a burst
  # arrives, forwarded as it is handled, so allow a few bursts of difference.
  if [ "$other_drops" != 0 ] || [ "$rx_delta" -le 0 ] || [ $((rx_delta - fwd_delta)) -gt 1024 ] ||
     [ $((fwd_delta - rx_delta)) -gt 1024 ]; then
    echo "memif-bench.sh: nplb dropped packets for reasons other than tx_full, or forwarded fewer than it received:" >&2
    echo "$s2" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- (b) testpmd mac
run_testpmd_phase() {  # $1 = name, $2 = mode; sets phase_pps, phase_samples, phase_gen
  local sock=$run_dir/memif-$1.sock
  start_generator "$sock" "$run_dir/gen-$1.log"
  start_testpmd_forwarder "$sock" "$2" "$run_dir/fwd-$1.log"
  wait_testpmd_rx "$run_dir/fwd-$1.log"
  sleep "$warmup"
  local off goff w1 w2 fwd_pid=${pids[-1]}
  off=$(stat -c %s "$run_dir/fwd-$1.log"); goff=$(stat -c %s "$run_dir/gen-$1.log")
  w1=$(worker_ticks "$fwd_pid")
  sleep "$duration"
  w2=$(worker_ticks "$fwd_pid")
  phase_share=$(share $((w2 - w1)) "$duration")
  read -r phase_pps phase_samples < <(testpmd_mean_pps "$run_dir/fwd-$1.log" "$off" Rx)
  read -r phase_gen _ < <(testpmd_mean_pps "$run_dir/gen-$1.log" "$goff" Tx)
  stop_all
}

# Who set nplb's rate in a round: the generator only sends as fast as the
# forwarder drains the ring, so compare what it managed in the two phases.
# Nearly the same: it was the limit both times and the ratio measures it,
# not nplb.
who_set_the_rate() {  # $1 = generator into nplb, $2 = into testpmd mac (pps)
  python3 - "$1" "$2" <<'PY'
import sys
into_nplb, into_mac = float(sys.argv[1]), float(sys.argv[2])
if into_mac > 0 and into_nplb > 1.05 * into_mac:
    print(f"the generator sent {into_nplb / 1e6:.2f} Mpps into nplb but only {into_mac / 1e6:.2f} into testpmd mac,"
          " less than nplb took: the host slowed that window down, so this round's ratio says little")
elif into_mac > 0 and into_nplb >= 0.95 * into_mac:
    print(f"the generator sent {into_nplb / 1e6:.2f} Mpps into nplb and {into_mac / 1e6:.2f} into testpmd mac:"
          " it set both rates, so the ratio measures the generator, not how far nplb could go")
elif into_mac > 0:
    print(f"the generator sent {100 * (1 - into_nplb / into_mac):.0f}% less into nplb than into testpmd mac:"
          " nplb's worker set its rate")
PY
}

# Each side's best window over the rounds so far: "nplb_pps base_pps ratio".
best_windows() {
  python3 - "${nplb_rates[*]}" "${base_rates[*]}" <<'PY'
import sys
nplb = max(float(x) for x in sys.argv[1].split())
base = max(float(x) for x in sys.argv[2].split())
print(f"{nplb:.0f} {base:.0f} {nplb / base:.2f}")
PY
}

# Extra rounds, up to as many again, while the two best windows are
# implausibly far apart (ratio under 0.6 or over 1.25): then one side found
# no quiet window (a slow spell gives 16-18 Mpps where quiet windows give
# 35-46). The rule looks at both sides alike, not at the target.
planned=$rounds
nplb_rates=() base_rates=() shares=()
round=0
while :; do
  round=$((round + 1))
  if [ "$round" -gt "$rounds" ]; then
    [ "$planned" -gt 1 ] && [ "$rounds" -lt $((2 * planned)) ] || break
    read -r _ _ ratio < <(best_windows)
    python3 -c "import sys; sys.exit(0 if 0.6 <= $ratio <= 1.25 else 1)" && break
    rounds=$((rounds + 1))
    echo "best windows at ratio $ratio: one side saw no quiet window; one more round"
  fi
  [ "$rounds" -gt 1 ] && echo "round $round of $rounds"
  run_nplb_phase "a$round"
  run_testpmd_phase "b$round" mac
  base_pps=$phase_pps base_n=$phase_samples gen_b=$phase_gen base_share=$phase_share
  if [ "$base_n" = 0 ] || [ "$base_pps" = 0 ]; then
    echo "memif-bench.sh: no Rx-pps sample from the testpmd forwarder" >&2; exit 1
  fi
  echo "testpmd mac: Rx-pps mean of ${base_n} samples: $(mpps "$base_pps") Mpps (generator Tx-pps $(mpps "$gen_b"); forwarding thread had ${base_share}% of CPU $FWD_CPU)"
  who_set_the_rate "$gen_a" "$gen_b"
  nplb_rates+=("$nplb_pps") base_rates+=("$base_pps") shares+=("$nplb_share" "$base_share")
done

if [ "$ceiling" = 1 ]; then
  run_testpmd_phase c rxonly
  ceil_pps=$phase_pps ceil_n=$phase_samples gen_c=$phase_gen
  echo "testpmd rxonly (ceiling: generator + memif + RX): $(mpps "$ceil_pps") Mpps over ${ceil_n} samples" \
    "(generator Tx-pps $(mpps "$gen_c"))"
fi

for pct in "${shares[@]}"; do
  if [ "$pct" -lt 90 ]; then
    echo "memif-bench.sh: WARNING: a forwarder had under 90% of CPU $FWD_CPU: the machine is busy and the figures" \
      "measure the scheduler; run it again at a quieter moment" \
      "(the worker's CPU time over the window, above, bounds its capacity from below)" >&2
    break
  fi
done

# Each side's best window over the rounds (the one value with a single round).
read -r nplb_pps base_pps ratio < <(best_windows)
if [ "$rounds" -gt 1 ]; then
  echo "best of $rounds rounds: nplb $(for r in "${nplb_rates[@]}"; do printf '%s ' "$(mpps "$r")"; done)->" \
    "$(mpps "$nplb_pps"); testpmd mac $(for r in "${base_rates[@]}"; do printf '%s ' "$(mpps "$r")"; done)-> $(mpps "$base_pps")"
fi
echo "nplb_mpps=$(mpps "$nplb_pps") baseline_mpps=$(mpps "$base_pps") ratio=$ratio"
