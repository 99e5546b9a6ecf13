"""TRex STL profile: TCP SYN toward VIP:nodePort from random clients (nplb, issue 5).

Random client addresses (within a /8) and source ports: nearly every SYN is a
new connection (flow table miss, Maglev, SNAT port, insert), which measures
the new-flow rate and, past the table's capacity, the refusal counters
(flow_table_full, snat_exhausted). nplb must keep forwarding established
flows meanwhile: run udp_tuples.py on another port or stream alongside.

    trex-console> start -f pktgen-scripts/trex/tcp_syn.py -p 0 -m 2mpps \
                  -t vip=203.0.113.10,node_port=30080
"""
import argparse

from trex_stl_lib.api import (IP, TCP, STLPktBuilder, STLProfile, STLScVmRaw, STLStream, STLTXCont,
                              STLVmFixChecksumHw, STLVmFixIpv4, STLVmFlowVar, STLVmWrFlowVar,
                              CTRexVmInsFixHwCs, Ether)

DEFAULTS = {"vip": "203.0.113.10", "node_port": 30080, "client_min": "10.0.0.1",
            "client_max": "10.255.255.254", "size": 64, "dut_mac": "02:00:00:00:00:01"}


def tunables_to_dict(tunables, kwargs):
    values = dict(DEFAULTS)
    values.update({k: v for k, v in kwargs.items() if k in DEFAULTS})
    if tunables:
        parser = argparse.ArgumentParser(prog="tcp_syn.py")
        for key, default in DEFAULTS.items():
            parser.add_argument("--" + key, type=type(default), default=values[key])
        values.update(vars(parser.parse_args(tunables)))
    return values


class TcpSyn:
    def get_streams(self, direction=0, tunables=None, **kwargs):
        t = tunables_to_dict(tunables, kwargs)
        base = (Ether(dst=t["dut_mac"]) /
                IP(src=t["client_min"], dst=t["vip"], ttl=64) /
                TCP(sport=1024, dport=int(t["node_port"]), flags="S", seq=1, window=65535))
        pad = max(0, int(t["size"]) - 4 - len(base)) * b"\0"
        vm = STLScVmRaw([
            STLVmFlowVar(name="src", min_value=t["client_min"], max_value=t["client_max"],
                         size=4, op="random"),
            STLVmFlowVar(name="sport", min_value=1024, max_value=65535, size=2, op="random"),
            STLVmWrFlowVar(fv_name="src", pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="sport", pkt_offset="TCP.sport"),
            STLVmFixIpv4(offset="IP"),
            # The TCP checksum covers the pseudo-header: let the NIC (or TRex) redo it.
            STLVmFixChecksumHw(l3_offset="IP", l4_offset="TCP", l4_type=CTRexVmInsFixHwCs.L4_TYPE_TCP),
        ])
        return [STLStream(packet=STLPktBuilder(pkt=base / pad, vm=vm), mode=STLTXCont(pps=1000000))]


def register():
    return TcpSyn()


if __name__ == "__main__":
    print(STLProfile(TcpSyn().get_streams()).dump_to_yaml())
