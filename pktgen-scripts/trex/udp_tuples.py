"""TRex STL profile: UDP from many clients and source ports to VIP:nodePort (nplb, issue 5).

The field engine's tuple generator walks client addresses and source ports
(every (address, port) pair once per cycle), so the appliance sees
clients x ports distinct 5-tuples toward one VIP:nodePort: its established-flow
forwarding rate once each flow has been opened by its first datagram.

    trex-console> start -f pktgen-scripts/trex/udp_tuples.py -p 0 -m 10mpps \
                  -t vip=203.0.113.10,node_port=30053,clients=4096,ports=256
"""
import argparse

from trex_stl_lib.api import (IP, STLPktBuilder, STLProfile, STLScVmRaw, STLStream, STLTXCont,
                              STLVmFixIpv4, STLVmTupleGen, STLVmWrFlowVar, UDP, Ether)

DEFAULTS = {"vip": "203.0.113.10", "node_port": 30053, "client_min": "10.0.0.1",
            "clients": 4096, "sport_min": 1024, "ports": 256, "size": 64,
            "dut_mac": "02:00:00:00:00:01"}


def tunables_to_dict(tunables, kwargs):
    """TRex passes -t values as a list (v2.90+) or as keyword arguments (older)."""
    values = dict(DEFAULTS)
    values.update({k: v for k, v in kwargs.items() if k in DEFAULTS})
    if tunables:
        parser = argparse.ArgumentParser(prog="udp_tuples.py")
        for key, default in DEFAULTS.items():
            parser.add_argument("--" + key, type=type(default), default=values[key])
        values.update(vars(parser.parse_args(tunables)))
    return values


def ipv4_add(base, n):
    a = [int(x) for x in base.split(".")]
    v = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) + n
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))


class UdpTuples:
    def get_streams(self, direction=0, tunables=None, **kwargs):
        t = tunables_to_dict(tunables, kwargs)
        clients, ports = int(t["clients"]), int(t["ports"])
        sport_min = int(t["sport_min"])
        base = (Ether(dst=t["dut_mac"]) /
                IP(src=t["client_min"], dst=t["vip"], ttl=64) /
                UDP(sport=sport_min, dport=int(t["node_port"]), chksum=0))  # 0 = none; nplb keeps it 0
        pad = max(0, int(t["size"]) - 4 - len(base)) * b"x"   # size includes the FCS
        vm = STLScVmRaw([
            STLVmTupleGen(name="client", ip_min=t["client_min"],
                          ip_max=ipv4_add(t["client_min"], clients - 1),
                          port_min=sport_min, port_max=sport_min + ports - 1),
            STLVmWrFlowVar(fv_name="client.ip", pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="client.port", pkt_offset="UDP.sport"),
            STLVmFixIpv4(offset="IP"),
        ])
        return [STLStream(packet=STLPktBuilder(pkt=base / pad, vm=vm), mode=STLTXCont(pps=1000000))]


def register():
    return UdpTuples()


if __name__ == "__main__":
    print(STLProfile(UdpTuples().get_streams()).dump_to_yaml())
