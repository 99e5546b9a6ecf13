#!/usr/bin/python3
"""pcap run of the real nplb binary through net_pcap (design: tests, level 3).

    pcap_run.py PATH/TO/nplb        generate in.pcap, run nplb, check every packet out
    pcap_run.py --selftest          check the checker: an ideal simulated output must
                                    pass, and a list of corrupted outputs must each fail

One port, one-armed: clients (198.18.0.0/15, behind the gateway) and nodes
(198.51.100.21-23) share the link `lan`. Input: >= 1,000 interleaved client flows
to VIP 203.0.113.10 (TCP: SYN, ACK, data, FIN|ACK to nodePort 30080; UDP: 2-3
datagrams to nodePort 30053; a few flows back to back, most interleaved), one TCP flow with a wrong L4 checksum, and one
packet per drop reason we expect (the SYN to an unknown nodePort is also refused:
one RST|ACK back to the client). Every output packet is decoded by scapy, not by
our code: L2/L3/L4 addresses and ports, TTL, IP and L4 checksums recomputed from
scratch, payload and TCP fields unchanged, stickiness per flow, no SNAT collision,
spread over nodes, exact packet accounting, and the final counters JSON.
"""

import functools
import ipaddress
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from scapy.all import IP, TCP, UDP, Ether, Raw, raw  # noqa: E402  (scapy is the independent decoder)
from scapy.utils import RawPcapReader

# ------------------------------------------------------------------- topology

PORT = "lan"
APPLIANCE_MAC = "02:00:00:00:00:01"
GATEWAY_IP = "203.0.113.254"
GATEWAY_MAC = "02:00:00:00:00:fe"
VIP = "203.0.113.10"
SNAT = "198.51.100.2"
NODES = {  # name -> (address, mac)
    "n1": ("198.51.100.21", "02:00:00:00:01:21"),
    "n2": ("198.51.100.22", "02:00:00:00:01:22"),
    "n3": ("198.51.100.23", "02:00:00:00:01:23"),
}
NODE_BY_IP = {ip: (name, mac) for name, (ip, mac) in NODES.items()}
CLIENT_NET = ipaddress.ip_network("198.18.0.0/15")
SERVICES = {  # proto -> (service key in counters, nodePort)
    "tcp": ("default/web:80", 30080),
    "udp": ("default/dns:53", 30053),
}
UNKNOWN_NODEPORT = 31999

N_TCP = 700
N_UDP = 320
BACK_TO_BACK_FLOWS = 60   # of those, not interleaved: all packets in a row
SPREAD_MIN, SPREAD_MAX = 0.20, 0.47
NPLB_TIMEOUT_S = 240

SERVICES_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  type: NodePort
  selector: {app: web}
  clusterIP: 10.96.0.80
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 8080
      nodePort: 30080
---
apiVersion: v1
kind: Service
metadata:
  name: dns
  namespace: default
spec:
  type: NodePort
  selector: {app: dns}
  ports:
    - name: dns
      protocol: UDP
      port: 53
      targetPort: 53
      nodePort: 30053
"""


def eal_args():
    """Two lcores (main + one worker). Map them onto the CPUs we may run on."""
    cpus = sorted(os.sched_getaffinity(0))
    if 0 in cpus and 1 in cpus:
        lcores = ["-l", "0,1"]
    else:
        a = cpus[0]
        b = cpus[1] if len(cpus) > 1 else cpus[0]
        lcores = ["--lcores", f"0@{a},1@{b}"]
    return ["--no-huge", "--no-shconf", "-m", "512", *lcores, "--log-level", "*:error"]


def config_yaml(in_pcap, out_pcap):
    cfg = {
        "dataplane": {
            "eal": eal_args(),
            "workers": 1,
            "ports": [{
                "name": PORT,
                "device": f"net_pcap0,rx_pcap={in_pcap},tx_pcap={out_pcap}",
                "addresses": ["203.0.113.1/24", "198.51.100.1/24"],
                "mac": APPLIANCE_MAC,
                "gateway": GATEWAY_IP,
            }],
            "neighbors": [{"ip": GATEWAY_IP, "mac": GATEWAY_MAC}]
            + [{"ip": ip, "mac": mac} for ip, mac in NODES.values()],
            "flows": {"capacity": 65536},
        },
        "forwarding": {"mode": "nat", "frontends": [VIP], "snat": [SNAT]},
        "cluster": {
            "nodes": [{"name": n, "address": ip} for n, (ip, _) in NODES.items()],
            "manifests": ["services.yaml"],
        },
    }
    # JSON is YAML: no PyYAML needed, and the quoting is unambiguous.
    return json.dumps(cfg, indent=2) + "\n"


# ------------------------------------------------------------------- generator

@dataclass
class InPacket:
    frame: bytes
    key: tuple                # identifies the packet in the output, whatever the NAT did
    flow: "Flow" = None


@dataclass
class Flow:
    idx: int
    proto: str                # "tcp" | "udp"
    client: str
    sport: int
    ttl: int
    bad_l4_checksum: bool = False
    packets: list = field(default_factory=list)


@dataclass
class DropPacket:
    frame: bytes
    key: tuple                # None for frames that cannot be decoded
    reason: str
    what: str
    refused: bool = False     # a TCP SYN nplb answers with RST|ACK (RFC 9293 3.10.7.1)


@dataclass
class Scenario:
    flows: list
    drops: list
    frames: list              # the input, in order


@functools.lru_cache(maxsize=None)
def decode(frame):
    """scapy's dissection of a frame (memoised: the self-test checks many
    variants of one output; callers must not modify the result)."""
    return Ether(frame)


def l4_key(pkt):
    """The identity of a packet that NAT must not change."""
    if TCP in pkt:
        t = pkt[TCP]
        return ("tcp", t.seq, t.ack, int(t.flags))
    if UDP in pkt:
        return ("udp", bytes(pkt[UDP].payload))
    return None


def correct_l4_checksum(ip_pkt):
    """scapy recomputes: delete the checksum, rebuild, read it back."""
    return _correct_l4_checksum(raw(ip_pkt)[: ip_pkt.len])


@functools.lru_cache(maxsize=None)
def _correct_l4_checksum(ip_bytes):
    p = IP(ip_bytes)
    l4 = p[TCP] if TCP in p else p[UDP]
    del l4.chksum
    p = IP(raw(p))
    return (p[TCP] if TCP in p else p[UDP]).chksum


def correct_ip_checksum(ip_pkt):
    return _correct_ip_checksum(raw(ip_pkt)[: ip_pkt.len])


@functools.lru_cache(maxsize=None)
def _correct_ip_checksum(ip_bytes):
    p = IP(ip_bytes)
    del p.chksum
    return IP(raw(p)).chksum


def build_scenario(seed):
    rng = random.Random(seed)
    used_tuples = set()
    used_isn = set()

    def client_tuple(proto):
        while True:
            ip = str(CLIENT_NET[rng.randrange(1, CLIENT_NET.num_addresses - 1)])
            sport = rng.randrange(1024, 65536)
            if (proto, ip, sport) not in used_tuples:
                used_tuples.add((proto, ip, sport))
                return ip, sport

    def isn():
        while True:
            v = rng.randrange(0, 2**32)
            if v >> 12 not in used_isn:  # keeps seq ranges of flows apart
                used_isn.add(v >> 12)
                return v

    def l2l3(src, ttl, **ipkw):
        return Ether(src=GATEWAY_MAC, dst=APPLIANCE_MAC) / IP(src=src, dst=VIP, ttl=ttl, **ipkw)

    flows = []

    def tcp_flow(bad_l4_checksum=False):
        f = Flow(len(flows), "tcp", *client_tuple("tcp"), ttl=rng.randrange(16, 129),
                 bad_l4_checksum=bad_l4_checksum)
        c_isn, s_isn = isn(), rng.randrange(0, 2**32)
        payload = f"GET /flow/{f.idx} HTTP/1.1\r\nHost: web\r\n\r\n".encode()
        win = rng.randrange(1024, 65536)
        dport = SERVICES["tcp"][1]
        segs = [
            TCP(sport=f.sport, dport=dport, flags="S", seq=c_isn, window=win,
                options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
            TCP(sport=f.sport, dport=dport, flags="A", seq=c_isn + 1, ack=(s_isn + 1) % 2**32, window=win),
            TCP(sport=f.sport, dport=dport, flags="PA", seq=c_isn + 1, ack=(s_isn + 1) % 2**32, window=win)
            / Raw(payload),
            TCP(sport=f.sport, dport=dport, flags="FA", seq=(c_isn + 1 + len(payload)) % 2**32,
                ack=(s_isn + 1) % 2**32, window=win),
        ]
        for seg in segs:
            pkt = Ether(raw(l2l3(f.client, f.ttl, id=rng.randrange(0, 65536)) / seg))
            if bad_l4_checksum:
                good = pkt[TCP].chksum
                pkt[TCP].chksum = good ^ 0x5A5A
                pkt = Ether(raw(pkt))
            f.packets.append(InPacket(raw(pkt), l4_key(pkt), f))
        flows.append(f)

    def udp_flow():
        f = Flow(len(flows), "udp", *client_tuple("udp"), ttl=rng.randrange(16, 129))
        for d in range(rng.choice((2, 3))):
            payload = f"dns query {f.idx}.{d} ".encode() + bytes(rng.randrange(0, 40))
            pkt = Ether(raw(l2l3(f.client, f.ttl, id=rng.randrange(0, 65536))
                            / UDP(sport=f.sport, dport=SERVICES["udp"][1]) / Raw(payload)))
            f.packets.append(InPacket(raw(pkt), l4_key(pkt), f))
        flows.append(f)

    kinds = ["tcp"] * N_TCP + ["udp"] * N_UDP
    rng.shuffle(kinds)
    for k in kinds:
        (tcp_flow if k == "tcp" else udp_flow)()
    tcp_flow(bad_l4_checksum=True)

    # Packets the appliance must drop, each under one named reason.
    drops = []

    def drop(reason, what, pkt=None, frame=None, refused=False):
        if frame is None:
            frame = raw(pkt)
        key = l4_key(Ether(frame)) if pkt is not None else None
        drops.append(DropPacket(frame, key, reason, what, refused))

    def dport_web():
        return SERVICES["tcp"][1]

    ip, sp = client_tuple("tcp")
    drop("no_service", f"TCP SYN to unknown nodePort {UNKNOWN_NODEPORT}",
         l2l3(ip, 64) / TCP(sport=sp, dport=UNKNOWN_NODEPORT, flags="S", seq=isn()), refused=True)
    ip, sp = client_tuple("tcp")
    drop("no_flow", "bare ACK of an unknown flow",
         l2l3(ip, 64) / TCP(sport=sp, dport=dport_web(), flags="A", seq=isn(), ack=12345))
    ip, sp = client_tuple("tcp")
    full = raw(l2l3(ip, 64) / TCP(sport=sp, dport=dport_web(), flags="S", seq=isn()))
    drop("too_short", "frame cut inside the IPv4 header (24 bytes)", frame=full[:14 + 10])
    ip, sp = client_tuple("tcp")
    drop("fragment", "first fragment (MF set) of a TCP SYN",
         l2l3(ip, 64, flags="MF", id=4242) / TCP(sport=sp, dport=dport_web(), flags="S", seq=isn()))
    ip, sp = client_tuple("tcp")
    p = Ether(raw(l2l3(ip, 64) / TCP(sport=sp, dport=dport_web(), flags="S", seq=isn())))
    p[IP].chksum ^= 0x0101
    drop("bad_ip_checksum", "TCP SYN with a wrong IPv4 header checksum", Ether(raw(p)))
    ip, sp = client_tuple("tcp")
    drop("invalid_tcp_flags", "SYN+FIN",
         l2l3(ip, 64) / TCP(sport=sp, dport=dport_web(), flags="SF", seq=isn()))

    # Interleave: a random merge that keeps each flow's own order. A few flows
    # stay back to back instead (SYN then ACK, datagram after datagram), so
    # that a new flow's next packet often shares its RX burst: the flow must
    # already be found for it.
    back_to_back = set(rng.sample(range(len(flows)), BACK_TO_BACK_FLOWS))
    order = [f.idx for f in flows if f.idx not in back_to_back for _ in f.packets]
    rng.shuffle(order)
    nxt = [0] * len(flows)
    frames = []
    for i in order:
        frames.append(flows[i].packets[nxt[i]].frame)
        nxt[i] += 1
    for i in sorted(back_to_back):
        at = rng.randrange(0, len(frames) + 1)
        frames[at:at] = [p.frame for p in flows[i].packets]
    # Drops go at spread-out positions.
    for d in drops:
        frames.insert(rng.randrange(0, len(frames) + 1), d.frame)

    keys = Counter(p.key for f in flows for p in f.packets)
    keys.update(d.key for d in drops if d.key is not None)
    dup = [k for k, n in keys.items() if n > 1]
    assert not dup, f"generator bug: packet keys not unique: {dup[:3]}"
    return Scenario(flows, drops, frames)


# ------------------------------------------------------------------- pcap I/O

def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # DLT_EN10MB
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000, len(fr), len(fr)))
            f.write(fr)


def read_pcap(path):
    return [bytes(data) for data, _meta in RawPcapReader(path)]


# ------------------------------------------------------------------- checker

class Errors:
    LIMIT = 8  # per category, the rest is counted

    def __init__(self):
        self.by_cat = defaultdict(list)

    def add(self, cat, msg):
        self.by_cat[cat].append(msg)

    def __bool__(self):
        return bool(self.by_cat)

    def report(self):
        lines = []
        for cat, msgs in self.by_cat.items():
            lines.append(f"FAIL [{cat}] x{len(msgs)}")
            for m in msgs[: self.LIMIT]:
                lines.append(f"    {m}")
            if len(msgs) > self.LIMIT:
                lines.append(f"    ... and {len(msgs) - self.LIMIT} more")
        return "\n".join(lines)


def ones_diff(a_sum, b_sum):
    """a - b in ones' complement arithmetic, with 0 and 0xffff identified."""
    d = (a_sum + (~b_sum & 0xFFFF)) % 0xFFFF
    return d


def check_output(sc, out_frames, counters, drop_reason_names):
    """Return (Errors, summary dict). Decoding is scapy's alone."""
    err = Errors()
    by_key = {p.key: p for f in sc.flows for p in f.packets}
    drop_by_key = {d.key: d for d in sc.drops if d.key is not None}
    seen = Counter()
    flow_out = defaultdict(list)          # flow idx -> [(input index in flow, node ip, sport)]
    per_backend = Counter()               # "ip:port" -> packets
    per_service = Counter()
    bad_csum_notes = []
    node_ips = set(NODE_BY_IP)
    refusals = {refusal_key(d): [d, 0] for d in sc.drops if d.refused}

    for n, fr in enumerate(out_frames):
        where = f"out#{n}"
        try:
            pkt = decode(fr)
        except Exception as e:  # noqa: BLE001
            err.add("undecodable", f"{where}: scapy cannot decode: {e}")
            continue
        if IP not in pkt or (TCP not in pkt and UDP not in pkt):
            err.add("unexpected", f"{where}: not IPv4 TCP/UDP: {pkt.summary()}")
            continue
        ip = pkt[IP]
        if ip.src == VIP and TCP in pkt and pkt[TCP].flags.R:
            check_refusal(where, fr, pkt, refusals, err)
            continue
        if ip.dst == VIP or ipaddress.ip_address(ip.src) in CLIENT_NET:
            err.add("untranslated", f"{where}: {ip.src} -> {ip.dst}: {pkt.summary()}")
            continue
        key = l4_key(pkt)
        if key in drop_by_key:
            d = drop_by_key[key]
            err.add("forwarded-drop", f"{where}: packet that must be dropped ({d.reason}: {d.what}) came out")
            continue
        inp = by_key.get(key)
        if inp is None:
            err.add("unexpected", f"{where}: matches no input packet: {pkt.summary()}")
            continue
        seen[key] += 1
        if seen[key] > 1:
            err.add("duplicate", f"{where}: flow {inp.flow.idx} packet {key[:4]} out more than once")
            continue
        f = inp.flow
        src_pkt = decode(inp.frame)
        tag = f"{where} (flow {f.idx} {f.proto} {f.client}:{f.sport} pkt {f.packets.index(inp)})"

        # L2
        if pkt.src != APPLIANCE_MAC:
            err.add("eth-src", f"{tag}: Ether src {pkt.src}, want {APPLIANCE_MAC}")
        if pkt.type != 0x0800:
            err.add("ethertype", f"{tag}: ethertype {pkt.type:#06x}")
        # L3
        if ip.src != SNAT:
            err.add("ip-src", f"{tag}: IP src {ip.src}, want SNAT {SNAT}")
        if ip.dst not in node_ips:
            err.add("ip-dst", f"{tag}: IP dst {ip.dst} is no node")
        elif pkt.dst != NODE_BY_IP[ip.dst][1]:
            err.add("eth-dst", f"{tag}: Ether dst {pkt.dst} but IP dst {ip.dst} has MAC {NODE_BY_IP[ip.dst][1]}")
        if ip.ttl != src_pkt[IP].ttl - 1:
            err.add("ttl", f"{tag}: TTL {ip.ttl}, want {src_pkt[IP].ttl - 1}")
        if ip.len + 14 > len(fr) or (len(fr) > 60 and ip.len + 14 != len(fr)):
            err.add("length", f"{tag}: IP total length {ip.len}, frame {len(fr)} bytes")
        if ip.len != src_pkt[IP].len or ip.ihl != 5:
            err.add("length", f"{tag}: IP total length/IHL {ip.len}/{ip.ihl}, in {src_pkt[IP].len}/5")
        if ip.flags.MF or ip.frag:
            err.add("fragment", f"{tag}: output is a fragment")
        want_ip_csum = correct_ip_checksum(ip)
        if ip.chksum != want_ip_csum:
            err.add("ip-checksum", f"{tag}: IP checksum {ip.chksum:#06x}, correct {want_ip_csum:#06x}")
        # L4
        service, node_port = SERVICES[f.proto]
        l4 = pkt[TCP] if f.proto == "tcp" else pkt[UDP]
        in_l4 = src_pkt[TCP] if f.proto == "tcp" else src_pkt[UDP]
        if l4.dport != node_port:
            err.add("dport", f"{tag}: dport {l4.dport}, want nodePort {node_port}")
        if not 1024 <= l4.sport <= 65535:
            err.add("sport", f"{tag}: SNAT port {l4.sport} outside 1024..65535")
        if bytes(l4.payload) != bytes(in_l4.payload):
            err.add("payload", f"{tag}: payload changed")
        if f.proto == "tcp":
            for fld in ("seq", "ack", "flags", "window", "dataofs", "urgptr", "options"):
                if getattr(l4, fld) != getattr(in_l4, fld):
                    err.add("tcp-fields", f"{tag}: TCP {fld} {getattr(l4, fld)!r}, in {getattr(in_l4, fld)!r}")
        want_l4 = correct_l4_checksum(ip)
        if f.bad_l4_checksum:
            if l4.chksum == want_l4:
                err.add("checksum-repaired", f"{tag}: arrived with a wrong TCP checksum, left with a correct one "
                        f"({l4.chksum:#06x}): a bad checksum must stay bad (RFC 1624 incremental update)")
            else:
                in_err = ones_diff(~in_l4.chksum & 0xFFFF, ~correct_l4_checksum(src_pkt[IP]) & 0xFFFF)
                out_err = ones_diff(~l4.chksum & 0xFFFF, ~want_l4 & 0xFFFF)
                bad_csum_notes.append(in_err == out_err)
        elif l4.chksum != want_l4:
            err.add("l4-checksum", f"{tag}: {f.proto.upper()} checksum {l4.chksum:#06x}, correct {want_l4:#06x}")

        flow_out[f.idx].append((f.packets.index(inp), ip.dst, l4.sport))
        per_backend[f"{ip.dst}:{l4.dport}"] += 1
        per_service[service] += 1

    # Every refused connection answered exactly once (one SYN: no rate limit).
    for d, n in refusals.values():
        if n == 0:
            err.add("refusal", f"no RST|ACK came back for the refused packet ({d.reason}: {d.what})")

    # Every valid input packet out exactly once.
    missing = [(f.idx, i) for f in sc.flows for i, p in enumerate(f.packets) if seen[p.key] == 0]
    for fi, i in missing:
        f = sc.flows[fi]
        err.add("missing", f"flow {fi} {f.proto} {f.client}:{f.sport} packet {i} never came out")

    # Stickiness, order, collisions, spread.
    owner = {}
    node_flows = Counter()
    for f in sc.flows:
        outs = flow_out.get(f.idx, [])
        if not outs:
            continue
        targets = {(d, s) for _, d, s in outs}
        if len(targets) > 1:
            err.add("stickiness", f"flow {f.idx} {f.proto} {f.client}:{f.sport}: packets went to "
                    f"{sorted(targets)} (node, SNAT port)")
        idxs = [i for i, _, _ in outs]
        if idxs != sorted(idxs):
            err.add("order", f"flow {f.idx}: packets out in order {idxs}")
        node, sport = outs[0][1], outs[0][2]
        node_flows[node] += 1
        k = (node, sport, f.proto)
        if k in owner and owner[k] != f.idx:
            err.add("collision", f"flows {owner[k]} and {f.idx} share node {node}, SNAT port {sport}, {f.proto}")
        owner.setdefault(k, f.idx)
    total_flows = sum(node_flows.values())
    for name, (nip, _) in NODES.items():
        share = node_flows[nip] / total_flows if total_flows else 0
        if not SPREAD_MIN <= share <= SPREAD_MAX:
            err.add("spread", f"node {name} {nip} got {node_flows[nip]} of {total_flows} flows "
                    f"({share:.1%}), want {SPREAD_MIN:.0%}..{SPREAD_MAX:.0%}")

    # Counters.
    n_in = len(sc.frames)
    n_fwd = sum(len(f.packets) for f in sc.flows)
    want_drops = Counter(d.reason for d in sc.drops)

    def cget(path, obj=counters):
        for p in path:
            if not isinstance(obj, dict) or p not in obj:
                err.add("counters", f"counters JSON has no {'.'.join(path)}")
                return None
            obj = obj[p]
        return obj

    def ceq(path, want):
        got = cget(path)
        if got is not None and got != want:
            err.add("counters", f"{'.'.join(path)} = {got}, want {want}")

    ceq(("ports", PORT, "rx"), n_in)
    ceq(("ports", PORT, "tx"), len(out_frames))
    dropped = cget(("ports", PORT, "dropped"))
    if dropped is not None and dropped not in (0, sum(want_drops.values())):
        err.add("counters", f"ports.{PORT}.dropped = {dropped}, want 0 (NIC drops) or "
                f"{sum(want_drops.values())} (packets dropped on this port)")
    ceq(("flows_created",), len(sc.flows))
    if "rejects_sent" in counters:  # optional key: the brief's counters JSON does not name it
        ceq(("rejects_sent",), len(refusals))
    drops = cget(("drops",)) or {}
    for reason in drop_reason_names:
        want = want_drops.get(reason, 0)
        got = drops.get(reason, 0)
        if got != want:
            what = "; ".join(d.what for d in sc.drops if d.reason == reason) or "no such packet was sent"
            err.add("drops", f"drops.{reason} = {got}, want {want} ({what})")
    for reason in drops:
        if reason not in drop_reason_names:
            err.add("drops", f"drops.{reason}: no such reason in dataplane/counters.hpp")
    for proto, (svc, _) in SERVICES.items():
        want = sum(len(f.packets) for f in sc.flows if f.proto == proto)
        ceq(("services", svc, "packets"), want)
    backends = cget(("backends",)) or {}
    for ip, _ in NODES.values():
        for _, port in SERVICES.values():
            b = f"{ip}:{port}"
            got = backends.get(b, {}).get("packets", 0)
            if got != per_backend[b]:
                err.add("counters", f"backends.{b}.packets = {got}, but {per_backend[b]} came out to it")
    bsum = sum(v.get("packets", 0) for v in backends.values() if isinstance(v, dict))
    if bsum != n_fwd:
        err.add("counters", f"sum of backends.*.packets = {bsum}, want {n_fwd} forwarded packets")

    summary = {
        "input_packets": n_in,
        "output_packets": len(out_frames),
        "forwarded_expected": n_fwd,
        "flows": len(sc.flows),
        "tcp_flows": sum(f.proto == "tcp" for f in sc.flows),
        "udp_flows": sum(f.proto == "udp" for f in sc.flows),
        "flows_per_node": {n: node_flows[ip] for n, (ip, _) in NODES.items()},
        "drops_sent": dict(want_drops),
        "bad_checksum_error_preserved": all(bad_csum_notes) if bad_csum_notes else None,
    }
    return err, summary


def refusal_key(d):
    """(client, client port, nodePort) of a refused SYN."""
    p = decode(d.frame)
    return (p[IP].src, p[TCP].sport, p[TCP].dport)


def check_refusal(where, fr, pkt, refusals, err):
    """The answer to a SYN for a closed port, RFC 9293 3.10.7.1: from the
    VIP:nodePort it was sent to, back through the gateway to the client,
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, valid checksums."""
    ip, tcp = pkt[IP], pkt[TCP]
    k = (ip.dst, tcp.dport, tcp.sport)
    if k not in refusals:
        err.add("refusal", f"{where}: RST for no refused packet: {pkt.summary()}")
        return
    d, n = refusals[k]
    refusals[k][1] += 1
    tag = f"{where} (RST for {d.reason}: {d.what})"
    if n:
        err.add("refusal", f"{tag}: sent more than once")
        return
    syn = decode(d.frame)[TCP]
    want = {"Ether src": (pkt.src, APPLIANCE_MAC), "Ether dst": (pkt.dst, GATEWAY_MAC),
            "flags": (str(tcp.flags), "RA"), "seq": (tcp.seq, 0), "ack": (tcp.ack, (syn.seq + 1) % 2**32),
            "IP checksum": (ip.chksum, correct_ip_checksum(ip)),
            "TCP checksum": (tcp.chksum, correct_l4_checksum(ip)),
            "payload": (bytes(tcp.payload), b"")}
    for what, (got, exp) in want.items():
        if got != exp:
            err.add("refusal", f"{tag}: {what} {got!r}, want {exp!r}")


def drop_reason_names_from_source():
    hdr = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dataplane", "counters.hpp")
    with open(hdr) as f:
        text = f.read()
    names = re.findall(r"^\s*X\((\w+),", text, re.M)
    if not names:
        sys.exit(f"cannot read drop reasons from {hdr}")
    return names


# ------------------------------------------------------------------- the real run

def run_nplb(nplb, sc, tmp):
    in_pcap, out_pcap = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "out.pcap")
    write_pcap(in_pcap, sc.frames)
    with open(os.path.join(tmp, "services.yaml"), "w") as f:
        f.write(SERVICES_YAML)
    cfg = os.path.join(tmp, "cfg.yaml")
    with open(cfg, "w") as f:
        f.write(config_yaml(in_pcap, out_pcap))
    cmd = [nplb, "--config", cfg, "--exit-when-idle", "500"]
    print("run:", " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=NPLB_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        sys.stderr.write((e.stderr or b"").decode(errors="replace")[-4000:] if isinstance(e.stderr, bytes)
                         else (e.stderr or "")[-4000:])
        sys.exit(f"FAIL: nplb did not exit within {NPLB_TIMEOUT_S}s (--exit-when-idle 500)")
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        sys.exit(f"FAIL: nplb exited with {r.returncode}; stdout: {r.stdout[-2000:]!r}")
    try:
        counters = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        sys.stderr.write(r.stderr[-4000:])
        sys.exit(f"FAIL: stdout is not one JSON object ({e}): {r.stdout[:2000]!r}")
    if not os.path.exists(out_pcap):
        sys.exit(f"FAIL: nplb wrote no {out_pcap}")
    return read_pcap(out_pcap), counters


def print_summary(summary, counters=None):
    print("summary:", json.dumps(summary, sort_keys=True))
    if counters is not None:
        print("counters:", json.dumps(counters, sort_keys=True))


def main_real(nplb):
    seed = int(os.environ.get("NPLB_PCAP_SEED", "20250520"))
    nplb = os.path.abspath(nplb)
    if not os.access(nplb, os.X_OK):
        sys.exit(f"FAIL: {nplb} is not an executable")
    sc = build_scenario(seed)
    print(f"seed {seed}: {len(sc.flows)} flows, {len(sc.frames)} input packets, {len(sc.drops)} to drop")
    tmp = tempfile.mkdtemp(prefix="nplb-pcap-")
    try:
        out, counters = run_nplb(nplb, sc, tmp)
        err, summary = check_output(sc, out, counters, drop_reason_names_from_source())
        print_summary(summary, counters)
        if err:
            print(err.report())
            keep = os.environ.get("NPLB_PCAP_KEEP")
            if keep:
                shutil.copytree(tmp, keep, dirs_exist_ok=True)
                print(f"inputs and outputs kept in {keep}")
            sys.exit("FAIL: pcap_forwarding: " + ", ".join(err.by_cat))
        print("PASS: every output packet checked")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------- self-test of the checker

def simulate(sc, rng, names):
    """An ideal appliance, in Python: what a correct nplb would write."""
    node_ips = [ip for ip, _ in NODES.values()]
    choice, next_port, out = {}, Counter(), []
    by_key = {p.key: p for f in sc.flows for p in f.packets}
    refused = {d.frame for d in sc.drops if d.refused}
    for fr in sc.frames:
        pkt = Ether(fr)
        if fr in refused:
            syn = pkt
            out.append(raw(Ether(src=APPLIANCE_MAC, dst=GATEWAY_MAC)
                           / IP(src=VIP, dst=syn[IP].src, ttl=64)
                           / TCP(sport=syn[TCP].dport, dport=syn[TCP].sport, flags="RA", seq=0,
                                 ack=syn[TCP].seq + 1, window=0)))
            continue
        key = l4_key(pkt) if IP in pkt else None
        inp = by_key.get(key)
        if inp is None:
            continue
        f = inp.flow
        if f.idx not in choice:
            node = node_ips[rng.randrange(3)]
            next_port[(node, f.proto)] += 1
            choice[f.idx] = (node, 1023 + 7 * next_port[(node, f.proto)])
        node, sport = choice[f.idx]
        ip = pkt[IP]
        l4 = pkt[TCP] if f.proto == "tcp" else pkt[UDP]
        in_bad = f.bad_l4_checksum
        if in_bad:
            in_err = ones_diff(~l4.chksum & 0xFFFF, ~correct_l4_checksum(ip) & 0xFFFF)
        new = Ether(src=APPLIANCE_MAC, dst=NODE_BY_IP[node][1]) / ip.copy()
        new[IP].src, new[IP].dst, new[IP].ttl = SNAT, node, ip.ttl - 1
        nl4 = new[TCP] if f.proto == "tcp" else new[UDP]
        nl4.sport, nl4.dport = sport, SERVICES[f.proto][1]
        del new[IP].chksum
        del nl4.chksum
        new = Ether(raw(new))
        if in_bad:  # keep the same error, as RFC 1624 does
            good = ~new[TCP].chksum & 0xFFFF
            s = (good + in_err) % 0xFFFF
            new[TCP].chksum = ~s & 0xFFFF
            new = Ether(raw(new))
        out.append(raw(new))
    per_backend = Counter()
    for fr in out:
        p = Ether(fr)
        if p[IP].src == VIP:
            continue
        l4 = p[TCP] if TCP in p else p[UDP]
        per_backend[f"{p[IP].dst}:{l4.dport}"] += 1
    counters = {
        "ports": {PORT: {"rx": len(sc.frames), "tx": len(out), "dropped": 0}},
        "drops": {r: 0 for r in names} | dict(Counter(d.reason for d in sc.drops)),
        "flows_created": len(sc.flows),
        "rejects_sent": len(refused),
        "services": {svc: {"packets": sum(len(f.packets) for f in sc.flows if f.proto == proto)}
                     for proto, (svc, _) in SERVICES.items()},
        "backends": {b: {"packets": n} for b, n in per_backend.items()},
    }
    return out, counters


def selftest():
    names = drop_reason_names_from_source()
    sc = build_scenario(7)
    rng = random.Random(7)
    out, counters = simulate(sc, rng, names)
    print(f"selftest: {len(sc.flows)} flows, {len(sc.frames)} in, {len(out)} out (simulated)")
    err, summary = check_output(sc, out, counters, names)
    print_summary(summary)
    if err:
        print(err.report())
        sys.exit("SELFTEST FAIL: the ideal output was rejected")
    if summary["bad_checksum_error_preserved"] is not True:
        sys.exit("SELFTEST FAIL: the checksum-error bookkeeping is wrong")

    def rewrite(i, fn):
        o = list(out)
        p = Ether(o[i])
        fn(p)
        o[i] = raw(p)
        return o

    def first_of(pred):
        return next(i for i, fr in enumerate(out) if pred(Ether(fr)))

    tcp_i = first_of(lambda p: TCP in p and p[TCP].flags == "PA")
    rst_i = first_of(lambda p: TCP in p and p[TCP].flags.R)
    udp_i = first_of(lambda p: UDP in p)
    bad_flow = sc.flows[-1]
    bad_i = first_of(lambda p: TCP in p and l4_key(p) == bad_flow.packets[0].key)

    def set_dst(p, node):
        p[IP].dst, p.dst = node, NODE_BY_IP[node][1]
        del p[IP].chksum
        del p[TCP].chksum

    def other_node(p):
        return next(ip for ip in NODE_BY_IP if ip != p[IP].dst)

    def dec_fields(p, **kw):
        for k, v in kw.items():
            setattr(p[IP], k, v)
        del p[IP].chksum
        if TCP in p:
            del p[TCP].chksum
        else:
            del p[UDP].chksum

    def collide(o):
        # give a second flow on the same node the SNAT port of the first
        a = Ether(o[tcp_i])
        fa = next(p.flow for f in sc.flows for p in f.packets if p.key == l4_key(a))
        fb = next(f for f in sc.flows if f.proto == "tcp" and f.idx != fa.idx and not f.bad_l4_checksum)
        o = list(o)
        for j, fr in enumerate(o):
            p = Ether(fr)
            if TCP in p and any(l4_key(p) == q.key for q in fb.packets):
                set_dst(p, a[IP].dst)
                p[TCP].sport = a[TCP].sport
                o[j] = raw(p)
        return o

    def untranslated(o):
        return o + [sc.flows[0].packets[0].frame]

    def all_to_one(o):
        o2 = []
        for fr in o:
            p = Ether(fr)
            set_dst(p, "198.51.100.21") if TCP in p else None
            if UDP in p:
                p[IP].dst, p.dst = "198.51.100.21", NODE_BY_IP["198.51.100.21"][1]
                del p[IP].chksum
                del p[UDP].chksum
            o2.append(raw(p))
        return o2

    def repair(o):
        o = list(o)
        for j, fr in enumerate(o):
            p = Ether(fr)
            if TCP in p and any(l4_key(p) == q.key for q in bad_flow.packets):
                del p[TCP].chksum
                o[j] = raw(p)
        return o

    def c_with(path, value):
        c = json.loads(json.dumps(counters))
        obj = c
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
        return c

    mutations = [
        ("missing", out[:tcp_i] + out[tcp_i + 1:], counters),
        ("duplicate", out + [out[udp_i]], counters),
        ("ttl", rewrite(tcp_i, lambda p: dec_fields(p, ttl=p[IP].ttl + 1)), counters),
        ("ip-checksum", rewrite(udp_i, lambda p: setattr(p[IP], "chksum", p[IP].chksum ^ 1)), counters),
        ("l4-checksum", rewrite(tcp_i, lambda p: setattr(p[TCP], "chksum", p[TCP].chksum ^ 1)), counters),
        ("l4-checksum", rewrite(udp_i, lambda p: setattr(p[UDP], "chksum", p[UDP].chksum ^ 0x100)), counters),
        ("stickiness", rewrite(tcp_i, lambda p: set_dst(p, other_node(p))), counters),
        ("eth-dst", rewrite(tcp_i, lambda p: setattr(p, "dst", "02:00:00:00:09:99")), counters),
        ("ip-src", rewrite(udp_i, lambda p: dec_fields(p, src="198.51.100.3")), counters),
        ("tcp-fields", rewrite(tcp_i, lambda p: (setattr(p[TCP], "seq", p[TCP].seq), setattr(p[TCP], "window", 1),
                                                 dec_fields(p))), counters),
        ("payload", rewrite(tcp_i, lambda p: (setattr(p[Raw], "load", b"X" + p[Raw].load[1:]),
                                              dec_fields(p))), counters),
        # UDP datagrams are told apart by their payload: a changed one matches nothing
        ("unexpected", rewrite(udp_i, lambda p: (setattr(p[Raw], "load", b"X" + p[Raw].load[1:]),
                                                 dec_fields(p))), counters),
        ("collision", collide(out), counters),
        ("untranslated", untranslated(out), counters),
        ("spread", all_to_one(out), counters),
        ("checksum-repaired", repair(out), counters),
        ("refusal", out[:rst_i] + out[rst_i + 1:], c_with(["ports", PORT, "tx"], len(out) - 1)),
        ("refusal", rewrite(rst_i, lambda p: (setattr(p[TCP], "ack", p[TCP].ack + 1), dec_fields(p))), counters),
        ("refusal", out + [out[rst_i]], c_with(["ports", PORT, "tx"], len(out) + 1)),
        ("counters", out, c_with(["rejects_sent"], 0)),
        ("counters", out, c_with(["flows_created"], len(sc.flows) - 1)),
        ("counters", out, c_with(["ports", PORT, "rx"], len(sc.frames) - 1)),
        ("counters", out, c_with(["backends", next(iter(counters["backends"])), "packets"], 0)),
        ("counters", out, c_with(["services", "default/dns:53", "packets"], 1)),
        ("drops", out, c_with(["drops", "fragment"], 0)),
        ("drops", out, c_with(["drops", "tx_full"], 1)),
    ]
    assert bad_i is not None
    failed = 0
    for want_cat, o, c in mutations:
        e, _ = check_output(sc, o, c, names)
        ok = want_cat in e.by_cat
        failed += not ok
        print(f"  mutation {want_cat:18s} -> {'caught' if ok else 'MISSED'}: {sorted(e.by_cat)}")
    if failed:
        sys.exit(f"SELFTEST FAIL: {failed} corruption(s) not caught")
    print("SELFTEST PASS")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--selftest":
        selftest()
    elif len(sys.argv) == 2:
        main_real(sys.argv[1])
    else:
        sys.exit(__doc__)
