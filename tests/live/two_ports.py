#!/usr/bin/python3
"""Live two-port test: the real nplb with a client-side port and a node-side port.

    two_ports.py BUILD/nplb [--keep-logs DIR]

Creates three network namespaces of its own (names carry this process's PID): nplb's,
with two veths (`clients`, `nodes`, both net_af_packet), a client-side peer namespace
and a node-side peer namespace, each holding the other end of one veth. No IP
addresses anywhere (the kernels stay out), IPv6 and offloads off. two_ports_peer.py
plays the gateway and the clients 198.18.0.0/15 behind it on the client link, the nodes
198.51.100.21-23 on the node link, and checks every frame for its link (see there).
This script then stops nplb with SIGTERM and checks the per-port counters of its final
JSON against what each link's peer sent and received. Everything is removed on exit,
failure and SIGTERM included. Needs root.

The node-side port is listed first in the config: an appliance that sends replies out
of its first port, or out of the port a packet came in by, fails here.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from livebed import (WEB_AND_ECHO_SERVICES, Namespaces, eal_args, keep_and_remove, kill_all,  # noqa: E402
                     make_log, prepare_link, raise_on_sigterm, read_counters, report_failures, sh,
                     start_nplb, stop_nplb, wait_ready, write_file)
PY = "/usr/bin/python3"

GATEWAY, GATEWAY_MAC = "203.0.113.254", "02:00:00:00:00:fe"
NODES = {"n1": ("198.51.100.21", "02:00:00:00:01:21"),
         "n2": ("198.51.100.22", "02:00:00:00:01:22"),
         "n3": ("198.51.100.23", "02:00:00:00:01:23")}
VIP, SNAT = "203.0.113.10", "198.51.100.2"
CLIENTS_ADDR, NODES_ADDR = "203.0.113.1", "198.51.100.1"
# The appliance's veth MACs, set by this script (net_af_packet takes the interface's).
CLIENTS_MAC, NODES_MAC = "02:00:00:00:aa:01", "02:00:00:00:bb:01"
TCP_NODE_PORT, UDP_NODE_PORT = 30080, 30053
N_TCP, N_UDP, UDP_ROUNDS = 20, 10, 3
# Periodic ARP refreshes after the peer stopped listening may add a few tx frames.
TX_SLACK = 10
UNRESOLVED_TOLERANCE = 3

CONFIG = """\
dataplane:
  eal: {eal}
  workers: 1
  ports:
    - name: nodes
      device: "net_af_packet1,iface={if_nodes}"
      addresses: ["{nodes_addr}/24"]
    - name: clients
      device: "net_af_packet0,iface={if_clients}"
      addresses: ["{clients_addr}/24"]
      gateway: {gw}
  flows:
    capacity: 4096
    timeouts: {{tcp_established: 300s, tcp_transitory: 30s, udp: 60s}}
forwarding:
  mode: nat
  frontends: ["{vip}"]
  snat: ["{snat}"]
cluster:
  nodes:
{nodes}
  manifests: ["services.yaml"]
"""

SERVICES = WEB_AND_ECHO_SERVICES


log = make_log("two_ports")


class Bed(Namespaces):
    """nplb's namespace with two veths, one peer namespace per link; close() removes all."""

    def __init__(self):
        super().__init__()
        tag = f"{os.getpid()}"
        self.ns_lb, self.ns_cli, self.ns_nod = f"nplb-2p-lb-{tag}", f"nplb-2p-cli-{tag}", f"nplb-2p-nod-{tag}"
        self.if_clients, self.if_nodes = "clients0", "nodes0"
        self.if_peer = "peer0"  # in each peer namespace

    def up(self):
        self.add(self.ns_lb, self.ns_cli, self.ns_nod)
        # The pairs are made inside the namespaces: nothing of ours sits in the root one.
        for lb_if, mac, peer_ns in ((self.if_clients, CLIENTS_MAC, self.ns_cli),
                                    (self.if_nodes, NODES_MAC, self.ns_nod)):
            sh("ip", "-n", self.ns_lb, "link", "add", lb_if, "address", mac, "type", "veth",
               "peer", "name", self.if_peer, "netns", peer_ns)
        for ns, dev in ((self.ns_lb, self.if_clients), (self.ns_lb, self.if_nodes),
                        (self.ns_cli, self.if_peer), (self.ns_nod, self.if_peer)):
            prepare_link(ns, dev)
        for dev, mac in ((self.if_clients, CLIENTS_MAC), (self.if_nodes, NODES_MAC)):
            got = json.loads(sh("ip", "-n", self.ns_lb, "-j", "link", "show", "dev", dev).stdout)[0]["address"]
            if got.lower() != mac:
                raise RuntimeError(f"{dev} has MAC {got}, expected {mac}")


def check_counters(c, rep, errors):
    """Per-port counters must match what each link's peer sent and received."""
    ports = c.get("ports", {})
    links = rep.get("links", {})
    for name in ("clients", "nodes"):
        p, link = ports.get(name), links.get(name, {})
        if p is None:
            errors.append(f"no port '{name}' in counters: {list(ports)}")
            continue
        sent, seen = link.get("out", 0), link.get("in", 0)
        if p.get("rx") != sent:
            errors.append(f"port {name} rx {p.get('rx')}, its link's peer sent it {sent} frames")
        if not seen <= p.get("tx", -1) <= seen + TX_SLACK:
            errors.append(f"port {name} tx {p.get('tx')}, its link's peer received {seen} frames")
    extra = set(ports) - {"clients", "nodes"}
    if extra:
        errors.append(f"counters name ports not configured: {sorted(extra)}")
    tcp, udp = rep.get("tcp", {}), rep.get("udp", {})
    flows = tcp.get("flows", 0) + udp.get("flows", 0)
    if c.get("flows_created") != flows:
        errors.append(f"flows_created {c.get('flows_created')}, expected {flows}")
    drops = {k: v for k, v in c.get("drops", {}).items() if v}
    unresolved = drops.pop("neighbor_unresolved", 0)
    if unresolved > UNRESOLVED_TOLERANCE:
        errors.append(f"neighbor_unresolved {unresolved} > {UNRESOLVED_TOLERANCE} despite warm-up")
    # Cross-link ARP probes (informational in the peer) may be counted as ignored ARP.
    drops.pop("arp_ignored", None)
    if drops:
        errors.append(f"unexpected drops {drops}")
    svc = c.get("services", {})
    for key, r in (("default/web:80", tcp), ("default/echo:53", udp)):
        got = svc.get(key, {}).get("packets")
        allowed = {r.get("client_packets"), r.get("client_packets", 0) + r.get("returned", 0)}
        if got not in allowed:
            errors.append(f"service {key} packets {got}, expected one of {sorted(x for x in allowed if x is not None)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nplb", help="path to the nplb binary")
    ap.add_argument("--keep-logs", help="copy config and logs to this folder")
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("needs root (network namespaces)")
        return 77  # meson: skipped
    nplb = os.path.abspath(args.nplb)
    if not os.access(nplb, os.X_OK):
        log(f"{nplb} is not executable")
        return 1

    raise_on_sigterm()  # meson's timeout sends SIGTERM: still clean up in finally

    t_start = time.monotonic()
    bed = Bed()
    work = tempfile.mkdtemp(prefix="nplb-2p-")
    proc = peer = None
    errors = []
    t_peer = 0.0
    try:
        bed.up()
        node_lines = "\n".join(f"    - {{name: {n}, address: {ip}}}" for n, (ip, _) in NODES.items())
        conf = os.path.join(work, "nplb.yaml")
        write_file(conf, CONFIG.format(eal=json.dumps(eal_args(single_cpu_on_first=True)), if_nodes=bed.if_nodes,
                                       if_clients=bed.if_clients, nodes_addr=NODES_ADDR, clients_addr=CLIENTS_ADDR,
                                       gw=GATEWAY, vip=VIP, snat=SNAT, nodes=node_lines))
        write_file(os.path.join(work, "services.yaml"), SERVICES.format(tcp=TCP_NODE_PORT, udp=UDP_NODE_PORT))

        peer_cmd = ["ip", "netns", "exec", bed.ns_cli, PY, os.path.join(HERE, "two_ports_peer.py"),
                    "--clients-iface", bed.if_peer, "--nodes-iface", bed.if_peer, "--nodes-netns", bed.ns_nod,
                    "--clients-mac", CLIENTS_MAC, "--nodes-mac", NODES_MAC,
                    "--gateway", GATEWAY, "--gateway-mac", GATEWAY_MAC, "--vip", VIP, "--snat", SNAT,
                    "--port-addr", CLIENTS_ADDR, NODES_ADDR,
                    "--tcp", str(N_TCP), "--udp", str(N_UDP), "--udp-rounds", str(UDP_ROUNDS),
                    "--tcp-port", str(TCP_NODE_PORT), "--udp-port", str(UDP_NODE_PORT),
                    "--ready-file", os.path.join(work, "ready")]
        for ip, mac in NODES.values():
            peer_cmd += ["--node", f"{ip}={mac}"]
        # The peer listens first, so that it sees (and answers) the appliance's start-up ARPs.
        t_peer = time.monotonic()
        peer_out, peer_err = os.path.join(work, "peer.out"), os.path.join(work, "peer.log")
        with open(peer_out, "w") as out, open(peer_err, "w") as err:
            peer = subprocess.Popen(peer_cmd, stdout=out, stderr=err)
        wait_ready(os.path.join(work, "ready"), peer, errors)

        out_path, err_path = os.path.join(work, "nplb.out"), os.path.join(work, "nplb.log")
        proc = start_nplb(bed.ns_lb, nplb, conf, out_path, err_path)
        log(f"nplb pid {proc.pid} in {bed.ns_lb}; peers in {bed.ns_cli}, {bed.ns_nod}; work dir {work}")
        rep = {}
        try:
            peer.wait(timeout=180)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait(timeout=5)
            errors.append("peer did not finish within 180 s")
        else:
            t_peer = time.monotonic() - t_peer
            sys.stderr.write(open(peer_err).read())
            text = open(peer_out).read()
            try:
                rep = json.loads(text)
            except json.JSONDecodeError:
                errors.append(f"peer printed no report (exit {peer.returncode}): {text[-500:]!r}")
            errors += [f"peer: {e}" for e in rep.get("errors", [])]
            log("peer report: " + json.dumps({k: v for k, v in rep.items() if k != "errors"}, sort_keys=True))

        stop_nplb(proc, errors, log)
        counters = read_counters(out_path, errors)
        if counters is not None:
            log("nplb counters: " + json.dumps({k: counters.get(k) for k in
                                                 ("ports", "flows_created", "services", "backends")},
                                                sort_keys=True))
            log("nplb drops: " + json.dumps({k: v for k, v in counters.get("drops", {}).items() if v}))
            if rep:
                check_counters(counters, rep, errors)
        if errors:
            log("nplb log tail:\n" + open(err_path).read()[-3000:])
    except (Exception, KeyboardInterrupt) as e:
        errors.append(f"harness: {e!r}")
    finally:
        kill_all(proc, peer)
        bed.close()
        keep_and_remove(work, args.keep_logs)

    took = time.monotonic() - t_start
    if report_failures(errors, took, log):
        return 1
    log(f"PASS: {N_TCP} TCP connections and {N_UDP} UDP flows across two ports, each link carrying only "
        f"its side, in {took:.1f} s (peer {t_peer:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
