#!/usr/bin/python3
"""Live reverse-path test: the real nplb on one end of a veth pair, scapy on the other.

    reverse_path.py BUILD/nplb [--keep-logs DIR]

Creates two network namespaces of its own (names carry this process's PID) joined by a
veth pair with no IP addresses (the kernel stays out), IPv6 and offloads off. nplb runs
in one (net_af_packet on its veth), tests/live/peer.py in the other, playing the
gateway with clients 198.18.0.0/15 behind it and three nodes 198.51.100.21-23 that
answer as real hosts. peer.py checks every frame (translation, reverse path,
stickiness, spread); this script then stops nplb with SIGTERM and checks its final
counters JSON against what the peer saw. Everything is removed on exit, failure
included. Needs root.
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
from livebed import (WEB_AND_ECHO_SERVICES, PairBed, eal_args, keep_and_remove, kill_all,  # noqa: E402
                     make_log, raise_on_sigterm, read_counters, report_failures, start_nplb, stop_nplb,
                     wait_ready, write_file)
PY = "/usr/bin/python3"

GATEWAY, GATEWAY_MAC = "203.0.113.254", "02:00:00:00:00:fe"
NODES = {"n1": ("198.51.100.21", "02:00:00:00:01:21"),
         "n2": ("198.51.100.22", "02:00:00:00:01:22"),
         "n3": ("198.51.100.23", "02:00:00:00:01:23")}
VIP, SNAT = "203.0.113.10", "198.51.100.2"
PORT_ADDRS = ("203.0.113.1", "198.51.100.1")
TCP_NODE_PORT, UDP_NODE_PORT, NO_SERVICE_PORT = 30080, 30053, 30099
N_TCP, N_UDP, UDP_ROUNDS = 50, 20, 3
# At most this many neighbor_unresolved drops are tolerated (a packet racing the
# appliance's first ARP); the peer warms up first, so 0 is what we expect.
UNRESOLVED_TOLERANCE = 3

CONFIG = """\
dataplane:
  eal: {eal}
  workers: 1
  ports:
    - name: lan
      device: "net_af_packet0,iface={iface}"
      addresses: ["{pa0}/24", "{pa1}/24"]
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


log = make_log("reverse_path")


class Bed(PairBed):
    """Two namespaces and a veth pair, torn down by close() whatever happened."""

    def __init__(self):
        tag = f"{os.getpid()}"
        super().__init__(f"nplb-rp-lb-{tag}", f"nplb-rp-peer-{tag}")


def check_counters(c, rep, errors):
    """The final counters JSON must agree with what the peer saw."""
    tcp, udp = rep.get("tcp", {}), rep.get("udp", {})
    flows = tcp.get("flows", 0) + udp.get("flows", 0)
    if c.get("flows_created") != flows:
        errors.append(f"flows_created {c.get('flows_created')}, expected {flows}")
    drops = {k: v for k, v in c.get("drops", {}).items() if v}
    expected = dict(rep.get("negative_probes", {}))
    unresolved = drops.pop("neighbor_unresolved", 0)
    if unresolved > UNRESOLVED_TOLERANCE:
        errors.append(f"neighbor_unresolved {unresolved} > {UNRESOLVED_TOLERANCE} despite warm-up")
    if drops != expected:
        errors.append(f"drops {drops} (besides neighbor_unresolved), expected exactly {expected}")
    lan = c.get("ports", {}).get("lan")
    if lan is None:
        errors.append(f"no port 'lan' in counters: {list(c.get('ports', {}))}")
    else:
        # The peer's link is the port's only traffic: IPv6 is off, the kernels stay silent.
        sent, seen = rep.get("frames_out", 0), rep.get("frames_in", 0)
        if lan.get("rx") != sent:
            errors.append(f"port lan rx {lan.get('rx')}, the peer sent it {sent} frames")
        # tx may exceed what the peer saw by the appliance's periodic ARPs after the peer left.
        if not seen <= lan.get("tx", 0) <= seen + 10:
            errors.append(f"port lan tx {lan.get('tx')}, the peer received {seen} frames")
        # Port drops: the packets this port received and dropped (the sum of the reasons,
        # one port here), or only what the NIC missed (0): either reading agrees.
        total = sum(c.get("drops", {}).values())
        if lan.get("dropped") not in (0, total):
            errors.append(f"port lan dropped {lan.get('dropped')}, drop reasons sum to {total}")
    svc = c.get("services", {})
    for key, r in ((f"default/web:80", tcp), ("default/echo:53", udp)):
        got = svc.get(key, {}).get("packets")
        # Counted as client packets, or as packets of both directions: either reading agrees.
        allowed = {r.get("client_packets"), r.get("client_packets", 0) + r.get("returned", 0)}
        if got not in allowed:
            errors.append(f"service {key} packets {got}, expected one of {sorted(x for x in allowed if x is not None)}")
    be = c.get("backends", {})
    for name, r, port in (("tcp", tcp, TCP_NODE_PORT), ("udp", udp, UDP_NODE_PORT)):
        for node, fwd in r.get("forwarded_per_node", {}).items():
            got = be.get(f"{node}:{port}", {}).get("packets")
            allowed = {fwd, fwd + r.get("returned_per_node", {}).get(node, 0)}
            if got not in allowed:
                errors.append(f"backend {node}:{port} packets {got}, expected one of {sorted(allowed)}")


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
    work = tempfile.mkdtemp(prefix="nplb-rp-")
    proc = None
    errors = []
    try:
        bed.up()
        node_lines = "\n".join(f"    - {{name: {n}, address: {ip}}}" for n, (ip, _) in NODES.items())
        conf = os.path.join(work, "nplb.yaml")
        write_file(conf, CONFIG.format(eal=json.dumps(eal_args()), iface=bed.if_lb, pa0=PORT_ADDRS[0],
                                       pa1=PORT_ADDRS[1], gw=GATEWAY, vip=VIP, snat=SNAT, nodes=node_lines))
        write_file(os.path.join(work, "services.yaml"), SERVICES.format(tcp=TCP_NODE_PORT, udp=UDP_NODE_PORT))

        peer_cmd = ["ip", "netns", "exec", bed.ns_peer, PY, os.path.join(HERE, "peer.py"),
                    "--iface", bed.if_peer, "--gateway", GATEWAY, "--gateway-mac", GATEWAY_MAC,
                    "--vip", VIP, "--snat", SNAT, "--port-addr", *PORT_ADDRS,
                    "--tcp", str(N_TCP), "--udp", str(N_UDP), "--udp-rounds", str(UDP_ROUNDS),
                    "--tcp-port", str(TCP_NODE_PORT), "--udp-port", str(UDP_NODE_PORT),
                    "--no-service-port", str(NO_SERVICE_PORT), "--ready-file", os.path.join(work, "ready")]
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
        log(f"nplb pid {proc.pid} in {bed.ns_lb}; peer in {bed.ns_peer}; work dir {work}")
        try:
            peer.wait(timeout=180)
            pr = subprocess.CompletedProcess(peer_cmd, peer.returncode, open(peer_out).read(),
                                             open(peer_err).read())
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait(timeout=5)
            errors.append("peer did not finish within 180 s")
            pr = None
        t_peer = time.monotonic() - t_peer
        if pr is not None:
            sys.stderr.write(pr.stderr)
            try:
                rep = json.loads(pr.stdout)
            except json.JSONDecodeError:
                rep = {}
                errors.append(f"peer printed no report (exit {pr.returncode}): {pr.stdout[-500:]!r}")
            errors += [f"peer: {e}" for e in rep.get("errors", [])]
            log("peer report: " + json.dumps({k: v for k, v in rep.items() if k != "errors"}, sort_keys=True))
        else:
            rep = {}

        # Stop nplb the way an operator does and read its final counters.
        stop_nplb(proc, errors, log)
        counters = read_counters(out_path, errors)
        if counters is not None:
            log("nplb counters: " + json.dumps(counters, sort_keys=True))
            if rep:
                check_counters(counters, rep, errors)
        if errors:
            with open(err_path) as f:
                tail = f.read()[-3000:]
            log("nplb log tail:\n" + tail)
    except (Exception, KeyboardInterrupt) as e:
        errors.append(f"harness: {e!r}")
    finally:
        kill_all(proc)
        bed.close()
        keep_and_remove(work, args.keep_logs)

    took = time.monotonic() - t_start
    if report_failures(errors, took, log):
        return 1
    log(f"PASS: {N_TCP} TCP connections and {N_UDP} UDP flows translated both ways "
        f"in {took:.1f} s (peer {t_peer:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
