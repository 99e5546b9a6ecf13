#!/usr/bin/python3
"""A slow stand-in for nplb, to test the live harness itself (never the appliance).

    fake_appliance.py --config FILE

Reads the subset of nplb's config that the live tests use (one port, frontends, snat,
nodes, NodePort services), and on the port's af_packet interface does what the spec
says nplb does: answers ARP for its addresses, ARPs every node and the gateway at
start, full NAT both ways, TTL-1. On SIGTERM prints counters in nplb's JSON shape.
`reverse_path.py tests/live/fake_appliance.py` must pass: if it fails, the harness
is wrong, not nplb.
"""
import argparse
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import zlib

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

ETH_P_ALL, PACKET_OUTGOING = 3, 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    # Regular expressions, not a YAML parser: python3-yaml is not among the test
    # dependencies, and the configs this reads are the ones the live tests write.
    text = open(a.config).read()
    base = os.path.dirname(os.path.abspath(a.config))

    def one(pattern):
        m = re.search(pattern, text)
        return m.group(1) if m else None

    def strings(key):
        return re.findall(r'"([^"]+)"', one(key + r':\s*\[([^\]]*)\]') or "")

    port = {"name": one(r"-\s*name:\s*(\w+)")}
    iface = one(r"iface=([^,\"\s]+)")
    nets = [ipaddress.ip_interface(x) for x in strings("addresses")]
    gateway = one(r"gateway:\s*([\d.]+)")
    vips = set(strings("frontends"))
    snat = strings("snat")[0]
    nodes = re.findall(r"address:\s*([\d.]+)", text)
    mine = vips | {snat} | {str(n.ip) for n in nets}
    services = {}
    manifests = strings("manifests")
    for m in manifests:
        for doc in open(os.path.join(base, m)).read().split("\n---"):
            name = re.search(r"\bname:\s*(\w+)", doc).group(1)
            ns = re.search(r"namespace:\s*(\w+)", doc).group(1)
            for proto, svc_port, node_port in re.findall(
                    r"protocol:\s*(\w+),?\s*port:\s*(\d+),?\s*targetPort:\s*\w+,?\s*nodePort:\s*(\d+)", doc):
                services[(proto.lower(), int(node_port))] = f"{ns}/{name}:{svc_port}"
    mac = open(f"/sys/class/net/{iface}/address").read().strip()

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(0.2)
    neigh = {}
    flows, rev = {}, {}
    next_port = [20000]
    c = {"ports": {port["name"]: {"rx": 0, "tx": 0, "dropped": 0}}, "drops": {}, "flows_created": 0,
         "services": {k: {"packets": 0} for k in services.values()}, "backends": {}}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    def tx(frame):
        s.send(bytes(frame))
        c["ports"][port["name"]]["tx"] += 1

    def drop(reason):
        c["drops"][reason] = c["drops"].get(reason, 0) + 1

    def arp_for(ip):
        src = next((str(n.ip) for n in nets if ipaddress.ip_address(ip) in n.network), str(nets[0].ip))
        tx(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=src, pdst=ip))

    def next_hop(ip):
        return ip if any(ipaddress.ip_address(ip) in n.network for n in nets) else gateway

    def out(ip_pkt):
        hop = next_hop(ip_pkt.dst)
        if hop not in neigh:
            arp_for(hop)
            return drop("neighbor_unresolved")
        ip_pkt.ttl -= 1
        del ip_pkt.chksum
        del ip_pkt.payload.chksum
        tx(Ether(src=mac, dst=neigh[hop]) / ip_pkt)

    for ip in nodes + ([gateway] if gateway else []):
        arp_for(ip)
    while not stop:
        try:
            data, addr = s.recvfrom(65535)
        except (socket.timeout, InterruptedError):
            continue
        if addr[2] == PACKET_OUTGOING:
            continue
        c["ports"][port["name"]]["rx"] += 1
        eth = Ether(data)
        if ARP in eth:
            arp = eth[ARP]
            if arp.op in (1, 2):
                neigh[arp.psrc] = arp.hwsrc
            if arp.op == 1 and arp.pdst in mine:
                tx(Ether(src=mac, dst=eth.src) / ARP(op=2, hwsrc=mac, psrc=arp.pdst, hwdst=arp.hwsrc,
                                                     pdst=arp.psrc))
            continue
        if IP not in eth or (TCP not in eth and UDP not in eth):
            drop("unsupported_ethertype")
            continue
        ip = eth[IP]
        l4 = ip[TCP] if TCP in ip else ip[UDP]
        proto = "tcp" if TCP in ip else "udp"
        if ip.dst in vips:
            svc = services.get((proto, l4.dport))
            if svc is None:
                drop("no_service")
                continue
            key = (proto, ip.src, l4.sport, ip.dst, l4.dport)
            if key not in flows:
                node = nodes[zlib.crc32(repr(key).encode()) % len(nodes)]
                flows[key] = (node, next_port[0])
                rev[(proto, node, l4.dport, next_port[0])] = key
                next_port[0] += 1
                c["flows_created"] += 1
            node, sport = flows[key]
            c["services"][svc]["packets"] += 1
            b = c["backends"].setdefault(f"{node}:{l4.dport}", {"packets": 0})
            b["packets"] += 1
            ip.src, ip.dst, l4.sport = snat, node, sport
            out(ip)
        elif ip.dst == snat:
            key = rev.get((proto, ip.src, l4.sport, l4.dport))
            if key is None:
                drop("no_reverse_flow")
                continue
            _, client, cport, vip, nport = key
            ip.src, ip.dst, l4.sport, l4.dport = vip, client, nport, cport
            out(ip)
        else:
            drop("not_for_us")
    json.dump(c, sys.stdout)
    print()


if __name__ == "__main__":
    sys.exit(main())
