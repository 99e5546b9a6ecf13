#!/usr/bin/env bash
# failover: health checks and failover on the demo's bed (tests/e2e/testbed.sh) with the
# shipped config (conf/demo/nplb.yaml: probe tcp, interval 500ms, timeout 300ms, rise 2,
# fall 2), measured under a wrk run.
#
#   tests/e2e/failover.sh BUILD/nplb [BUILD/nplbctl]
#
# (a) n1's server is killed: new connections stop reaching n1, and `nplbctl get nodes`
#     shows it down, within interval x fall + timeout + 1 s (2.3 s); it is restarted and
#     rejoins (within interval x rise + timeout + 1 s, also 2.3 s) and answers again.
# (b) n2's link is taken down (its veth port on the bridge): the same bounds; back up.
# (c) `nplbctl drain n3`: no new connection reaches n3, a connection open on n3 keeps
#     working; `--undo` brings n3 back.
# Connections to the other nodes see zero errors. How a failed connection is attributed
# to a node: a prober in the client namespace opens a new connection every 15 ms from
# its own source port (one port per attempt, recorded with a timestamp and the answering
# node). A failed attempt does not say which node it went to, so once every node is up
# again (the same backends, the same Maglev table) its source port is replayed: the
# same 5-tuple goes to the same node. The replay is checked on ports that answered
# before the failure. Any failure attributed to a node other than the failed one fails
# the test. wrk runs over each phase too; its error counts are printed and bounded (see
# check_wrk). Exit 77 (skip) when not root.
set -euo pipefail

NPLB=$(readlink -f "${1:?usage: $0 BUILD/nplb [BUILD/nplbctl]}")
NPLBCTL=$(readlink -f "${2:-$(dirname "$NPLB")/nplbctl}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONF=$ROOT/conf/demo/nplb.yaml
PY=/usr/bin/python3
BOUND=2.3   # interval x fall + timeout + 1 s = 0.5 x 2 + 0.3 + 1 (and the same with rise)

[ "$(id -u)" = 0 ] || { echo "failover: needs root (network namespaces)" >&2; exit 77; }

export TB_PREFIX=nplbfo$$
# shellcheck source=testbed.sh
source "$HERE/testbed.sh"

WORK=$(mktemp -d /tmp/nplb-failover.XXXXXX)
NPLB_PID=
BG_PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$NPLB_PID" ] && kill -0 "$NPLB_PID" 2>/dev/null; then kill -KILL "$NPLB_PID" 2>/dev/null || true; fi
    if [ $rc != 0 ]; then
        echo "failover: FAILED; nplb log tail:" >&2
        tail -n 40 "$WORK/nplb.log" >&2 2>/dev/null || true
    fi
    tb_down
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "failover: $*"; }
fail() { echo "failover: FAIL $*" >&2; exit 1; }
now() { date +%s.%N; }
ctl() { ip netns exec "$TB_NS_LB" "$NPLBCTL" --request-timeout 2s "$@"; }
calc() { "$PY" -c "import sys; print(eval(sys.argv[1]))" "$1"; }
le() { "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }

# The prober (kernel TCP in the client namespace).
cat >"$WORK/prober.py" <<'EOF'
import os, socket, sys, threading, time
CLIENT, VIP, PORT = sys.argv[2], sys.argv[3], int(sys.argv[4])

def request(local_port, timeout, partial_until=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    try:
        s.bind((CLIENT, local_port))
        s.connect((VIP, PORT))
        s.sendall(b"GET / HTTP/1.0\r\n")
        if partial_until:
            partial_until(s)
        s.sendall(b"Host: vip\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
            return "ERR:status"
        return body.decode().strip() or "ERR:empty"
    except Exception as e:
        return "ERR:" + type(e).__name__
    finally:
        s.close()

mode = sys.argv[1]
if mode == "run":  # run OUT FIRST_PORT SECONDS: a new connection every 15 ms
    out, port, seconds = sys.argv[5], int(sys.argv[6]), float(sys.argv[7])
    f = open(out, "w", buffering=1)
    lock = threading.Lock()
    def one(p, t0):
        r = request(p, 3.5)  # a SYN dropped by a node's full listen queue is resent after 1 s
        with lock:
            f.write(f"{t0:.6f} {p} {r} {time.time():.6f}\n")
    end = time.time() + seconds
    threads = []
    while time.time() < end and not os.path.exists(out + ".stop"):
        t = threading.Thread(target=one, args=(port, time.time()), daemon=True)
        t.start(); threads.append(t)
        port += 1
        time.sleep(0.015)
    for t in threads:
        t.join(5)
elif mode == "replay":  # replay PORT...: one request per source port, sequentially
    for p in sys.argv[5:]:
        print(p, request(int(p), 2.0), flush=True)
elif mode == "hold":  # hold FIRST_PORT GO_FILE: 20 connections with half a request, finished after GO_FILE appears
    port, go = int(sys.argv[5]), sys.argv[6]
    socks = []
    for p in range(port, port + 20):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind((CLIENT, p))
        s.connect((VIP, PORT))
        s.sendall(b"GET / HTTP/1.0\r\n")
        socks.append(s)
    print("READY", flush=True)
    for _ in range(300):
        if os.path.exists(go):
            break
        time.sleep(0.1)
    for s in socks:
        try:
            s.sendall(b"Host: vip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            print("ANSWER", data.partition(b"\r\n\r\n")[2].decode().strip() or "ERR:empty", flush=True)
        except Exception as e:
            print("ANSWER", "ERR:" + type(e).__name__, flush=True)
EOF
probe() { ip netns exec "$TB_NS_CLIENT" "$PY" "$WORK/prober.py" "$1" "$TB_CLIENT_ADDR" "$TB_VIP" "$TB_HTTP_PORT" "${@:2}"; }

node_state() {  # NODE: its state in `nplbctl get nodes -o json`
    ctl get nodes -o json 2>/dev/null | "$PY" -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n["name"] == sys.argv[1]: print(n["state"], n["last_error"] or "-", sep="\t")' "$1" || echo "error"
}
wait_state() {  # NODE STATE MAX_SECONDS: prints the time at which it was seen
    local deadline s
    deadline=$(calc "$(now) + $3")
    while le "$(now)" "$deadline"; do
        s=$(node_state "$1")
        if [ "${s%%$'\t'*}" = "$2" ]; then now; return 0; fi
        sleep 0.05
    done
    return 1
}

start_server() {  # NODE: node_server.py in the node's namespace (as tb_up does)
    ip netns exec "$(tb_node_ns "$1")" setsid "$TB_PY" "$TB_DIR/node_server.py" --name "$1" \
        --http-port "$TB_HTTP_PORT" --udp-port "$TB_UDP_PORT" </dev/null >>"$TB_STATE/$1.log" 2>&1 &
    echo $! >"$TB_STATE/$1.pid"
}
kill_server() {  # NODE: every process in its namespace is its node_server
    local pid
    for pid in $(ip netns pids "$(tb_node_ns "$1")"); do kill -KILL "$pid"; done
}

# wrk: Debian's, else a bounded curl loop (8 in parallel) counting failures.
run_load() {  # OUT SECONDS
    if command -v wrk >/dev/null; then
        ip netns exec "$TB_NS_CLIENT" timeout $(($2 + 10)) wrk -t1 -c8 -d"$2"s "http://$TB_VIP:$TB_HTTP_PORT/" >"$1" 2>&1 || true
    else
        ip netns exec "$TB_NS_CLIENT" bash -c '
            end=$((SECONDS + $2)); for k in 1 2 3 4 5 6 7 8; do
                ( n=0; e=0; while [ $SECONDS -lt $end ]; do n=$((n+1)); curl -s -o /dev/null --max-time 2 "$3" || e=$((e+1)); done; echo "$n $e" ) &
            done; wait' _ "$1" "$2" "http://$TB_VIP:$TB_HTTP_PORT/" >"$1.curl"
        awk '{r+=$1; e+=$2} END {printf "%d requests in curl loop\n  Socket errors: connect %d, read 0, write 0, timeout 0\n", r, e}' "$1.curl" >"$1"
    fi
}

# Analysis of one phase: FAILED_NODE PROBES_FILE T_FAIL T_BACK REPLAY_FILE
# prints: stop_seconds others_errors failed_node_attempts_after rejoin_seconds
analyse() {
    "$PY" - "$@" <<'EOF'
import sys
node, probes, t_fail, t_back, replay = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
where = dict(l.split()[:2] for l in open(replay))
rows = []
for l in open(probes):
    t, p, r, _ = l.split()
    t = float(t)
    if r.startswith("ERR"):
        rows.append((t, p, where.get(p, "?"), r))
    else:
        rows.append((t, p, r, True))
rows.sort()
others = [(t, p, n, ok) for t, p, n, ok in rows if ok is not True and n != node]
reached = [t for t, p, n, ok in rows if n == node and t_fail <= t < t_back]
last = max(reached) if reached else t_fail
after = [t for t, p, n, ok in rows if t > last]
stop = (min(after) if after else last) - t_fail   # the first attempt after the last one that reached the node
back = [t for t, p, n, ok in rows if ok is True and n == node and t >= t_back]
rejoin = (min(back) - t_back) if back else -1
errs_node = sum(1 for t, p, n, ok in rows if ok is not True and n == node)
for t, p, n, r in others:
    print(f"# error on another node: {t - t_fail:.3f} s after the failure, port {p} -> {n}: {r}", file=sys.stderr)
print(f"{stop:.2f} {len(others)} {errs_node} {rejoin:.2f} {len(rows)}")
EOF
}

check_replay() {  # PROBES_FILE T_FAIL FIRST_PORT: replay 12 ports that answered before the failure
    local ports
    ports=$(awk -v t="$2" '$1 < t - 0.3 && $3 !~ /^ERR/ {print $2}' "$1" | tail -n 12)
    [ -n "$ports" ] || fail "no successful attempts before the failure to check the replay on"
    # shellcheck disable=SC2086
    probe replay $ports >"$WORK/sanity"
    awk 'NR==FNR {n[$2]=$3; next} {if (n[$1] != $2) bad++} END {exit bad > 0}' "$1" "$WORK/sanity" \
        || fail "replay of source ports does not reproduce the node choice: $(paste -sd' ' "$WORK/sanity")"
}

wrk_errors() {  # FILE: total socket errors (connect+read+write+timeout) and non-2xx
    "$PY" - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
e = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
n = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
r = re.search(r"(\d+) requests in", t)
print(e[0], e[1], e[2], e[3], int(n.group(1)) if n else 0, int(r.group(1)) if r else 0)
EOF
}

tb_up
ip netns exec "$TB_NS_LB" "$NPLB" --config "$CONF" >"$WORK/nplb.out" 2>"$WORK/nplb.log" &
NPLB_PID=$!

# All nodes up (bounded): nplbctl get nodes is the verdict.
up=0
for _ in $(seq 1 60); do
    kill -0 "$NPLB_PID" 2>/dev/null || fail "nplb exited during start-up"
    states=$(ctl get nodes -o json 2>/dev/null | "$PY" -c 'import json,sys; print(" ".join(n["state"] for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null || true)
    if [ "$states" = "up up up" ]; then up=1; break; fi
    sleep 0.25
done
[ $up = 1 ] || fail "nodes not up within 15 s: nodes '$states'"
tb_client curl -s --max-time 2 -o /dev/null "http://$TB_VIP:$TB_HTTP_PORT/" || fail "no answer through the VIP"
say "nplb up, all nodes probed up"
ctl get nodes -o wide

# One failure phase: NAME NODE FIRST_PORT FAIL_CMD BACK_CMD
SUMMARY=()
phase() {
    local name=$1 node=$2 port=$3 fail_cmd=$4 back_cmd=$5
    local probes=$WORK/$name.probes load=$WORK/$name.wrk t_fail t_down t_back t_up stop api_down api_up
    rm -f "$probes.stop"
    probe run "$probes" "$port" 20 &
    BG_PIDS+=($!); local prober=$!
    run_load "$load" 12 &
    BG_PIDS+=($!); local loader=$!
    sleep 2.5
    t_fail=$(now); $fail_cmd "$node"
    say "$name: $node failed at $t_fail ($fail_cmd)"
    t_down=$(wait_state "$node" down 6) || fail "$name: nplbctl does not show $node down within 6 s"
    ctl get nodes -o wide
    sleep 2.5
    t_back=$(now); $back_cmd "$node"
    say "$name: $node restored ($back_cmd)"
    t_up=$(wait_state "$node" up 6) || fail "$name: nplbctl does not show $node up within 6 s of its return"
    wait "$loader" || true
    sleep 1.5
    touch "$probes.stop"; wait "$prober" || true
    # Attribute failed attempts to nodes (everything is up again: same Maglev table).
    check_replay "$probes" "$t_fail"
    # shellcheck disable=SC2046
    probe replay $(awk '$3 ~ /^ERR/ {print $2}' "$probes") >"$WORK/$name.replay"
    read -r stop others node_errs rejoin attempts < <(analyse "$node" "$probes" "$t_fail" "$t_back" "$WORK/$name.replay")
    api_down=$(calc "round($t_down - $t_fail, 2)")
    api_up=$(calc "round($t_up - $t_back, 2)")
    read -r wc wr ww wt wn wreq < <(wrk_errors "$load")
    say "$name: $attempts new connections probed; new connections stop reaching $node after ${stop} s, nplbctl shows it down after ${api_down} s; $node_errs failed attempts (all on $node), $others on other nodes; rejoin: nplbctl up after ${api_up} s, first answer from $node after ${rejoin} s"
    say "$name: wrk $wreq requests, socket errors connect $wc read $wr write $ww timeout $wt, non-2xx $wn"
    [ "$others" = 0 ] || fail "$name: $others failed connections on nodes other than $node"
    le "$stop" "$BOUND" || fail "$name: new connections reached $node for $stop s > $BOUND s"
    le "$api_down" "$BOUND" || fail "$name: nplbctl showed $node down after $api_down s > $BOUND s"
    le "$api_up" "$BOUND" || fail "$name: nplbctl showed $node up again after $api_up s > $BOUND s"
    le 0 "$rejoin" || fail "$name: $node does not answer after its return"
    le "$rejoin" "$BOUND" || fail "$name: $node answered again only after $rejoin s > $BOUND s"
    [ "$wn" = 0 ] || fail "$name: wrk saw $wn non-2xx responses"
    check_wrk "$name" "$node" "$wc" "$wr" "$ww" "$wt"
    SUMMARY+=("$name: stop ${stop}s down ${api_down}s rejoin ${api_up}s/${rejoin}s")
}

# wrk cannot tell which node a failed connection was on. node_server answers HTTP/1.0 and
# closes every connection, so wrk reconnects for every request: while the dead node is
# still in the table each reconnect landing there is refused, which wrk counts as a
# connect or write error (its first write on the refused socket), so those are bounded
# by the detection window, not by -c. Read errors and timeouts are what connections open
# on the failed node see: at most the 8 of -c. The zero-error claim for the other nodes
# rests on the prober's attribution.
check_wrk() {  # NAME NODE CONNECT READ WRITE TIMEOUT
    local mid=$(($4 + $6))
    [ "$mid" -le 8 ] || fail "$1: wrk saw $mid read errors and timeouts, more than its 8 connections could have had open on $2"
}

phase kill n1 10000 kill_server start_server
link_down() { ip -n "$TB_NS_LAN" link set "$1" down; }
link_up() { ip -n "$TB_NS_LAN" link set "$1" up; }
phase link n2 14000 link_down link_up

# (c) drain n3: connections held open (some on n3) keep working, no new connection reaches n3.
GO=$WORK/hold.go
probe hold 18000 "$GO" >"$WORK/hold.out" 2>&1 &
BG_PIDS+=($!); holder=$!
for _ in $(seq 1 100); do grep -q READY "$WORK/hold.out" && break; sleep 0.1; done
grep -q READY "$WORK/hold.out" || fail "drain: connections not held open: $(cat "$WORK/hold.out")"
ctl drain n3
[ "$(node_state n3 | cut -f1)" = draining ] || fail "drain: n3 is '$(node_state n3)', not draining"
probe run "$WORK/drain.probes" 19000 1.5
n3=$(awk '$3 == "n3"' "$WORK/drain.probes" | wc -l)
errs=$(awk '$3 ~ /^ERR/' "$WORK/drain.probes" | wc -l)
total=$(wc -l <"$WORK/drain.probes")
[ "$n3" = 0 ] && [ "$errs" = 0 ] || fail "drain: of $total new connections $n3 reached n3, $errs failed"
touch "$GO"; wait "$holder" || fail "drain: the held connection: $(cat "$WORK/hold.out")"
held=$(grep -c "^ANSWER n[123]$" "$WORK/hold.out" || true)
held3=$(grep -c "^ANSWER n3$" "$WORK/hold.out" || true)
[ "$held" = 20 ] || fail "drain: of 20 connections held open over the drain $held answered: $(grep ANSWER "$WORK/hold.out" | paste -sd' ')"
[ "$held3" -gt 0 ] || fail "drain: none of the 20 held connections was on n3 (odds 1 in 3000): rerun"
say "drain: $total new connections avoided n3; 20 connections open across it completed, $held3 of them on n3"
ctl drain n3 --undo
probe run "$WORK/undo.probes" 20000 1.5
n3=$(awk '$3 == "n3"' "$WORK/undo.probes" | wc -l)
errs=$(awk '$3 ~ /^ERR/' "$WORK/undo.probes" | wc -l)
[ "$n3" -gt 0 ] && [ "$errs" = 0 ] || fail "drain --undo: $n3 connections reached n3, $errs failed"
say "drain --undo: n3 answers again ($n3 of $(wc -l <"$WORK/undo.probes"))"
SUMMARY+=("drain n3: ok")

kill -TERM "$NPLB_PID"
for _ in $(seq 1 50); do kill -0 "$NPLB_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NPLB_PID" || fail "nplb exit status $? after SIGTERM"
NPLB_PID=
say "PASS (bound ${BOUND} s) $(IFS=';'; echo "${SUMMARY[*]}")"
