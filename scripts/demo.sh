#!/usr/bin/env bash
# The demo: installs, builds, and runs nplb on its shipped scenario (conf/demo/) in a
# test bed of network namespaces (tests/e2e/testbed.sh): a client curls the VIP, three
# nodes answer with their names, UDP goes through too, a node fails (its server killed):
# the health checks take it out, traffic moves, it comes back; nplb's final counters
# close the story. Run as root on Debian 12. Everything it creates is removed on exit.
#
#   bash scripts/demo.sh            (NPLB_SKIP_SETUP=1 skips the apt step)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CONF=conf/demo/nplb.yaml
NPLB=${NPLB_BIN:-build/nplb}   # NPLB_BIN: run another binary (debugging the demo itself)
NPLBCTL=${NPLBCTL_BIN:-$(dirname "$NPLB")/nplbctl}
REQUESTS=12

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it installs packages and makes network namespaces)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -z "${NPLB_SKIP_SETUP:-}" ]; then
    say "Installing dependencies (scripts/setup.sh)"
    bash scripts/setup.sh
fi
if [ -z "${NPLB_BIN:-}" ]; then
    say "Building (meson + ninja)"
    [ -f build/build.ninja ] || meson setup build
    ninja -C build nplb nplbctl
fi

# shellcheck source=../tests/e2e/testbed.sh
source tests/e2e/testbed.sh
WORK=$(mktemp -d /tmp/nplb-demo.XXXXXX)
NPLB_PID=
cleanup() {
    local rc=$?
    if [ -n "$NPLB_PID" ] && kill -0 "$NPLB_PID" 2>/dev/null; then kill -KILL "$NPLB_PID" 2>/dev/null || true; fi
    if [ $rc != 0 ]; then
        echo "demo: failed; nplb's log ($WORK/nplb.log) ends with:" >&2
        tail -n 30 "$WORK/nplb.log" >&2 2>/dev/null || true
    else
        rm -rf "$WORK"
    fi
    tb_down
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Test bed: client $TB_CLIENT_ADDR -> VIP $TB_VIP -> nodes ${TB_NODE_ADDR[n1]}, ${TB_NODE_ADDR[n2]}, ${TB_NODE_ADDR[n3]} (network namespaces, one bridge)"
tb_up
if resolved=$(timeout 10 "$NPLB" --config "$CONF" --check 2>/dev/null); then
    echo "services (conf/demo/services.yaml), as 'nplb --check' resolves them:"
    /usr/bin/python3 - "$resolved" <<'EOF' || true
import json, sys
m = json.loads(sys.argv[1])
vips = ", ".join(m.get("frontends", []))
for s in m.get("services", []):
    for p in s.get("ports", []):
        print(f"  {s['namespace']}/{s['name']} {s['type']} {p['protocol']} {p['port']}"
              f" -> nodePort {p['nodePort']} on {vips}")
EOF
fi

say "Starting nplb in namespace $TB_NS_LB on $TB_LB_IF (log: $WORK/nplb.log)"
ip netns exec "$TB_NS_LB" "$NPLB" --config "$CONF" >"$WORK/nplb.out" 2>"$WORK/nplb.log" &
NPLB_PID=$!
up=0
for _ in $(seq 1 40); do
    kill -0 "$NPLB_PID" 2>/dev/null || { echo "demo: nplb exited during start-up" >&2; exit 1; }
    if tb_client curl -s --max-time 1 -o /dev/null "http://$TB_VIP:$TB_HTTP_PORT/"; then up=1; break; fi
    sleep 0.25
done
[ $up = 1 ] || { echo "demo: nplb does not answer on $TB_VIP:$TB_HTTP_PORT" >&2; exit 1; }

say "$REQUESTS HTTP requests: curl -s http://$TB_VIP:$TB_HTTP_PORT/ from the client"
declare -A tally=()
failed=0
for i in $(seq 1 "$REQUESTS"); do
    if node=$(tb_client curl -s --max-time 3 "http://$TB_VIP:$TB_HTTP_PORT/"); then
        node=${node%%$'\n'*}
        printf '  request %2d -> %s\n' "$i" "$node"
        tally[$node]=$(( ${tally[$node]:-0} + 1 ))
    else
        printf '  request %2d -> no answer\n' "$i"
        failed=$((failed + 1))
    fi
done
echo "spread over nodes:"
for n in "${TB_NODES[@]}"; do
    c=${tally[$n]:-0}
    printf '  %s (%s) %2d %s\n' "$n" "${TB_NODE_ADDR[$n]}" "$c" "$(printf '%*s' "$c" '' | tr ' ' '#')"
done
[ $failed = 0 ] || echo "  ($failed request(s) unanswered)"

say "The reverse path"
tb_client curl -s -o /dev/null -D "$WORK/headers" \
    -w "the client talked to %{remote_ip}:%{remote_port} (VIP:nodePort)\n" "http://$TB_VIP:$TB_HTTP_PORT/"
seen=$(tr -d '\r' <"$WORK/headers" | sed -n 's/^X-Seen-From: //Ip')
echo "the node saw the connection come from $seen (SNAT address:port)"
echo "=> nplb rewrote client -> VIP:$TB_HTTP_PORT into $TB_SNAT:port -> node:$TB_HTTP_PORT, and each reply back, so the client sees VIP:nodePort as the source."

say "UDP through the VIP: one datagram to $TB_VIP:$TB_UDP_PORT, echoed by a node"
tb_client "$TB_PY" - "$TB_VIP" "$TB_UDP_PORT" <<'EOF' || echo "  no UDP echo"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))   # accepts replies from VIP:port only
for _ in range(3):
    s.send(b"hello over UDP")
    try:
        data, peer = s.recv(2048), s.getpeername()
        print(f"  sent 'hello over UDP', got '{data.decode()}' from {peer[0]}:{peer[1]}")
        break
    except socket.timeout:
        pass
else:
    sys.exit(1)
EOF

ctl() { ip netns exec "$TB_NS_LB" "$NPLBCTL" --request-timeout 2s "$@"; }
node_state() {  # NODE: up, down, draining or unknown
    ctl get nodes -o json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
print(next((n["state"] for n in json.load(sys.stdin)["nodes"] if n["name"] == sys.argv[1]), "?"))' "$1" || echo "?"
}
wait_state() {  # NODE STATE: bounded, 8 s
    for _ in $(seq 1 80); do [ "$(node_state "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}

say "Health checks: TCP probes every 500ms from the kernel address 198.51.100.3 (nplbctl get nodes)"
ctl get nodes -o wide || true

say "Failing n2: its server is killed"
disown -a 2>/dev/null || true   # no "Killed" job notice from the bed's servers
for pid in $(ip netns pids "$(tb_node_ns n2)"); do kill -KILL "$pid" 2>/dev/null || true; done
t0=$(date +%s%N)
if wait_state n2 down; then
    echo "nplb saw n2 down after $(( ($(date +%s%N) - t0) / 1000000 )) ms (2 failed probes); new connections avoid it:"
else
    echo "  (n2 not reported down within 8 s)"
fi
for i in $(seq 1 6); do
    if node=$(tb_client curl -s --max-time 3 "http://$TB_VIP:$TB_HTTP_PORT/"); then
        printf '  request %2d -> %s\n' "$i" "${node%%$'\n'*}"
    else
        printf '  request %2d -> no answer\n' "$i"; failed=$((failed + 1))
    fi
done
ctl get nodes -o wide || true

say "Restarting n2's server: it rejoins after 2 good probes"
ip netns exec "$(tb_node_ns n2)" setsid "$TB_PY" "$TB_DIR/node_server.py" --name n2 \
    --http-port "$TB_HTTP_PORT" --udp-port "$TB_UDP_PORT" </dev/null >>"$TB_STATE/n2.log" 2>&1 &
t0=$(date +%s%N)
if wait_state n2 up; then
    echo "n2 up again after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
else
    echo "  (n2 not back within 8 s)"
fi
ctl get nodes -o wide || true

say "Stopping nplb (SIGTERM): its final counters"
kill -TERM "$NPLB_PID"
for _ in $(seq 1 50); do kill -0 "$NPLB_PID" 2>/dev/null || break; sleep 0.1; done
# 127: already reaped by an earlier `wait` in this shell (its exit was clean then).
rc=0
wait "$NPLB_PID" 2>/dev/null || rc=$?
[ $rc = 0 ] || [ $rc = 127 ] || echo "demo: nplb exit status $rc" >&2
NPLB_PID=
/usr/bin/python3 -m json.tool "$WORK/nplb.out" || cat "$WORK/nplb.out"
say "Done: the test bed is removed on exit"
[ $failed = 0 ]
