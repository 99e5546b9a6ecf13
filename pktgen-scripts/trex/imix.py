"""TRex STL profile: the classic IMIX toward VIP:nodePort (nplb, issue 5).

Three UDP streams of 64, 594 and 1518-byte frames (sizes with the FCS) in the
7:4:1 packet ratio (average ~353 bytes), each from many clients and source
ports so that the flows spread over the appliance's table. Scale with -m: the
ratio of the streams is kept.

    trex-console> start -f pktgen-scripts/trex/imix.py -p 0 -m 10gbps \
                  -t vip=203.0.113.10,node_port=30053
"""
import argparse

from trex_stl_lib.api import (IP, STLPktBuilder, STLProfile, STLScVmRaw, STLStream, STLTXCont,
                              STLVmFixIpv4, STLVmTupleGen, STLVmWrFlowVar, UDP, Ether)

DEFAULTS = {"vip": "203.0.113.10", "node_port": 30053, "client_min": "10.0.0.1",
            "client_max": "10.0.15.254", "sport_min": 1024, "sport_max": 1279,
            "dut_mac": "02:00:00:00:00:01"}

# (frame size with FCS, packets per second at multiplier 1): 7:4:1
IMIX = [(64, 28), (594, 16), (1518, 4)]


def tunables_to_dict(tunables, kwargs):
    values = dict(DEFAULTS)
    values.update({k: v for k, v in kwargs.items() if k in DEFAULTS})
    if tunables:
        parser = argparse.ArgumentParser(prog="imix.py")
        for key, default in DEFAULTS.items():
            parser.add_argument("--" + key, type=type(default), default=values[key])
        values.update(vars(parser.parse_args(tunables)))
    return values


class Imix:
    def stream(self, t, size, pps, index):
        base = (Ether(dst=t["dut_mac"]) /
                IP(src=t["client_min"], dst=t["vip"], ttl=64) /
                UDP(sport=int(t["sport_min"]), dport=int(t["node_port"]), chksum=0))
        pad = max(0, size - 4 - len(base)) * b"x"
        vm = STLScVmRaw([
            # One tuple generator per stream (names must differ between streams).
            STLVmTupleGen(name="c%d" % index, ip_min=t["client_min"], ip_max=t["client_max"],
                          port_min=int(t["sport_min"]), port_max=int(t["sport_max"])),
            STLVmWrFlowVar(fv_name="c%d.ip" % index, pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="c%d.port" % index, pkt_offset="UDP.sport"),
            STLVmFixIpv4(offset="IP"),
        ])
        return STLStream(packet=STLPktBuilder(pkt=base / pad, vm=vm), mode=STLTXCont(pps=pps))

    def get_streams(self, direction=0, tunables=None, **kwargs):
        t = tunables_to_dict(tunables, kwargs)
        return [self.stream(t, size, pps, i) for i, (size, pps) in enumerate(IMIX)]


def register():
    return Imix()


if __name__ == "__main__":
    print(STLProfile(Imix().get_streams()).dump_to_yaml())
