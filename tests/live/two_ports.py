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
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
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

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports:
    - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: {tcp}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  type: NodePort
  selector: {{app: echo}}
  ports:
    - {{name: dns, protocol: UDP, port: 53, targetPort: 5353, nodePort: {udp}}}
"""


def log(msg):
    print(f"two_ports: {msg}", file=sys.stderr, flush=True)


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def eal_args():
    base = ["--no-huge", "--no-shconf", "-m", "512", "--log-level", "*:error"]
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return base + ["-l", f"{cpus[0]},{cpus[1]}"]
    return base + ["--lcores", f"0@{cpus[0]},1@{cpus[0]}"]


class Bed:
    """nplb's namespace with two veths, one peer namespace per link; close() removes all."""

    def __init__(self):
        tag = f"{os.getpid()}"
        self.ns_lb, self.ns_cli, self.ns_nod = f"nplb-2p-lb-{tag}", f"nplb-2p-cli-{tag}", f"nplb-2p-nod-{tag}"
        self.if_clients, self.if_nodes = "clients0", "nodes0"
        self.if_peer = "peer0"  # in each peer namespace
        self.made = []

    def up(self):
        for ns in (self.ns_lb, self.ns_cli, self.ns_nod):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        # The pairs are made inside the namespaces: nothing of ours sits in the root one.
        for lb_if, mac, peer_ns in ((self.if_clients, CLIENTS_MAC, self.ns_cli),
                                    (self.if_nodes, NODES_MAC, self.ns_nod)):
            sh("ip", "-n", self.ns_lb, "link", "add", lb_if, "address", mac, "type", "veth",
               "peer", "name", self.if_peer, "netns", peer_ns)
        for ns, dev in ((self.ns_lb, self.if_clients), (self.ns_lb, self.if_nodes),
                        (self.ns_cli, self.if_peer), (self.ns_nod, self.if_peer)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
               "gro", "off")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "rx", "off", check=False)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for dev, mac in ((self.if_clients, CLIENTS_MAC), (self.if_nodes, NODES_MAC)):
            got = json.loads(sh("ip", "-n", self.ns_lb, "-j", "link", "show", "dev", dev).stdout)[0]["address"]
            if got.lower() != mac:
                raise RuntimeError(f"{dev} has MAC {got}, expected {mac}")

    def close(self):
        for ns in self.made:
            # Processes still in the namespace are ours (nplb, peer): end them by pid.
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


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

    def on_term(signum, frame):  # meson's timeout sends SIGTERM: still clean up in finally
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

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
        with open(conf, "w") as f:
            f.write(CONFIG.format(eal=json.dumps(eal_args()), if_nodes=bed.if_nodes, if_clients=bed.if_clients,
                                  nodes_addr=NODES_ADDR, clients_addr=CLIENTS_ADDR, gw=GATEWAY, vip=VIP,
                                  snat=SNAT, nodes=node_lines))
        with open(os.path.join(work, "services.yaml"), "w") as f:
            f.write(SERVICES.format(tcp=TCP_NODE_PORT, udp=UDP_NODE_PORT))

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
        for _ in range(100):
            if os.path.exists(os.path.join(work, "ready")) or peer.poll() is not None:
                break
            time.sleep(0.1)
        else:
            errors.append("peer not ready within 10 s")

        out_path, err_path = os.path.join(work, "nplb.out"), os.path.join(work, "nplb.log")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(["ip", "netns", "exec", bed.ns_lb, nplb, "--config", conf],
                                    stdout=out, stderr=err)
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

        if proc.poll() is not None:
            errors.append(f"nplb exited early with status {proc.returncode}")
        else:
            proc.send_signal(signal.SIGTERM)
            t_stop = time.monotonic()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                errors.append("nplb did not stop within 10 s of SIGTERM")
                proc.kill()
                proc.wait(timeout=5)
            t_stop = time.monotonic() - t_stop
            log(f"nplb stopped {t_stop:.2f} s after SIGTERM, status {proc.returncode}")
            if t_stop > 1.5:
                errors.append(f"nplb took {t_stop:.2f} s to stop after SIGTERM (spec: within a second)")
            if proc.returncode != 0:
                errors.append(f"nplb exit status {proc.returncode} after SIGTERM")
        out_text = open(out_path).read()
        try:
            counters = json.loads(out_text)
        except json.JSONDecodeError:
            counters = None
            errors.append(f"nplb stdout is not one JSON object: {out_text[-500:]!r}")
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
        for p in (proc, peer):
            if p is not None and p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        bed.close()
        if args.keep_logs:
            subprocess.run(["cp", "-r", work + "/.", args.keep_logs], check=False)
        subprocess.run(["rm", "-rf", work], check=False)

    took = time.monotonic() - t_start
    if errors:
        for e in errors:
            log("FAIL " + e)
        log(f"FAILED with {len(errors)} error(s) in {took:.1f} s")
        return 1
    log(f"PASS: {N_TCP} TCP connections and {N_UDP} UDP flows across two ports, each link carrying only "
        f"its side, in {took:.1f} s (peer {t_peer:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
