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
    print(f"reverse_path: {msg}", file=sys.stderr, flush=True)


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def eal_args():
    base = ["--no-huge", "--no-shconf", "-m", "512", "--log-level", "*:error"]
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))[:2]
        return base + ["-l", f"{cpus[0]},{cpus[1]}"]
    return base + ["--lcores", "0@0,1@0"]


class Bed:
    """Two namespaces and a veth pair, torn down by close() whatever happened."""

    def __init__(self):
        tag = f"{os.getpid()}"
        self.ns_lb, self.ns_peer = f"nplb-rp-lb-{tag}", f"nplb-rp-peer-{tag}"
        self.if_lb, self.if_peer = "lb0", "peer0"
        self.made = []

    def up(self):
        for ns in (self.ns_lb, self.ns_peer):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        # Create the pair inside the namespaces: nothing of ours ever sits in the root one.
        sh("ip", "-n", self.ns_lb, "link", "add", self.if_lb, "type", "veth",
           "peer", "name", self.if_peer, "netns", self.ns_peer)
        for ns, dev in ((self.ns_lb, self.if_lb), (self.ns_peer, self.if_peer)):
            # No IPv6 (no router solicitations or MLD reports on the link), no addresses.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1",
               check=False)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               check=False)
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
               "gro", "off")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "rx", "off", check=False)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self):
        for ns in self.made:
            # Processes still in the namespace are ours (nplb, peer): end them by pid.
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


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

    def on_term(signum, frame):  # meson's timeout sends SIGTERM: still clean up in finally
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    t_start = time.monotonic()
    bed = Bed()
    work = tempfile.mkdtemp(prefix="nplb-rp-")
    proc = None
    errors = []
    try:
        bed.up()
        node_lines = "\n".join(f"    - {{name: {n}, address: {ip}}}" for n, (ip, _) in NODES.items())
        conf = os.path.join(work, "nplb.yaml")
        with open(conf, "w") as f:
            f.write(CONFIG.format(eal=json.dumps(eal_args()), iface=bed.if_lb, pa0=PORT_ADDRS[0],
                                  pa1=PORT_ADDRS[1], gw=GATEWAY, vip=VIP, snat=SNAT, nodes=node_lines))
        with open(os.path.join(work, "services.yaml"), "w") as f:
            f.write(SERVICES.format(tcp=TCP_NODE_PORT, udp=UDP_NODE_PORT))

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
        with open(out_path) as f:
            out_text = f.read()
        try:
            counters = json.loads(out_text)
        except json.JSONDecodeError:
            counters = None
            errors.append(f"nplb stdout is not one JSON object: {out_text[-500:]!r}")
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
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
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
    log(f"PASS: {N_TCP} TCP connections and {N_UDP} UDP flows translated both ways "
        f"in {took:.1f} s (peer {t_peer:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
