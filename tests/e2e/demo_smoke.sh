#!/usr/bin/env bash
# demo_smoke: the demo's bed (tests/e2e/testbed.sh) and config (conf/demo/) through the
# real binary, with kernel TCP/UDP on both sides.
#
#   tests/e2e/demo_smoke.sh BUILD/nplb [REQUESTS]
#
# Asserts: every one of REQUESTS (default 30) curl requests to VIP:30080 is answered by a
# node; more than one node answers; the node saw the SNAT address as its peer; a UDP
# datagram to VIP:30053 comes back echoed, from VIP:30053; nplb stops on SIGTERM and prints
# its counters JSON, with flows_created >= REQUESTS + 1. Exit 77 (skip) when not root.
set -euo pipefail

NPLB=$(readlink -f "${1:?usage: $0 BUILD/nplb [REQUESTS]}")
REQUESTS=${2:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONF=$ROOT/conf/demo/nplb.yaml

[ "$(id -u)" = 0 ] || { echo "demo_smoke: needs root (network namespaces)" >&2; exit 77; }

export TB_PREFIX=nplbsmk$$
# shellcheck source=testbed.sh
source "$HERE/testbed.sh"

NPLB_PID=
WORK=$(mktemp -d /tmp/nplb-smoke.XXXXXX)
cleanup() {
    local rc=$?
    if [ -n "$NPLB_PID" ] && kill -0 "$NPLB_PID" 2>/dev/null; then kill -KILL "$NPLB_PID" 2>/dev/null || true; fi
    if [ $rc != 0 ]; then
        echo "demo_smoke: FAILED; nplb log tail:" >&2
        tail -n 40 "$WORK/nplb.log" >&2 2>/dev/null || true
    fi
    tb_down
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "demo_smoke: FAIL $*" >&2; exit 1; }
T0=$(date +%s.%N)
since() { /usr/bin/python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$T0" "$(date +%s.%N)"; }

tb_up
ip netns exec "$TB_NS_LB" "$NPLB" --config "$CONF" >"$WORK/nplb.out" 2>"$WORK/nplb.log" &
NPLB_PID=$!

# Wait until nplb answers through the VIP (bounded: 40 tries, 1 s each at most).
up=0
for _ in $(seq 1 40); do
    kill -0 "$NPLB_PID" 2>/dev/null || fail "nplb exited during start-up"
    if tb_client curl -s --max-time 1 -o /dev/null "http://$TB_VIP:$TB_HTTP_PORT/"; then up=1; break; fi
    sleep 0.25
done
[ $up = 1 ] || fail "no answer through $TB_VIP:$TB_HTTP_PORT within the start-up bound"
echo "demo_smoke: nplb answers after $(since) s"

declare -A seen=()
for i in $(seq 1 "$REQUESTS"); do
    body=$(tb_client curl -s --max-time 3 -D "$WORK/headers" "http://$TB_VIP:$TB_HTTP_PORT/") \
        || fail "request $i got no answer"
    node=$(echo "$body" | head -n1 | tr -d '\r')
    [ -n "${TB_NODE_ADDR[$node]+x}" ] || fail "request $i answered '$body', not a node name"
    seen[$node]=$(( ${seen[$node]:-0} + 1 ))
    grep -qi "^X-Seen-From: $TB_SNAT:" "$WORK/headers" \
        || fail "request $i: node $node saw $(grep -i X-Seen-From "$WORK/headers"), expected the SNAT $TB_SNAT"
done
tally=$(for n in "${!seen[@]}"; do echo -n "$n=${seen[$n]} "; done)
echo "demo_smoke: $REQUESTS/$REQUESTS answered: $tally"
[ "${#seen[@]}" -ge 2 ] || fail "all answers from one node: $tally"

udp=$(tb_client "$TB_PY" - "$TB_VIP" "$TB_UDP_PORT" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
addr = (sys.argv[1], int(sys.argv[2]))
s.connect(addr)  # a connected socket accepts replies only from VIP:port: the reverse path
for attempt in range(3):
    s.send(b"smoke")
    try:
        print(s.recv(2048).decode())
        break
    except socket.timeout:
        continue
else:
    sys.exit("no UDP echo")
EOF
) || fail "UDP through $TB_VIP:$TB_UDP_PORT: no echo"
case "$udp" in n[123]" smoke") echo "demo_smoke: UDP echo: $udp" ;; *) fail "UDP echo '$udp'" ;; esac

kill -TERM "$NPLB_PID"
for _ in $(seq 1 50); do kill -0 "$NPLB_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NPLB_PID" 2>/dev/null && fail "nplb still running 5 s after SIGTERM"
wait "$NPLB_PID" || fail "nplb exit status $? after SIGTERM"
NPLB_PID=
"$TB_PY" - "$WORK/nplb.out" "$REQUESTS" <<'EOF' || fail "final counters"
import json, sys
c = json.load(open(sys.argv[1]))
want = int(sys.argv[2]) + 1
assert c["flows_created"] >= want, f"flows_created {c['flows_created']} < {want}"
assert c["services"]["default/web:80"]["packets"] > 0, c["services"]
print("demo_smoke: counters: flows_created", c["flows_created"], "drops", {k: v for k, v in c["drops"].items() if v})
EOF
echo "demo_smoke: PASS in $(since) s"
