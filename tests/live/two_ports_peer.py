#!/usr/bin/python3
"""The far ends of the live two-port test: a client-side link and a node-side link.

Started by two_ports.py inside the client-side peer namespace (`ip netns exec`); it opens
its node-side socket in the node-side namespace given by --nodes-netns (setns), then
plays, at layer 2:
  - on the client link: the gateway (clients 198.18.0.0/15 behind it) and the clients;
  - on the node link: the nodes, answering ARP and what is forwarded to them as a
    node's kernel would (peer.py's logic, reused).

Besides peer.py's per-packet checks (translation, checksums, TTL, stickiness, node
MAC, gateway MAC, seq/ack/payload intact), every frame is checked for its link:
forwarded packets only on the node link, replies to clients only on the client link,
each with the source MAC of the appliance's port on that link; the appliance ARPs on
each link only for that link's hosts, from that link's port address; it answers ARP on
each link for that link's addresses with that port's MAC.

Prints one JSON report on stdout; exit status 0 when no error was found.
"""
import argparse
import ctypes
import json
import os
import random
import socket
import sys
import threading
import time

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import BROADCAST, ETH_P_ALL, PACKET_OUTGOING, Flow, Peer, checksums_ok  # noqa: E402

CLONE_NEWNET = 0x40000000
CLIENTS, NODES = "clients", "nodes"


def log(msg):
    print(f"two_ports_peer: {msg}", file=sys.stderr, flush=True)


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


def raw_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((iface, 0))
    s.settimeout(0.1)
    return s


class TwoPortPeer(Peer):
    """peer.Peer with one socket per link; flow logic inherited, link logic here."""

    def __init__(self, args):
        # Peer.__init__ opens a socket on args.iface: give it the client link's, then
        # replace it with our two sockets.
        args.iface = args.clients_iface
        super().__init__(args)
        self.sock.close()
        own_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            self.socks = {CLIENTS: raw_socket(args.clients_iface)}
            setns(f"/run/netns/{args.nodes_netns}")
            self.socks[NODES] = raw_socket(args.nodes_iface)
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(own_ns, CLONE_NEWNET)
            os.close(own_ns)
        self.sock = None
        self.port_macs = {CLIENTS: args.clients_mac.lower(), NODES: args.nodes_mac.lower()}
        self.port_addr = {CLIENTS: args.port_addr[0], NODES: args.port_addr[1]}
        self.link_hosts = {CLIENTS: {self.gw_ip: self.gw_mac}, NODES: dict(self.nodes)}
        self.frames = {l: {"in": 0, "out": 0} for l in (CLIENTS, NODES)}
        self.arp_req = {l: {} for l in (CLIENTS, NODES)}     # link -> target -> count
        self.arp_rep = {l: {} for l in (CLIENTS, NODES)}     # link -> ip -> mac
        self.cross_arp = {}
        self.here = threading.local()
        # Both links carry the appliance: every frame must come from the link's port MAC.
        self.appliance_mac = None

    # ---- links ------------------------------------------------------------------------
    def link_of_src(self, mac):
        mac = mac.lower()
        if mac == self.gw_mac:
            return CLIENTS
        if mac in self.nodes.values():
            return NODES
        raise ValueError(f"no link for source MAC {mac}")

    def send(self, frame):
        data = bytes(frame)
        link = self.link_of_src(Ether(data).src)
        with self.send_lock:
            self.socks[link].send(data)
            self.frames[link]["out"] += 1
            self.frames_out += 1

    def rx_loop_link(self, link):
        self.here.link = link
        sock = self.socks[link]
        while not self.stop:
            try:
                data, addr = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError as e:
                self.err(f"{link}: recv failed: {e}")
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            with self.send_lock:
                self.frames[link]["in"] += 1
                self.frames_in += 1
            try:
                self.dispatch(data)
            except Exception as e:  # a bug here must fail the test, not hang it
                self.err(f"{link}: exception handling frame {data[:64].hex()}: {e!r}")
            with self.lock:
                self.lock.notify_all()

    def dispatch(self, data):
        link = self.here.link
        eth = Ether(data)
        if eth.src.lower() != self.port_macs[link]:
            self.note_unexpected(eth, f"on the {link} link from {eth.src}, not the {link} port's "
                                      f"MAC {self.port_macs[link]}")
            return
        if ARP in eth:
            self.on_arp_link(link, eth)
            return
        if IP not in eth:
            self.note_unexpected(eth, f"on the {link} link: not ARP or IPv4")
            return
        ip = eth[IP]
        bad = checksums_ok(bytes(ip))
        if bad:
            self.err(f"{link}: bad {'/'.join(bad)} checksum in {ip.summary()}")
        if ip.dst in self.nodes:
            if link != NODES:
                self.err(f"packet to node {ip.dst} left by the {link} link: {ip.summary()}")
                return
            self.on_forwarded(eth, ip)
        elif ip.dst.startswith("198.18.") or ip.dst.startswith("198.19."):
            if link != CLIENTS:
                self.err(f"packet to client {ip.dst} left by the {link} link: {ip.summary()}")
                return
            self.on_returned(eth, ip)
        else:
            self.note_unexpected(eth, f"on the {link} link: IPv4 to neither a node nor a client")

    def on_arp_link(self, link, eth):
        arp = eth[ARP]
        if arp.op == 1:  # who-has from the appliance
            with self.lock:
                self.arp_req[link][arp.pdst] = self.arp_req[link].get(arp.pdst, 0) + 1
            if arp.pdst not in self.link_hosts[link]:
                self.err(f"appliance asked on the {link} link for {arp.pdst}, not a host of that link")
                return
            if arp.psrc != self.port_addr[link]:
                self.err(f"appliance's ARP on the {link} link for {arp.pdst} says it is {arp.psrc}, "
                         f"expected the port address {self.port_addr[link]}")
            mac = self.link_hosts[link][arp.pdst]
            self.send(Ether(src=mac, dst=eth.src) /
                      ARP(op=2, hwsrc=mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc))
        elif arp.op == 2:
            with self.lock:
                self.arp_rep[link][arp.psrc] = arp.hwsrc.lower()

    def arp_probe_link(self, link, asker_ip, asker_mac, target, tries=3):
        self.arp_rep[link].pop(target, None)
        for _ in range(tries):
            self.send(Ether(src=asker_mac, dst=BROADCAST) /
                      ARP(op=1, hwsrc=asker_mac, psrc=asker_ip, hwdst="00:00:00:00:00:00", pdst=target))
            if self.wait_for(lambda: target in self.arp_rep[link], 1.0):
                return self.arp_rep[link][target]
        return None

    def client_send(self, flow, l4, record):
        frame = Ether(src=self.gw_mac, dst=self.port_macs[CLIENTS]) / IP(src=flow.client, dst=self.vip,
                                                                           ttl=64) / l4
        with self.lock:
            flow.to_node.append(record)
        self.send(frame)

    def node_answers(self, flow, l4, expect):
        frame = (Ether(src=self.nodes[flow.node], dst=self.port_macs[NODES]) /
                 IP(src=flow.node, dst=self.snat, ttl=64) / l4)
        with self.lock:
            flow.to_client.append(expect)
        self.send(frame)

    # ---- the scenario -----------------------------------------------------------------
    def run(self):
        a = self.a
        for link in (CLIENTS, NODES):
            threading.Thread(target=self.rx_loop_link, args=(link,), daemon=True).start()
        t0 = time.monotonic()
        report = {"phases": {}}

        # 1. Warm-up: the appliance resolves the gateway on the client link, nodes on the node link.
        def warm():
            return (self.gw_ip in self.arp_req[CLIENTS]) and set(self.nodes) <= set(self.arp_req[NODES])
        if not self.wait_for(warm, a.warmup):
            self.err(f"appliance did not ARP for the gateway on the client link and every node on the "
                     f"node link within {a.warmup}s: clients {sorted(self.arp_req[CLIENTS])}, "
                     f"nodes {sorted(self.arp_req[NODES])}")
        report["phases"]["warmup_s"] = round(time.monotonic() - t0, 3)

        # 2. ARP on each link for that link's addresses, answered with that port's MAC.
        n1, n1mac = next(iter(self.nodes.items()))
        probes = [(CLIENTS, self.gw_ip, self.gw_mac, self.vip),
                  (CLIENTS, self.gw_ip, self.gw_mac, a.port_addr[0]),
                  (NODES, n1, n1mac, self.snat),
                  (NODES, n1, n1mac, a.port_addr[1])]
        for ip, mac in self.nodes.items():
            if ip != n1:
                probes.append((NODES, ip, mac, self.snat))
        for link, asker_ip, asker_mac, target in probes:
            got = self.arp_probe_link(link, asker_ip, asker_mac, target)
            if got is None:
                self.err(f"no ARP reply on the {link} link for {target} (asked by {asker_ip})")
            elif got != self.port_macs[link]:
                self.err(f"ARP reply on the {link} link for {target} gives {got}, the {link} port is "
                         f"{self.port_macs[link]}")
        # Informational: does a link answer for the other link's addresses?
        for link, asker_ip, asker_mac, target in [(CLIENTS, self.gw_ip, self.gw_mac, a.port_addr[1]),
                                                  (CLIENTS, self.gw_ip, self.gw_mac, self.snat),
                                                  (NODES, n1, n1mac, a.port_addr[0]),
                                                  (NODES, n1, n1mac, self.vip)]:
            self.cross_arp[f"{link} asked for {target}"] = self.arp_probe_link(link, asker_ip, asker_mac,
                                                                               target, tries=1)
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

        # 4. UDP flows, echoed by the node.
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
        time.sleep(a.settle)

        # 5. Verdicts.
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
            }
        self.stop = True
        report.update({
            "links": self.frames,
            "arp_requests_from_appliance": self.arp_req,
            "cross_link_arp_replies": self.cross_arp,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "errors": self.errors,
            "ok": not self.errors,
        })
        return report


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients-iface", required=True, help="client-side veth (this namespace)")
    p.add_argument("--nodes-iface", required=True, help="node-side veth (in --nodes-netns)")
    p.add_argument("--nodes-netns", required=True, help="name of the node-side namespace")
    p.add_argument("--clients-mac", required=True, help="MAC of the appliance's client-side port")
    p.add_argument("--nodes-mac", required=True, help="MAC of the appliance's node-side port")
    p.add_argument("--gateway", default="203.0.113.254")
    p.add_argument("--gateway-mac", default="02:00:00:00:00:fe")
    p.add_argument("--node", action="append", required=True, help="IP=MAC, repeatable")
    p.add_argument("--vip", default="203.0.113.10")
    p.add_argument("--snat", default="198.51.100.2")
    p.add_argument("--port-addr", nargs=2, default=["203.0.113.1", "198.51.100.1"],
                   help="client-side and node-side port addresses")
    p.add_argument("--tcp", type=int, default=20)
    p.add_argument("--udp", type=int, default=10)
    p.add_argument("--udp-rounds", type=int, default=3)
    p.add_argument("--tcp-port", type=int, default=30080)
    p.add_argument("--udp-port", type=int, default=30053)
    p.add_argument("--warmup", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--pace", type=float, default=0.002)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ready-file")
    a = p.parse_args()
    # peer.Peer reads these
    a.no_service_port = 0
    a.node = [n.lower() for n in a.node]
    a.gateway_mac = a.gateway_mac.lower()
    random.seed(a.seed)
    peer = TwoPortPeer(a)
    if a.ready_file:
        open(a.ready_file, "w").close()
    report = peer.run()
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
