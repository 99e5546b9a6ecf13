#!/usr/bin/python3
"""Live reload under traffic: the real nplb reloads 100+ times while flows run.

    reload_under_traffic.py BUILD/nplb [--reloads N] [--pipeline-above N] [--keep-logs DIR]

Two network namespaces of its own joined by a veth pair (no addresses, IPv6 and
offloads off). nplb runs in one (net_af_packet), and this script, from the other
(an AF_PACKET socket opened inside it), plays the gateway with clients
198.18.0.0/15 behind it and four nodes 198.51.100.21-24 (tests/live/peer.py's
Peer: ARP, node answers, translation checks).

Phase 1, traffic + reloads: 40 TCP connections exchange a data round every
~100 ms and 20 UDP flows send a datagram per round, while the script performs at
least --reloads reloads (SIGHUP, POST /v1/reload on the Unix-socket API, and file
rewrites picked up by inotify, in turn). The manifests alternate: an unrelated
service comes and goes, a second port of another service comes and goes, node n4
comes and goes. Asserted:
  - every packet sent on a flow whose backend stayed arrives translated exactly
    (SNAT:port -> node:nodePort one way, VIP:nodePort -> client back, TTL-1,
    checksums, seq/ack/flags/payload), none lost;
  - UDP flows on n4 move (once, to a live node) when n4 leaves, and their later
    datagrams arrive there; TCP connections on n4 keep going (on_backend_removed
    keep) with nothing lost;
  - after each reload /v1/services shows the variant written;
  - GET /v1/status generation advanced by >= --reloads;
  - a YAML syntax error: POST answers ok false with FILE:LINE:COL, generation and
    services unchanged, traffic unaffected;
  - one invalid Service update (nodePort out of range): ok true with the API
    server's message, the service keeps its previous version (a new connection to
    its nodePort works).
Phase 2, on_backend_removed: reset (config file rewritten, inotify reload): new
TCP connections, n4 removed: the client's next segment on an n4 connection gets
RST from VIP:nodePort (RFC 9293: seq = the segment's ack), nothing reaches n4,
drops.backend_removed counts them, the others keep going.

--pipeline-above sets dataplane.flows.pipeline_above: 0 runs every burst
through the worker's pipeline (bursts in flight across a reload finish under
the snapshot they were classified by; the worker drains them when it sees a
new one, and nplb frees the old one two grace periods later).

Prints reload timings (POST -> response, SIGHUP/file -> visible in /v1/services).
Cleans up on exit, failure and SIGTERM. Needs root (exit 77 otherwise).
"""
import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from livebed import (InNetns, PairBed, eal_args, keep_and_remove, kill_all, make_log,  # noqa: E402
                     raise_on_sigterm, report_failures, start_nplb)
from peer import Flow, Peer, checksums_ok  # noqa: E402  (scapy is imported there)
from scapy.layers.inet import IP, TCP, UDP, ICMP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

GATEWAY, GATEWAY_MAC = "203.0.113.254", "02:00:00:00:00:fe"
NODES = {"n1": ("198.51.100.21", "02:00:00:00:01:21"),
         "n2": ("198.51.100.22", "02:00:00:00:01:22"),
         "n3": ("198.51.100.23", "02:00:00:00:01:23"),
         "n4": ("198.51.100.24", "02:00:00:00:01:24")}
TOGGLED = "198.51.100.24"   # n4: comes and goes
VIP, SNAT = "203.0.113.10", "198.51.100.2"
PORT_ADDRS = ("203.0.113.1", "198.51.100.1")
TCP_PORT, UDP_PORT = 30080, 30053
OTHER_A, OTHER_B, EXTRA_PORT = 30100, 30101, 30200
N_TCP, N_UDP = 40, 20
CLIENT_TTL = NODE_TTL = 64
ROUND_WAIT = 3.0      # a round's packets must all be through within this

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
    pipeline_above: {pipeline_above}
    timeouts: {{tcp_established: 300s, tcp_transitory: 30s, udp: 120s}}
forwarding:
  mode: nat
  on_backend_removed: {on_removed}
  frontends: ["{vip}"]
  snat: ["{snat}"]
api:
  listen: "unix:{api}"
health:
  probe: none
cluster:
  manifests: ["services.yaml", "nodes.yaml"]
"""


def svc(name, ports):
    lines = [f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n"
             f"spec:\n  type: NodePort\n  selector: {{app: {name}}}\n  ports:"]
    for pname, proto, port, node_port in ports:
        lines.append(f"    - {{name: {pname}, protocol: {proto}, port: {port}, targetPort: {port}, "
                     f"nodePort: {node_port}}}")
    return "\n".join(lines) + "\n"


def services_yaml(extra, port_b, web_node_port=TCP_PORT):
    docs = [svc("web", [("http", "TCP", 80, web_node_port)]),
            svc("echo", [("dns", "UDP", 53, UDP_PORT)])]
    other = [("a", "TCP", 81, OTHER_A)]
    if port_b:
        other.append(("b", "UDP", 82, OTHER_B))
    docs.append(svc("other", other))
    if extra:
        docs.append(svc("extra", [("x", "TCP", 83, EXTRA_PORT)]))
    return "---\n".join(docs)


def nodes_yaml(with_n4):
    docs = []
    for name, (ip, _) in NODES.items():
        if ip == TOGGLED and not with_n4:
            continue
        docs.append(f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus:\n"
                    f"  addresses: [{{type: InternalIP, address: {ip}}}]\n"
                    f"  conditions: [{{type: Ready, status: \"True\"}}]\n")
    return "---\n".join(docs)


log = make_log("reload_under_traffic")


class Bed(PairBed):
    """Two namespaces and a veth pair, torn down by close() whatever happened."""

    def __init__(self, tag):
        super().__init__(f"nplb-rl-lb-{tag}", f"nplb-rl-peer-{tag}")


class Api:
    """HTTP/1.1 over the appliance's Unix socket."""

    def __init__(self, path):
        self.path = path

    def call(self, method, url, timeout=10.0):
        class Conn(http.client.HTTPConnection):
            def connect(inner):
                inner.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                inner.sock.settimeout(timeout)
                inner.sock.connect(self.path)
        c = Conn("nplb", timeout=timeout)
        try:
            c.request(method, url, body=b"" if method == "POST" else None)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"{method} {url}: HTTP {r.status}: {body[:300]!r}")
            return json.loads(body)
        finally:
            c.close()

    def get(self, url):
        return self.call("GET", url)

    def post(self, url):
        return self.call("POST", url)


class Traffic(Peer):
    """peer.py's Peer (ARP, node MACs, checks) with long-lived flows that may move by design."""

    def __init__(self, args):
        super().__init__(args)
        self.round_no = 0
        self.rst_seen = []      # (flow, seq, ack, flags) RSTs from the VIP
        self.moves = []         # (flow id, from node, to node, generation hint)
        self.generation_hint = 0

    # node side -------------------------------------------------------------------
    def on_forwarded(self, eth, ip):
        node = ip.dst
        proto = "tcp" if TCP in ip else "udp" if UDP in ip else None
        if proto is None:
            self.note_unexpected(eth, "forwarded packet neither TCP nor UDP")
            return
        l4 = ip[TCP] if proto == "tcp" else ip[UDP]
        payload = bytes(l4.payload)
        where = f"{proto} {ip.src}:{l4.sport} -> {node}:{l4.dport}"
        if ip.src != self.snat:
            self.err(f"forwarded packet not from SNAT {self.snat}: {where}")
        if eth.dst != self.nodes[node]:
            self.err(f"forwarded packet to MAC {eth.dst}, node {node} is {self.nodes[node]}: {where}")
        if ip.ttl != CLIENT_TTL - 1:
            self.err(f"forwarded TTL {ip.ttl}, expected {CLIENT_TTL - 1}: {where}")
        token = self.token_of(proto, l4, payload)
        with self.lock:
            flow = self.by_token.get(token)
            if flow is None:
                self.stray_seen.append(where)
                self.err(f"forwarded packet matches no client flow: {where}")
                return
            if l4.dport != flow.node_port:
                self.err(f"flow {flow.fid}: forwarded to port {l4.dport}, nodePort is {flow.node_port}")
            if flow.node is None:
                flow.node, flow.snat_port = node, l4.sport
                flow.first_node = node
            elif (flow.node, flow.snat_port) != (node, l4.sport):
                if proto == "udp" and flow.node == TOGGLED and node != TOGGLED and not flow.moved:
                    # n4 left: the flow moves to a live node, with a new SNAT port.
                    flow.moved = True
                    self.moves.append((flow.fid, flow.node, node, self.generation_hint))
                    flow.node, flow.snat_port = node, l4.sport
                else:
                    self.err(f"flow {flow.fid} moved: was {flow.node} via SNAT port {flow.snat_port}, "
                             f"now {node} via {l4.sport} (round {self.round_no})")
                    flow.node, flow.snat_port = node, l4.sport
            other = self.by_snat.get((proto, node, l4.sport))
            if other is not None and other is not flow:
                self.err(f"SNAT port {l4.sport} toward {node} given to flows {other.fid} and {flow.fid}")
            self.by_snat[(proto, node, l4.sport)] = flow
            if not flow.to_node:
                self.err(f"flow {flow.fid}: forwarded packet the client never sent (or sent twice): {where}")
                return
            sent = flow.to_node.pop(0)
            flow.forwarded += 1
            if flow.moved:
                flow.after_move += 1
        if proto == "tcp":
            got = (l4.seq, l4.ack, str(l4.flags), payload)
            if got != sent:
                self.err(f"flow {flow.fid}: forwarded TCP changed: sent {sent}, got {got}")
            self.node_answers_tcp(flow, l4, payload)
        else:
            if payload != sent:
                self.err(f"flow {flow.fid}: forwarded UDP payload changed: {sent!r} -> {payload!r}")
            self.node_answers(flow, UDP(sport=flow.node_port, dport=flow.snat_port) / Raw(b"echo " + payload),
                              b"echo " + payload)

    # client side -----------------------------------------------------------------
    def on_returned(self, eth, ip):
        proto = "tcp" if TCP in ip else "udp" if UDP in ip else "icmp" if ICMP in ip else None
        if proto not in ("tcp", "udp"):
            self.note_unexpected(eth, f"returned packet {proto}")
            return
        l4 = ip[TCP] if proto == "tcp" else ip[UDP]
        payload = bytes(l4.payload)
        where = f"{proto} {ip.src}:{l4.sport} -> {ip.dst}:{l4.dport}"
        with self.lock:
            flow = self.flows.get((proto, ip.dst, l4.dport))
            if flow is None:
                self.err(f"returned packet for no client flow: {where}")
                return
            if ip.src != self.vip or l4.sport != flow.node_port:
                self.err(f"flow {flow.fid}: returned packet not from VIP:nodePort {self.vip}:{flow.node_port}: {where}")
            if eth.dst != self.gw_mac:
                self.err(f"flow {flow.fid}: returned packet to MAC {eth.dst}, gateway is {self.gw_mac}")
            if proto == "tcp" and l4.flags.R:
                # A reset from the appliance itself (on_backend_removed: reset).
                self.rst_seen.append((flow, l4.seq, l4.ack, str(l4.flags), ip.ttl))
                flow.reset = True
                return
            if ip.ttl != NODE_TTL - 1:
                self.err(f"flow {flow.fid}: returned TTL {ip.ttl}, expected {NODE_TTL - 1}")
            if not flow.to_client:
                self.err(f"flow {flow.fid}: returned packet the node never sent: {where}")
                return
            expect = flow.to_client.pop(0)
            flow.returned += 1
            if proto == "tcp":
                got = (l4.seq, l4.ack, str(l4.flags), payload)
                if got != expect:
                    self.err(f"flow {flow.fid}: returned TCP changed: node sent {expect}, client got {got}")
                if l4.flags.S:
                    flow.got_synack = True
                elif payload:
                    flow.got_data = True
            else:
                if payload != expect:
                    self.err(f"flow {flow.fid}: returned UDP payload {payload!r}, node sent {expect!r}")
                flow.udp_replies += 1

    # flows -------------------------------------------------------------------------
    def new_flow(self, fid, proto, client, node_port):
        f = Flow(fid, proto, client, random.randint(10000, 60000), node_port)
        f.first_node = None
        f.moved = False
        f.after_move = 0
        f.reset = False
        f.lost = 0
        f.active = True
        with self.lock:
            self.flows[(proto, client, f.sport)] = f
            if proto == "tcp":
                slot = self.free_slots.pop()
                f.client_isn = (slot << 20) + random.randrange(1 << 16)
                f.client_seq = f.client_isn
                self.by_token[("tcp", slot)] = f
            else:
                self.by_token[("udp", f"u{fid}".encode())] = f
        return f

    def settle(self, flows, timeout):
        return self.wait_for(lambda: all(not f.to_node and not f.to_client for f in flows), timeout)

    def open_tcp(self, flows, timeout=5.0):
        for f in flows:
            self.client_tcp(f, "S")
        self.wait_for(lambda: all(f.got_synack for f in flows), timeout)
        for f in flows:
            if not f.got_synack:
                self.err(f"tcp flow {f.fid}: no SYN-ACK (nplb did not open the connection)")
            else:
                self.client_tcp(f, "A")
        self.settle(flows, timeout)

    def one_round(self, flows):
        """Every active flow sends one packet; all must be through within ROUND_WAIT. Returns lost count."""
        with self.lock:
            self.round_no += 1
            rnd = self.round_no
        for f in flows:
            if not f.active:
                continue
            if f.proto == "tcp":
                self.client_tcp(f, "PA", f"t{f.fid} round {rnd} data".encode())
            else:
                p = f"u{f.fid} round {rnd}".encode()
                self.client_send(f, UDP(sport=f.sport, dport=f.node_port) / Raw(p), p)
        ok = self.settle([f for f in flows if f.active], ROUND_WAIT)
        lost = 0
        if not ok:
            with self.lock:
                for f in flows:
                    if f.to_node or f.to_client:
                        n = len(f.to_node) + len(f.to_client)
                        lost += n
                        f.lost += n
                        self.err(f"round {rnd}: flow {f.fid} ({f.proto}, node {f.node}) lost "
                                 f"{len(f.to_node)} client and {len(f.to_client)} node packets "
                                 f"(generation ~{self.generation_hint})")
                        f.to_node.clear()
                        f.to_client.clear()
        return lost


def services_view(api):
    """{nodePort/proto: sorted backend addresses} as the API shows it."""
    view = {}
    for s in api.get("/v1/services")["services"]:
        for p in s["ports"]:
            view[f"{s['name']}:{p['nodePort']}/{p['protocol']}"] = sorted(b["address"] for b in p["backends"])
    return view


def expected_view(variant):
    extra, port_b, n4 = variant
    nodes = sorted(ip for ip, _ in NODES.values() if n4 or ip != TOGGLED)
    v = {f"web:{TCP_PORT}/TCP": nodes, f"echo:{UDP_PORT}/UDP": nodes, f"other:{OTHER_A}/TCP": nodes}
    if port_b:
        v[f"other:{OTHER_B}/UDP"] = nodes
    if extra:
        v[f"extra:{EXTRA_PORT}/TCP"] = nodes
    return v


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def stacks_of(pid):
    """Thread stacks of a hung process, for the report (gdb when installed, else the kernel's view)."""
    try:
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 12"],
                           capture_output=True, text=True, timeout=30)
        return "\n" + "\n".join(l for l in r.stdout.splitlines() if l.startswith(("#", "Thread")))
    except (OSError, subprocess.TimeoutExpired):
        pass
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            wchan = open(f"/proc/{pid}/task/{tid}/wchan").read().strip()
            stack = open(f"/proc/{pid}/task/{tid}/stack").read().replace("\n", " | ")[:300]
            out.append(f"{tid} {comm} wchan={wchan} {stack}")
        except OSError:
            pass
    return "; ".join(out)


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nplb")
    ap.add_argument("--reloads", type=int, default=105)
    ap.add_argument("--pipeline-above", type=int, default=8192)
    ap.add_argument("--keep-logs")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("needs root (network namespaces)")
        return 77
    nplb = os.path.abspath(args.nplb)
    random.seed(args.seed)

    raise_on_sigterm()

    t_start = time.monotonic()
    bed = Bed(os.getpid())
    work = tempfile.mkdtemp(prefix="nplb-rl-")
    proc = None
    peer = None
    errors = []
    timings = {"api": [], "signal": [], "inotify": []}
    report = {}
    try:
        bed.up()
        conf = os.path.join(work, "nplb.yaml")
        svc_path, nodes_path = os.path.join(work, "services.yaml"), os.path.join(work, "nodes.yaml")
        api_path = os.path.join(work, "api.sock")

        def write_config(on_removed):
            write_atomic(conf, CONFIG.format(eal=json.dumps(eal_args()), iface=bed.if_lb, pa0=PORT_ADDRS[0],
                                             pa1=PORT_ADDRS[1], gw=GATEWAY, vip=VIP, snat=SNAT, api=api_path,
                                             on_removed=on_removed, pipeline_above=args.pipeline_above))
        write_config("keep")
        variant = (True, True, True)   # extra service, other's port b, node n4
        write_atomic(svc_path, services_yaml(variant[0], variant[1]))
        write_atomic(nodes_path, nodes_yaml(variant[2]))

        pargs = argparse.Namespace(iface=bed.if_peer, gateway=GATEWAY, gateway_mac=GATEWAY_MAC,
                                   node=[f"{ip}={mac}" for ip, mac in NODES.values()], vip=VIP, snat=SNAT,
                                   port_addr=list(PORT_ADDRS), no_service_port=30099)
        with InNetns(bed.ns_peer):
            peer = Traffic(pargs)
        peer.free_slots = random.sample(range(1, 4095), 200)
        rx = threading.Thread(target=peer.rx_loop, daemon=True)
        rx.start()

        out_path, err_path = os.path.join(work, "nplb.out"), os.path.join(work, "nplb.log")
        proc = start_nplb(bed.ns_lb, nplb, conf, out_path, err_path)
        log(f"nplb pid {proc.pid} in {bed.ns_lb}; peer socket in {bed.ns_peer}; work dir {work}")
        api = Api(api_path)

        # Warm-up: nplb ARPs every node and the gateway; the peer answers; learn its MAC.
        wanted = {ip for ip, _ in NODES.values()} | {GATEWAY}
        if not peer.wait_for(lambda: wanted <= set(peer.arp_requests), 20):
            raise RuntimeError(f"nplb did not ARP for {sorted(wanted - set(peer.arp_requests))} in 20 s")
        if peer.arp_probe(GATEWAY, GATEWAY_MAC, VIP) is None:
            raise RuntimeError("no ARP reply for the VIP")
        for ip, mac in NODES.values():
            peer.arp_replies.pop(SNAT, None)
            if peer.arp_probe(ip, mac, SNAT) is None:
                raise RuntimeError(f"no ARP reply for the SNAT address asked by {ip}")
        for _ in range(50):
            try:
                st = api.get("/v1/status")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("control API not answering on " + api_path)
        gen0 = st["generation"]
        log(f"nplb up, generation {gen0}, {time.monotonic() - t_start:.1f} s")

        # Flows: 40 TCP connections, 20 UDP flows.
        tcp = [peer.new_flow(i, "tcp", f"198.18.{i // 200}.{1 + i % 200}", TCP_PORT) for i in range(N_TCP)]
        udp = [peer.new_flow(1000 + i, "udp", f"198.19.{i // 200}.{1 + i % 200}", UDP_PORT) for i in range(N_UDP)]
        peer.open_tcp(tcp)
        peer.one_round(tcp + udp)
        # Client ports are random, and the removal checks need flows of each
        # kind on n4 (none of 20 UDP flows lands there in ~0.3% of runs): a
        # few more flows, up to 8 times, while none does.
        for _ in range(8):
            more_tcp = [] if any(f.first_node == TOGGLED for f in tcp) else [
                peer.new_flow(len(tcp) + i, "tcp", f"198.18.{(len(tcp) + i) // 200}.{1 + (len(tcp) + i) % 200}",
                              TCP_PORT) for i in range(5)]
            more_udp = [] if any(f.first_node == TOGGLED for f in udp) else [
                peer.new_flow(1000 + len(udp) + i, "udp",
                              f"198.19.{(len(udp) + i) // 200}.{1 + (len(udp) + i) % 200}", UDP_PORT) for i in range(5)]
            if not more_tcp and not more_udp:
                break
            peer.open_tcp(more_tcp)
            peer.one_round(more_tcp + more_udp)
            tcp += more_tcp
            udp += more_udp
        on_n4 = {"tcp": [f for f in tcp if f.first_node == TOGGLED], "udp": [f for f in udp if f.first_node == TOGGLED]}
        log(f"flows up: TCP per node {dict((n, sum(1 for f in tcp if f.node == n)) for n in sorted({f.node for f in tcp if f.node}))}, "
            f"UDP on n4: {len(on_n4['udp'])}, TCP on n4: {len(on_n4['tcp'])}")
        if not on_n4["udp"] or not on_n4["tcp"]:
            errors.append(f"no flow landed on n4 (TCP {len(on_n4['tcp'])}, UDP {len(on_n4['udp'])}): "
                          "the node-removal check would prove nothing")

        # Traffic runs in its own thread while the reloads go on.
        stop_traffic = threading.Event()
        stats = {"rounds": 0, "lost": 0}
        main_flows = tcp + udp

        def traffic():
            while not stop_traffic.is_set():
                t = time.monotonic()
                stats["lost"] += peer.one_round(main_flows)
                stats["rounds"] += 1
                time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
        tt = threading.Thread(target=traffic, daemon=True)
        tt.start()

        def wait_view(want, gen_before, timeout=5.0):
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                st = api.get("/v1/status")
                if st["generation"] > gen_before:
                    last = services_view(api)
                    if last == want:
                        return st["generation"]
                time.sleep(0.01)
            raise AssertionError(f"reload not visible within {timeout}s: want {want}, /v1/services {last}")

        triggers = ("api", "signal", "inotify")
        gen = gen0
        for i in range(args.reloads):
            trigger = triggers[(i // 3) % 3]
            dim = i % 3
            v = list(variant)
            v[dim] = not v[dim]
            variant = tuple(v)
            if dim == 2:
                write_atomic(nodes_path, nodes_yaml(variant[2]))
            else:
                write_atomic(svc_path, services_yaml(variant[0], variant[1]))
            t0 = time.monotonic()
            peer.generation_hint = gen + 1
            if trigger == "api":
                r = api.post("/v1/reload")
                took = time.monotonic() - t0
                timings["api"].append(took)
                if not r.get("ok") or not r.get("applied", True) or r.get("errors"):
                    errors.append(f"reload {i} (api) answered {r}")
                if r.get("generation", 0) <= gen:
                    errors.append(f"reload {i} (api): generation {r.get('generation')} did not advance from {gen}")
                if not r.get("changes"):
                    errors.append(f"reload {i} (api): no change reported for a changed file: {r}")
            elif trigger == "signal":
                os.kill(proc.pid, signal.SIGHUP)
            try:
                gen_new = wait_view(expected_view(variant), gen)
            except AssertionError as e:
                errors.append(f"reload {i} ({trigger}): {e}")
                gen_new = api.get("/v1/status")["generation"]
            if trigger != "api":
                timings[trigger].append(time.monotonic() - t0)
            gen = gen_new
            if i == args.reloads // 3:
                # A YAML syntax error: the whole reload refused, nothing changes.
                good = open(svc_path).read()
                view_before = services_view(api)
                write_atomic(svc_path, good + "---\napiVersion: v1\nkind: Service\nmetadata: {name: broken\n  spec: [\n")
                r = api.post("/v1/reload")
                m = [e for e in r.get("errors", []) if re.match(re.escape(svc_path) + r":\d+:\d+: ", e)]
                if r.get("ok") is not False or r.get("applied") is not False or not m:
                    errors.append(f"syntax error: /v1/reload answered {r}, want ok false with {svc_path}:LINE:COL")
                if r.get("generation") != gen:
                    errors.append(f"syntax error: generation {r.get('generation')}, was {gen} (must not move)")
                time.sleep(0.5)   # the inotify reload of the same file is refused too
                st = api.get("/v1/status")
                if st["generation"] != gen or services_view(api) != view_before:
                    errors.append(f"syntax error changed the running config: generation {st['generation']} "
                                  f"(was {gen}), services {services_view(api)}")
                log(f"syntax error refused: {m[:1]} (last_reload ok={st['last_reload'].get('ok')})")
                write_atomic(svc_path, good)
                gen = api.post("/v1/reload")["generation"]
            if i == 2 * args.reloads // 3:
                # One invalid Service update: rejected alone, its previous version stays.
                good = open(svc_path).read()
                write_atomic(svc_path, services_yaml(variant[0], variant[1], web_node_port=40000))
                r = api.post("/v1/reload")
                msg = [e for e in r.get("errors", []) if "provided port is not in the valid range" in e]
                # applied: the rest of the files is in force; `ok` reports the rejection
                # (docs/api.md says ok true here; the binary answers false: reported, not asserted).
                report["invalid_update_answer"] = {k: r.get(k) for k in ("ok", "applied", "generation")}
                if r.get("applied") is not True or not msg or r.get("generation", 0) <= gen:
                    errors.append(f"invalid Service update: /v1/reload answered {r}, want applied true, a new "
                                  "generation and \"provided port is not in the valid range\"")
                view = services_view(api)
                if view.get(f"web:{TCP_PORT}/TCP") != expected_view(variant)[f"web:{TCP_PORT}/TCP"] or \
                        any(k.startswith("web:40000") for k in view):
                    errors.append(f"invalid Service update: web not kept at its previous version: {view}")
                # A new connection to the kept nodePort works.
                fresh = [peer.new_flow(500 + i, "tcp", "198.18.50.1", TCP_PORT)]
                peer.open_tcp(fresh)
                if not fresh[0].got_synack:
                    errors.append("invalid Service update: a new connection to web's kept nodePort failed")
                else:
                    log(f"invalid update rejected alone ({msg[:1]}); new connection to {TCP_PORT} answered by {fresh[0].node}")
                gen = r.get("generation", gen)
                write_atomic(svc_path, good)
                gen = api.post("/v1/reload")["generation"]
                time.sleep(0.3)  # let the inotify reload of these writes pass before the next step
                gen = api.get("/v1/status")["generation"]

        # Leave n4 out for a last stretch so moved UDP flows are exercised after their move.
        if variant[2]:
            variant = (variant[0], variant[1], False)
            write_atomic(nodes_path, nodes_yaml(False))
            gen = api.post("/v1/reload")["generation"]
        time.sleep(1.0)
        stop_traffic.set()
        tt.join(timeout=ROUND_WAIT + 2)
        st = api.get("/v1/status")
        stats_mid = api.get("/v1/stats")
        advanced = st["generation"] - gen0
        log(f"phase 1: {stats['rounds']} traffic rounds, generation {gen0} -> {st['generation']} (+{advanced}), "
            f"lost {stats['lost']}, UDP moves {len(peer.moves)}, flows_moved {stats_mid.get('flows_moved')}")
        if advanced < args.reloads:
            errors.append(f"generation advanced by {advanced}, want >= {args.reloads}")
        if stats["rounds"] < 20:
            errors.append(f"only {stats['rounds']} traffic rounds ran during the reloads")
        moved_ids = {m[0] for m in peer.moves}
        for f in on_n4["udp"]:
            if not f.moved:
                errors.append(f"UDP flow {f.fid} on n4 never moved off it (now {f.node})")
            elif f.node not in {ip for ip, _ in NODES.values()} - {TOGGLED} or f.after_move == 0:
                errors.append(f"UDP flow {f.fid}: moved to {f.node}, {f.after_move} datagrams after the move")
        stray_moves = moved_ids - {f.fid for f in on_n4["udp"]}
        if stray_moves:
            errors.append(f"UDP flows not on n4 moved: {sorted(stray_moves)}")
        for f in on_n4["tcp"]:
            if f.node != TOGGLED or f.lost or f.reset:
                errors.append(f"TCP flow {f.fid} on n4 did not keep going: node {f.node}, lost {f.lost}, reset {f.reset}")
        if stats_mid.get("flows_moved", 0) < len(on_n4["udp"]):
            errors.append(f"flows_moved {stats_mid.get('flows_moved')} < {len(on_n4['udp'])} UDP flows moved")
        if peer.rst_seen:
            errors.append(f"phase 1: {len(peer.rst_seen)} RSTs reached clients (on_backend_removed keep): "
                          f"{[(x[0].fid, x[3]) for x in peer.rst_seen[:5]]}")
        stayed_lost = sum(f.lost for f in main_flows if not f.moved)
        if stayed_lost:
            errors.append(f"{stayed_lost} packets lost on flows whose backend stayed")
        report["phase1"] = {"rounds": stats["rounds"], "generation_advanced": advanced, "lost": stats["lost"],
                            "udp_moved": len(peer.moves), "tcp_kept_on_n4": len(on_n4["tcp"]),
                            "packets_forwarded": sum(f.forwarded for f in main_flows),
                            "packets_returned": sum(f.returned for f in main_flows)}
        for f in main_flows:
            f.active = False

        # Phase 2: on_backend_removed: reset (the config file rewritten: an inotify reload).
        write_atomic(nodes_path, nodes_yaml(True))
        gen_before = api.get("/v1/status")["generation"]
        write_config("reset")
        variant = (variant[0], variant[1], True)
        wait_view(expected_view(variant), gen_before)
        time.sleep(0.5)              # the watcher's reload of these writes has passed
        r = api.post("/v1/reload")   # and this one reads the files as written, whatever was coalesced
        report["config_change_reported"] = r.get("changes")
        if not r.get("ok") or r.get("restart_required"):
            errors.append(f"phase 2: switching on_backend_removed to reset answered {r}")
        reset_flows = [peer.new_flow(2000 + i, "tcp", f"198.18.60.{1 + i}", TCP_PORT) for i in range(24)]
        peer.open_tcp(reset_flows)
        peer.one_round(reset_flows)
        r4 = [f for f in reset_flows if f.node == TOGGLED]
        rest = [f for f in reset_flows if f.node and f.node != TOGGLED]
        drops_before = api.get("/v1/stats")["drops"].get("backend_removed", 0)
        write_atomic(nodes_path, nodes_yaml(False))
        r = api.post("/v1/reload")
        if not r.get("ok"):
            errors.append(f"phase 2: removing n4 answered {r}")
        for f in r4:
            f.active = False
        # Next segment on every connection: the n4 ones must be reset, the rest go through.
        acks = {}
        for f in r4:
            acks[f.fid] = f.node_seq
            with peer.lock:
                fwd_before = f.forwarded
            f.fwd_before = fwd_before
            seg = TCP(sport=f.sport, dport=f.node_port, flags="PA", seq=f.client_seq, ack=f.node_seq,
                      window=65535) / Raw(b"after removal")
            peer.send(Ether(src=GATEWAY_MAC, dst=peer.appliance_mac) / IP(src=f.client, dst=VIP, ttl=CLIENT_TTL) / seg)
        lost2 = peer.one_round(rest)
        peer.wait_for(lambda: all(f.reset for f in r4), 3.0)
        time.sleep(0.3)
        drops_after = api.get("/v1/stats")["drops"].get("backend_removed", 0)
        for f in r4:
            rs = [x for x in peer.rst_seen if x[0] is f]
            if len(rs) != 1:
                errors.append(f"reset mode: connection {f.fid} on n4 got {len(rs)} RSTs, want 1")
                continue
            _, seq, ack, flags, _ = rs[0]
            if flags != "R" or seq != acks[f.fid]:
                errors.append(f"reset mode: connection {f.fid}: RST flags {flags} seq {seq}, want R seq {acks[f.fid]} "
                              "(RFC 9293: the segment's ack)")
            if f.forwarded != f.fwd_before:
                errors.append(f"reset mode: connection {f.fid}: its segment still reached n4")
        if drops_after - drops_before != len(r4):
            errors.append(f"reset mode: drops.backend_removed +{drops_after - drops_before}, want +{len(r4)}")
        if lost2:
            errors.append(f"reset mode: {lost2} packets lost on connections whose node stayed")
        if not r4:
            errors.append("reset mode: no new connection landed on n4")
        log(f"phase 2 (reset): {len(r4)} connections on n4 reset, {len(rest)} others went on, "
            f"backend_removed +{drops_after - drops_before}")
        report["phase2"] = {"reset": len(r4), "kept": len(rest)}

        peer.stop = True
        # Triggers seen in nplb's log.
        text = open(err_path).read()
        publish_ms = [(int(g), float(ms), t) for t, g, ms in
                      re.findall(r"reload \((\w+)\) published generation (\d+) in ([0-9.]+) ms", text)]
        report["publish_ms"] = {"n": len(publish_ms),
                                "median": statistics.median(x[1] for x in publish_ms) if publish_ms else None,
                                "max": max((x[1] for x in publish_ms), default=None)}
        slow = [x for x in publish_ms if x[1] >= 1000]
        if slow:
            errors.append(f"reloads that took >= 1 s to publish (generation, ms, trigger): {slow}")
        for t in triggers:
            n = len(re.findall(rf"reload \({t}\) published generation", text))
            report.setdefault("published_by_trigger", {})[t] = n
            if n == 0:
                errors.append(f"no reload published by trigger {t} in nplb's log")
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            errors.append(f"nplb did not exit within 10 s of SIGTERM (it printed its counters: "
                          f"{os.path.getsize(out_path)} bytes on stdout); stacks: {stacks_of(proc.pid)}")
            proc.kill()
            proc.wait(timeout=5)
        report["stop_s"] = round(time.monotonic() - t_term, 3)
        counters = json.loads(open(out_path).read())
        drops = {k: v for k, v in counters["drops"].items() if v}
        report["final_drops"] = drops
        report["flows_moved"] = counters.get("flows_moved")
        allowed = {"backend_removed", "neighbor_unresolved", "no_reverse_flow"}
        if set(drops) - allowed:
            errors.append(f"unexpected drops in the final counters: {drops}")
        if peer.errors:
            errors += [f"peer: {e}" for e in peer.errors[:30]]
        if peer.unexpected:
            errors.append(f"{len(peer.unexpected)} unexpected frames: {peer.unexpected[:3]}")
    except (Exception, KeyboardInterrupt) as e:
        errors.append(f"harness: {e!r}")
    finally:
        if peer is not None:
            peer.stop = True
        kill_all(proc)
        if errors:
            try:
                log("nplb log tail:\n" + open(os.path.join(work, "nplb.log")).read()[-3000:])
            except OSError:
                pass
        bed.close()
        keep_and_remove(work, args.keep_logs)

    for t, v in timings.items():
        if v:
            log(f"reload latency ({t}, {'POST -> response' if t == 'api' else 'trigger -> visible in /v1/services'}): "
                f"n={len(v)} median {statistics.median(v) * 1000:.1f} ms, p90 {pct(v, 0.9) * 1000:.1f} ms, "
                f"max {max(v) * 1000:.1f} ms")
    log("report: " + json.dumps(report, sort_keys=True))
    took = time.monotonic() - t_start
    if report_failures(errors, took, log):
        return 1
    log(f"PASS in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
