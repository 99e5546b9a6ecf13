#!/usr/bin/python3
"""The far end of the live reverse-path test: one veth, many hosts.

Runs inside the peer network namespace (reverse_path.py starts it with
`ip netns exec`). On its veth it plays, at layer 2:
  - the gateway (clients are 198.18.0.0/15, behind it) and the clients;
  - the nodes, which answer ARP as real hosts do and answer what the appliance
    forwards as a node's kernel would: SYN -> SYN-ACK, data -> data, FIN -> FIN.

Every frame the appliance sends is checked: forwarded packets must be
translated (SNAT:port -> node:nodePort, TTL-1, valid checksums, seq/ack/flags/
payload intact), replies must reach the right client exactly reversed
(VIP:nodePort -> client:port). Flows must stick to one node and one SNAT port.

Prints one JSON report on stdout (what was sent, seen and wrong); logs on
stderr; exit status 0 when no error was found.
"""
import argparse
import json
import random
import socket
import sys
import threading
import time

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
BROADCAST = "ff:ff:ff:ff:ff:ff"
CLIENT_TTL = 64
NODE_TTL = 64
REFUSED_CLIENT, REFUSED_SPORT = "198.18.200.1", 12345  # the SYN to a port with no service


def log(msg):
    print(f"peer: {msg}", file=sys.stderr, flush=True)


def checksums_ok(ip_bytes):
    """Recompute the IPv4 header and L4 checksums from scratch (scapy) and compare."""
    pkt = IP(ip_bytes)
    problems = []
    fresh = pkt.copy()
    del fresh.chksum
    if IP(bytes(fresh)).chksum != pkt.chksum:
        problems.append("ip")
    for layer in (TCP, UDP):
        if layer in pkt:
            fresh = pkt.copy()
            del fresh[layer].chksum
            if IP(bytes(fresh))[layer].chksum != pkt[layer].chksum:
                problems.append(layer.__name__.lower())
    return problems


class Flow:
    """One client connection (TCP) or flow (UDP) as both of its ends see it."""

    def __init__(self, fid, proto, client, sport, node_port):
        self.fid = fid
        self.proto = proto
        self.client = client
        self.sport = sport
        self.node_port = node_port
        self.node = None          # node address the appliance chose
        self.snat_port = None     # SNAT source port the appliance chose
        self.to_node = []         # client packets sent, awaiting their forwarded copy (FIFO)
        self.to_client = []       # node packets sent, awaiting their translated copy (FIFO)
        self.forwarded = 0        # translated copies seen at the node side
        self.returned = 0         # translated copies seen at the client side
        # TCP sequence state
        self.client_isn = None
        self.client_seq = None
        self.node_isn = None
        self.node_seq = None
        self.got_synack = False
        self.got_data = False
        self.got_fin = False
        self.final_ack_forwarded = False
        self.udp_replies = 0


class Peer:
    def __init__(self, args):
        self.a = args
        self.iface = args.iface
        self.gw_ip, self.gw_mac = args.gateway, args.gateway_mac
        self.nodes = {ip: mac for ip, mac in (n.split("=") for n in args.node)}
        self.vip = args.vip
        self.snat = args.snat
        self.hosts = dict(self.nodes)
        self.hosts[self.gw_ip] = self.gw_mac
        self.lock = threading.Condition()
        self.errors = []
        self.appliance_mac = None
        self.arp_requests = {}     # target ip -> count of the appliance's who-has
        self.arp_replies = {}      # ip -> mac of the appliance's is-at
        self.unexpected = []
        self.flows = {}            # (proto, client, sport) -> Flow
        self.by_token = {}         # (proto, identifying value) -> Flow, to catch a flow moving node
        self.by_snat = {}          # (proto, node, snat_port) -> Flow
        self.frames_in = 0
        self.frames_out = 0
        self.stray_seen = []       # frames that answer the negative probes
        self.refusals = 0          # RSTs for the SYN to a port with no service
        self.no_service_port = args.no_service_port
        self.stop = False
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((self.iface, 0))
        self.sock.settimeout(0.1)
        self.send_lock = threading.Lock()

    # ---- helpers --------------------------------------------------------------------
    def err(self, msg):
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(msg)
        log("ERROR " + msg)

    def send(self, frame):
        data = bytes(frame)
        with self.send_lock:
            self.sock.send(data)
        self.frames_out += 1

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.1))
            return True

    # ---- receive loop ---------------------------------------------------------------
    def rx_loop(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError as e:
                self.err(f"recv failed: {e}")
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            self.frames_in += 1
            try:
                self.dispatch(data)
            except Exception as e:  # a bug here must fail the test, not hang it
                self.err(f"exception handling frame {data[:64].hex()}: {e!r}")
            with self.lock:
                self.lock.notify_all()

    def dispatch(self, data):
        eth = Ether(data)
        if ARP in eth:
            self.on_arp(eth)
            return
        if IP not in eth:
            self.note_unexpected(eth, "not ARP or IPv4")
            return
        if self.appliance_mac and eth.src != self.appliance_mac:
            self.note_unexpected(eth, f"source MAC {eth.src} is not the appliance's")
            return
        ip = eth[IP]
        bad = checksums_ok(bytes(ip))
        if bad:
            self.err(f"bad {'/'.join(bad)} checksum in {ip.summary()}")
        if ip.dst in self.nodes:
            self.on_forwarded(eth, ip)
        elif ip.dst.startswith("198.18.") or ip.dst.startswith("198.19."):
            self.on_returned(eth, ip)
        else:
            self.note_unexpected(eth, "IPv4 to neither a node nor a client")

    def note_unexpected(self, eth, why):
        with self.lock:
            self.unexpected.append(f"{why}: {eth.summary()}")
        log(f"unexpected frame ({why}): {eth.summary()}")

    def on_arp(self, eth):
        arp = eth[ARP]
        if arp.op == 1:  # who-has
            with self.lock:
                self.arp_requests[arp.pdst] = self.arp_requests.get(arp.pdst, 0) + 1
                if self.appliance_mac is None:
                    self.appliance_mac = arp.hwsrc
            mac = self.hosts.get(arp.pdst)
            if mac is not None:
                # RFC 826: answer to the asker, unicast.
                self.send(Ether(src=mac, dst=eth.src) /
                          ARP(op=2, hwsrc=mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc))
        elif arp.op == 2:  # is-at
            with self.lock:
                self.arp_replies[arp.psrc] = arp.hwsrc
                if self.appliance_mac is None:
                    self.appliance_mac = arp.hwsrc

    # ---- node side ------------------------------------------------------------------
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
                other = self.by_snat.get((proto, node, l4.sport))
                if other is not None and other is not flow:
                    self.err(f"SNAT port {l4.sport} toward {node} given to flows {other.fid} and {flow.fid}")
                self.by_snat[(proto, node, l4.sport)] = flow
            elif (flow.node, flow.snat_port) != (node, l4.sport):
                self.err(f"flow {flow.fid} moved: was {flow.node} via SNAT port {flow.snat_port}, "
                         f"now {node} via {l4.sport}")
            if not flow.to_node:
                self.err(f"flow {flow.fid}: forwarded packet the client never sent: {where}")
                return
            sent = flow.to_node.pop(0)
            flow.forwarded += 1
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

    def token_of(self, proto, l4, payload):
        """What identifies a flow without its addresses: the client ISN (TCP) or the payload tag (UDP)."""
        if proto == "tcp":
            # ISNs are (slot << 20) + small: every segment of a connection keeps the slot
            return ("tcp", l4.seq >> 20)
        return ("udp", payload.split(b" ")[0])

    def node_answers(self, flow, l4, expect):
        frame = (Ether(src=self.nodes[flow.node], dst=self.appliance_mac) /
                 IP(src=flow.node, dst=self.snat, ttl=NODE_TTL) / l4)
        with self.lock:
            flow.to_client.append(expect)
        self.send(frame)

    def node_answers_tcp(self, flow, tcp, payload):
        """What the node's kernel would answer."""
        f = tcp.flags
        if f.S:
            flow.node_isn = random.getrandbits(32)
            flow.node_seq = (flow.node_isn + 1) & 0xffffffff
            seg = TCP(sport=flow.node_port, dport=flow.snat_port, flags="SA",
                      seq=flow.node_isn, ack=(tcp.seq + 1) & 0xffffffff, window=65535)
            self.node_answers(flow, seg, (seg.seq, seg.ack, "SA", b""))
        elif payload:
            body = f"{flow.node} heard {len(payload)} bytes".encode()
            seg = TCP(sport=flow.node_port, dport=flow.snat_port, flags="PA", seq=flow.node_seq,
                      ack=(tcp.seq + len(payload)) & 0xffffffff, window=65535) / Raw(body)
            flow.node_seq = (flow.node_seq + len(body)) & 0xffffffff
            self.node_answers(flow, seg, (seg.seq, seg.ack, "PA", body))
        elif f.F:
            seg = TCP(sport=flow.node_port, dport=flow.snat_port, flags="FA", seq=flow.node_seq,
                      ack=(tcp.seq + 1) & 0xffffffff, window=65535)
            flow.node_seq = (flow.node_seq + 1) & 0xffffffff
            self.node_answers(flow, seg, (seg.seq, seg.ack, "FA", b""))
        elif flow.got_fin:
            with self.lock:
                flow.final_ack_forwarded = True

    # ---- client side ----------------------------------------------------------------
    def on_returned(self, eth, ip):
        proto = "tcp" if TCP in ip else "udp" if UDP in ip else None
        if proto is None:
            self.note_unexpected(eth, "returned packet neither TCP nor UDP")
            return
        l4 = ip[TCP] if proto == "tcp" else ip[UDP]
        payload = bytes(l4.payload)
        where = f"{proto} {ip.src}:{l4.sport} -> {ip.dst}:{l4.dport}"
        with self.lock:
            flow = self.flows.get((proto, ip.dst, l4.dport))
            if flow is None and (proto, ip.dst, l4.dport) == ("tcp", REFUSED_CLIENT, REFUSED_SPORT):
                # The SYN to a port with no service is refused with RST|ACK
                # (RFC 9293 3.10.7.1: ack = seq + 1), from the VIP and that port.
                ok = (ip.src == self.vip and l4.sport == self.no_service_port and str(l4.flags) == "RA"
                      and l4.ack == 2 and l4.seq == 0 and eth.dst == self.gw_mac and not checksums_ok(bytes(ip)))
                if not ok:
                    self.err(f"refusal of the no-service SYN is wrong: {where} flags {l4.flags} "
                             f"seq {l4.seq} ack {l4.ack}")
                self.refusals += 1
                return
            if flow is None:
                self.err(f"returned packet for no client flow: {where}")
                return
            if ip.src != self.vip or l4.sport != flow.node_port:
                self.err(f"flow {flow.fid}: returned packet not from VIP:nodePort "
                         f"{self.vip}:{flow.node_port}: {where}")
            if eth.dst != self.gw_mac:
                self.err(f"flow {flow.fid}: returned packet to MAC {eth.dst}, gateway is {self.gw_mac}")
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
                elif l4.flags.F:
                    flow.got_fin = True
                elif payload:
                    flow.got_data = True
            else:
                if payload != expect:
                    self.err(f"flow {flow.fid}: returned UDP payload {payload!r}, node sent {expect!r}")
                flow.udp_replies += 1

    def client_send(self, flow, l4, record):
        frame = Ether(src=self.gw_mac, dst=self.appliance_mac) / IP(src=flow.client, dst=self.vip,
                                                                      ttl=CLIENT_TTL) / l4
        with self.lock:
            flow.to_node.append(record)
        self.send(frame)

    def client_tcp(self, flow, flags, payload=b""):
        ack = flow.node_seq if flow.node_seq is not None else 0
        seg = TCP(sport=flow.sport, dport=flow.node_port, flags=flags, seq=flow.client_seq,
                  ack=ack if "A" in flags else 0, window=65535)
        if payload:
            seg = seg / Raw(payload)
        self.client_send(flow, seg, (seg.seq, seg.ack, str(seg.flags), payload))
        flow.client_seq = (flow.client_seq + len(payload) + (1 if ("S" in flags or "F" in flags) else 0)) \
            & 0xffffffff

    # ---- the scenario ---------------------------------------------------------------
    def arp_probe(self, asker_ip, asker_mac, target):
        for _ in range(3):
            self.send(Ether(src=asker_mac, dst=BROADCAST) /
                      ARP(op=1, hwsrc=asker_mac, psrc=asker_ip, hwdst="00:00:00:00:00:00", pdst=target))
            if self.wait_for(lambda: target in self.arp_replies, 1.0):
                return self.arp_replies[target]
        return None

    def run(self):
        a = self.a
        rx = threading.Thread(target=self.rx_loop, daemon=True)
        rx.start()
        t0 = time.monotonic()
        report = {"phases": {}}

        # 1. Warm-up: the appliance ARPs every node and the gateway at start; answer them.
        wanted = set(self.nodes) | {self.gw_ip}
        warm = self.wait_for(lambda: wanted <= set(self.arp_requests), a.warmup)
        report["phases"]["warmup_s"] = round(time.monotonic() - t0, 3)
        if not warm:
            self.err(f"appliance did not ARP for {sorted(wanted - set(self.arp_requests))} "
                     f"within {a.warmup}s (it ARPed for {sorted(self.arp_requests)})")

        # 2. It answers ARP for its VIP, SNAT and port addresses, with one MAC.
        for asker_ip, asker_mac, target in [(self.gw_ip, self.gw_mac, self.vip),
                                            (self.gw_ip, self.gw_mac, a.port_addr[0]),
                                            (list(self.nodes)[0], list(self.nodes.values())[0], self.snat),
                                            (list(self.nodes)[0], list(self.nodes.values())[0], a.port_addr[1])]:
            mac = self.arp_probe(asker_ip, asker_mac, target)
            if mac is None:
                self.err(f"no ARP reply for {target} (asked by {asker_ip})")
            elif self.appliance_mac and mac != self.appliance_mac:
                self.err(f"ARP reply for {target} gives {mac}, appliance uses {self.appliance_mac}")
            if self.appliance_mac is None and mac:
                self.appliance_mac = mac
        if self.appliance_mac is None:
            self.err("appliance MAC unknown: it neither ARPed nor answered ARP")
            return self.finish(report)
        # Every node asks for the SNAT address as a real node would before replying.
        for ip, mac in self.nodes.items():
            if ip != list(self.nodes)[0]:
                self.arp_replies.pop(self.snat, None)
                if self.arp_probe(ip, mac, self.snat) is None:
                    self.err(f"no ARP reply for SNAT {self.snat} asked by {ip}")
        report["phases"]["arp_s"] = round(time.monotonic() - t0, 3)

        # 3. TCP connections: handshake, request, response, FIN both ways.
        tcp = []
        isn_slots = random.sample(range(1, 4095), a.tcp)
        for i in range(a.tcp):
            client = f"198.18.{i // 200}.{1 + i % 200}"
            f = Flow(i, "tcp", client, random.randint(10000, 60000), a.tcp_port)
            f.client_isn = (isn_slots[i] << 20) + random.randrange(1 << 16)
            f.client_seq = f.client_isn
            self.flows[("tcp", client, f.sport)] = f
            self.by_token[("tcp", f.client_isn >> 20)] = f
            tcp.append(f)

        def phase(name, flows, send, done, timeout):
            for f in flows:
                send(f)
                time.sleep(a.pace)
            ok = self.wait_for(lambda: all(done(f) for f in flows), timeout)
            if not ok:
                missing = [f.fid for f in flows if not done(f)]
                self.err(f"{name}: {len(missing)} of {len(flows)} flows incomplete after {timeout}s: "
                         f"{missing[:10]}")
            report["phases"][name + "_s"] = round(time.monotonic() - t0, 3)
            return ok

        phase("tcp_syn", tcp, lambda f: self.client_tcp(f, "S"), lambda f: f.got_synack, a.timeout)
        ready = [f for f in tcp if f.got_synack]

        def ack_and_request(f):
            self.client_tcp(f, "A")
            self.client_tcp(f, "PA", f"GET /{f.fid} HTTP/1.0\r\n\r\n".encode())
        phase("tcp_data", ready, ack_and_request, lambda f: f.got_data, a.timeout)
        ready = [f for f in ready if f.got_data]
        phase("tcp_fin", ready, lambda f: self.client_tcp(f, "FA"), lambda f: f.got_fin, a.timeout)
        ready = [f for f in ready if f.got_fin]
        phase("tcp_last_ack", ready, lambda f: self.client_tcp(f, "A"),
              lambda f: f.final_ack_forwarded, a.timeout)

        # 4. UDP flows: several datagrams each, echoed by the node.
        udp = []
        for i in range(a.udp):
            client = f"198.19.{i // 200}.{1 + i % 200}"
            f = Flow(1000 + i, "udp", client, random.randint(10000, 60000), a.udp_port)
            self.flows[("udp", client, f.sport)] = f
            self.by_token[("udp", f"u{f.fid}".encode())] = f
            udp.append(f)
        for rnd in range(a.udp_rounds):
            def send_udp(f, rnd=rnd):
                p = f"u{f.fid} round {rnd}".encode()
                self.client_send(f, UDP(sport=f.sport, dport=f.node_port) / Raw(p), p)
            phase(f"udp_round{rnd}", udp, send_udp, lambda f, rnd=rnd: f.udp_replies > rnd, a.timeout)

        # 5. Negative probes: neither may come out of the appliance.
        n1, n1mac = list(self.nodes.items())[0]
        used = {k[2] for k in self.by_snat if k[1] == n1}
        stray_port = next(p for p in range(40000, 65000) if p not in used)
        self.send(Ether(src=n1mac, dst=self.appliance_mac) / IP(src=n1, dst=self.snat) /
                  UDP(sport=a.udp_port, dport=stray_port) / Raw(b"stray reply"))
        self.send(Ether(src=self.gw_mac, dst=self.appliance_mac) / IP(src=REFUSED_CLIENT, dst=self.vip) /
                  TCP(sport=REFUSED_SPORT, dport=a.no_service_port, flags="S", seq=1))
        report["negative_probes"] = {"no_reverse_flow": 1, "no_service": 1}
        time.sleep(a.settle)
        with self.lock:
            if self.refusals != 1:
                self.err(f"the SYN to a port with no service got {self.refusals} refusals, want one RST")

        # 6. Verdicts over all flows.
        with self.lock:
            for f in tcp + udp:
                if f.to_node:
                    self.err(f"flow {f.fid}: {len(f.to_node)} client packets never forwarded")
                if f.to_client:
                    self.err(f"flow {f.fid}: {len(f.to_client)} node packets never returned")
            if self.stray_seen:
                self.err(f"packets forwarded for no flow: {self.stray_seen[:5]}")
            if self.unexpected:
                self.err(f"{len(self.unexpected)} unexpected frames, first: {self.unexpected[:5]}")
        for name, flows in (("tcp", tcp), ("udp", udp)):
            per_node = {}
            for f in flows:
                if f.node:
                    per_node[f.node] = per_node.get(f.node, 0) + 1
            if len(per_node) < 2:
                self.err(f"{name}: flows used {len(per_node)} node(s), expected spread: {per_node}")
            report[name] = {
                "flows": len(flows),
                "complete": sum(1 for f in flows if not f.to_node and not f.to_client and f.forwarded),
                "per_node": per_node,
                "client_packets": sum(f.forwarded + len(f.to_node) for f in flows),
                "forwarded": sum(f.forwarded for f in flows),
                "returned": sum(f.returned for f in flows),
                "forwarded_per_node": {n: sum(f.forwarded for f in flows if f.node == n) for n in per_node},
                "returned_per_node": {n: sum(f.returned for f in flows if f.node == n) for n in per_node},
            }
        return self.finish(report)

    def finish(self, report):
        self.stop = True
        report.update({
            "appliance_mac": self.appliance_mac,
            "arp_requests_from_appliance": self.arp_requests,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "errors": self.errors,
            "ok": not self.errors,
        })
        return report


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--gateway", default="203.0.113.254")
    p.add_argument("--gateway-mac", default="02:00:00:00:00:fe")
    p.add_argument("--node", action="append", required=True, help="IP=MAC, repeatable")
    p.add_argument("--vip", default="203.0.113.10")
    p.add_argument("--snat", default="198.51.100.2")
    p.add_argument("--port-addr", nargs=2, default=["203.0.113.1", "198.51.100.1"])
    p.add_argument("--tcp", type=int, default=50)
    p.add_argument("--udp", type=int, default=20)
    p.add_argument("--udp-rounds", type=int, default=3)
    p.add_argument("--tcp-port", type=int, default=30080)
    p.add_argument("--udp-port", type=int, default=30053)
    p.add_argument("--no-service-port", type=int, default=30099)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds to wait for the appliance's ARPs")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--pace", type=float, default=0.002)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ready-file", help="created once the socket listens (start the appliance after)")
    a = p.parse_args()
    random.seed(a.seed)
    peer = Peer(a)
    if a.ready_file:
        open(a.ready_file, "w").close()
    report = peer.run()
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
