#!/usr/bin/env bash
# The in-process benchmarks on huge pages, as docs/benchmarks.md reports them.
#
#   scripts/bench.sh [--quick] [--repetitions N] [--out FILE.json] [-- extra nplb-bench flags]
#
# Reserves enough 2 MiB pages for the flow tables (3.8 GiB; 1.2 GiB with
# --quick, which leaves out the 10Mi-connection benchmark) and, for the 10Mi
# table, three 1 GiB pages where the kernel gives them, when run as root;
# runs build/nplb-bench with repetitions
# and JSON output, prints the medians, and gives the pages back as it found
# them. Without root it runs on whatever pages it gets (each benchmark's
# label says which) and says what to reserve. Not part of the test run:
# `meson test` runs the bench only as a smoke check.
set -euo pipefail
cd "$(dirname "$0")/.."

ten_million=1
repetitions=5
out=bench.json
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --10m) ten_million=1 ;;
    --quick) ten_million=0 ;;
    --repetitions) repetitions=$2; shift ;;
    --out) out=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

[ -x build/nplb-bench ] || { echo "bench.sh: build/nplb-bench not built (ninja -C build nplb-bench)" >&2; exit 1; }

pages_file=/proc/sys/vm/nr_hugepages
want=$(( ten_million ? 1900 : 600 ))
before=$(cat "$pages_file")
# The 10Mi table (2.4 GiB) goes on 1 GiB pages when the kernel gives three
# (it needs 3 GiB of unfragmented memory, so it may not); otherwise on the
# 2 MiB pool, which is sized for it either way.
gig_file=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
want_gig=$(( ten_million ? 3 : 0 ))
gig_before=$( [ -r "$gig_file" ] && cat "$gig_file" || echo 0)
restore() {
  [ -w "$pages_file" ] && echo "$before" > "$pages_file" || true
  [ -w "$gig_file" ] && echo "$gig_before" > "$gig_file" || true
}
trap restore EXIT
if [ -w "$gig_file" ] && [ "$gig_before" -lt "$want_gig" ]; then
  echo "$want_gig" > "$gig_file" 2>/dev/null || true
  echo "bench.sh: reserved $(cat "$gig_file") of $want_gig 1 GiB pages for the 10Mi table (was $gig_before; given back on exit)"
fi
if [ -w "$pages_file" ] && [ "$before" -lt "$want" ]; then
  echo "$want" > "$pages_file"
  got=$(cat "$pages_file")
  echo "bench.sh: reserved $got 2 MiB pages (was $before; given back on exit)"
  [ "$got" -ge "$want" ] || echo "bench.sh: the kernel gave $got of $want pages (fragmented memory); big tables fall back to transparent huge pages"
elif [ ! -w "$pages_file" ]; then
  echo "bench.sh: not root: running on the pages already reserved ($before); for the full set: echo $want > $pages_file"
fi

flags=(--benchmark_repetitions="$repetitions" --benchmark_report_aggregates_only=true
       --benchmark_out="$out" --benchmark_out_format=json)
[ "$ten_million" = 0 ] && flags+=(--nplb_no_10m)
build/nplb-bench "${flags[@]}" "${extra[@]}"

/usr/bin/python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"\nmedians of {data['benchmarks'][0].get('repetitions', '?')} repetitions ({sys.argv[1]}):")
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"]
    if "cycles_per_packet" in b:
        mpps = b.get("aggregate_Mpps", b.get("items_per_second", 0) / 1e6)
        print(f"  {name:48s} {b['cycles_per_packet']:8.1f} cycles/packet {mpps:8.2f} Mpps  {b.get('label', '')}")
    elif "ms" in b:
        print(f"  {name:48s} {b['ms']:8.3f} ms")
PY
