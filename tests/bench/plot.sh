#!/usr/bin/env bash
# Runs build/nplb-bench once and plots cycles per packet beside the published
# anchors and the targets (docs/bench-cycles.png). Needs gnuplot (Debian's
# gnuplot-nox). Usage: tests/bench/plot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/bench-cycles.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v gnuplot >/dev/null || apt-get install -y -q gnuplot-nox >/dev/null
build/nplb-bench --benchmark_filter='^(baseline|established/flows:1024|established/flows:1048576|new_flows)$' \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=json >"$work/bench.json"
/usr/bin/python3 - "$work/bench.json" >"$work/bars.dat" <<'PY'
import json, sys
runs = {b["run_name"]: b["cycles_per_packet"] for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
rows = [("baseline", runs["baseline"], 1),
        ("est. 1K flows", runs["established/flows:1024"], 1),
        ("est. 1M flows", runs["established/flows:1048576"], 1),
        ("new flows", runs["new_flows"], 1),
        ("Katran XDP", 690, 2),
        ("DPVS full-NAT", 760, 2),
        ("target 1M", 100, 3)]
for i, (name, cycles, kind) in enumerate(rows):
    print(f'{i} "{name}" {cycles:.0f} {kind}')
PY
gnuplot <<GP
set terminal pngcairo size 900,480 font "DejaVu Sans,10"
set output "$out"
set title "Cycles per packet, one core, 64-byte TCP, bursts of 32 (lower is better)"
set ylabel "cycles per packet"
set style fill solid 0.8 border -1
set boxwidth 0.7
set yrange [0:*]
set grid ytics
unset key
set xtics rotate by 0 offset 0,-0.5
set palette defined (1 "#2e7d32", 2 "#9e9e9e", 3 "#1565c0")
unset colorbox
plot "$work/bars.dat" using 1:3:4:xtic(2) with boxes palette, \
     "" using 1:3:(sprintf("%d", \$3)) with labels offset 0,0.7
GP
echo "wrote $out"
