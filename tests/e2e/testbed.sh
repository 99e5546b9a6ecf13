#!/usr/bin/env bash
# The namespace test bed: real kernel hosts around nplb, one-armed on a bridge.
#
#   tests/e2e/testbed.sh up      build it (tears down an old one of the same prefix first)
#   tests/e2e/testbed.sh down    remove it: namespaces, processes in them, state (idempotent)
#   tests/e2e/testbed.sh status  list what exists
#   source tests/e2e/testbed.sh  only defines the TB_* variables and tb_* functions
#
#   namespace            interface  address            role
#   $TB_PREFIX-lan       br0 + ports                   the link: a Linux bridge
#   $TB_PREFIX-client    eth0       203.0.113.100/24   curl; reaches the VIP on-link
#   $TB_PREFIX-n1..n3    eth0       198.51.100.21-23   node_server.py: HTTP :30080, UDP echo :30053
#   $TB_PREFIX-lb        nplb0      (none)             nplb: net_af_packet0,iface=nplb0
#
# nplb (conf/demo/nplb.yaml) answers ARP for the VIP 203.0.113.10, the SNAT address
# 198.51.100.2 and its port addresses 203.0.113.1, 198.51.100.1; the kernel of its
# namespace has no address and stays out. Checksum and segmentation offloads are off on
# every veth: with them on, kernel-sent frames reach af_packet with partial checksums
# and above the MTU. IPv6 is off in every namespace (no router solicitations on the link).
# Addresses exist only inside these namespaces.
#
# Set TB_PREFIX before sourcing or running to keep several beds apart (the demo uses
# the default; tests use their own).

TB_PREFIX=${TB_PREFIX:-nplbdemo}
TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_STATE=${TB_STATE:-/run/nplb-testbed/$TB_PREFIX}
TB_NS_LAN=$TB_PREFIX-lan
TB_NS_CLIENT=$TB_PREFIX-client
TB_NS_LB=$TB_PREFIX-lb
TB_LB_IF=nplb0
TB_CLIENT_ADDR=203.0.113.100
TB_VIP=203.0.113.10
TB_SNAT=198.51.100.2
TB_HTTP_PORT=30080
TB_UDP_PORT=30053
TB_NODES=(n1 n2 n3)
declare -A TB_NODE_ADDR=([n1]=198.51.100.21 [n2]=198.51.100.22 [n3]=198.51.100.23)
TB_PY=/usr/bin/python3

tb_node_ns() { echo "$TB_PREFIX-$1"; }
tb_all_ns() {
    echo "$TB_NS_CLIENT" "$TB_NS_LB"
    local n; for n in "${TB_NODES[@]}"; do tb_node_ns "$n"; done
    echo "$TB_NS_LAN"
}
tb_client() { ip netns exec "$TB_NS_CLIENT" "$@"; }
tb_lb() { ip netns exec "$TB_NS_LB" "$@"; }  # in the background, $! is a subshell: use ip netns exec itself
tb_node() { local n=$1; shift; ip netns exec "$(tb_node_ns "$n")" "$@"; }

tb_log() { echo "testbed: $*" >&2; }

tb_quiet_link() {  # ns dev: offloads off, no IPv6, up
    local ns=$1 dev=$2
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" 2>/dev/null || true
    ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null
    ip netns exec "$ns" ethtool -K "$dev" rx off >/dev/null 2>&1 || true
    ip -n "$ns" link set "$dev" up
}

tb_new_ns() {
    local ns=$1
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
}

tb_attach() {  # ns ifname-inside port-name-on-bridge: a veth from the bridge to the host
    local ns=$1 inner=$2 port=$3
    ip -n "$TB_NS_LAN" link add "$port" type veth peer name "$inner" netns "$ns"
    ip -n "$TB_NS_LAN" link set "$port" master br0
    tb_quiet_link "$TB_NS_LAN" "$port"
    tb_quiet_link "$ns" "$inner"
}

tb_down() {
    local ns pid
    for ns in $(tb_all_ns); do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        # Everything still running in our namespaces was started by this bed or its user
        # (node servers, nplb): end it by pid before the namespace goes.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local left=0
        for ns in $(tb_all_ns); do
            ip netns list 2>/dev/null | grep -qw "^$ns" || continue
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ $left = 0 ] && break
        sleep 0.2
    done
    for ns in $(tb_all_ns); do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$TB_STATE"
}

tb_up() {
    tb_down
    mkdir -p "$TB_STATE"
    local ns
    for ns in $(tb_all_ns); do tb_new_ns "$ns"; done

    ip -n "$TB_NS_LAN" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$TB_NS_LAN" link set br0 up

    tb_attach "$TB_NS_CLIENT" eth0 client
    ip -n "$TB_NS_CLIENT" addr add "$TB_CLIENT_ADDR/24" dev eth0

    tb_attach "$TB_NS_LB" "$TB_LB_IF" lb

    local n
    for n in "${TB_NODES[@]}"; do
        ns=$(tb_node_ns "$n")
        tb_attach "$ns" eth0 "$n"
        ip -n "$ns" addr add "${TB_NODE_ADDR[$n]}/24" dev eth0
        ip netns exec "$ns" setsid "$TB_PY" "$TB_DIR/node_server.py" --name "$n" \
            --http-port "$TB_HTTP_PORT" --udp-port "$TB_UDP_PORT" \
            </dev/null >"$TB_STATE/$n.log" 2>&1 &
        echo $! >"$TB_STATE/$n.pid"
    done

    # Each server answers on its own address before we say the bed is up (bounded).
    for n in "${TB_NODES[@]}"; do
        local ok=0
        for _ in $(seq 1 50); do
            if tb_node "$n" curl -s --max-time 1 -o /dev/null "http://${TB_NODE_ADDR[$n]}:$TB_HTTP_PORT/"; then
                ok=1; break
            fi
            sleep 0.1
        done
        if [ $ok = 0 ]; then
            tb_log "node $n's server does not answer; log:"; cat "$TB_STATE/$n.log" >&2
            return 1
        fi
    done
    tb_log "up: client $TB_CLIENT_ADDR, VIP $TB_VIP, nodes ${TB_NODE_ADDR[*]}, nplb on $TB_LB_IF in $TB_NS_LB"
}

tb_status() {
    local ns
    for ns in $(tb_all_ns); do
        if ip netns list 2>/dev/null | grep -qw "^$ns"; then
            echo "$ns: $(ip -n "$ns" -br addr | tr '\n' ';') pids: $(ip netns pids "$ns" | tr '\n' ' ')"
        else
            echo "$ns: absent"
        fi
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        up) tb_up ;;
        down) tb_down ;;
        status) tb_status ;;
        *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
fi
