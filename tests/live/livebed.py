"""Harness pieces shared by the live tests under tests/live/ (stdlib only).

Namespaces and veths with offloads and IPv6 off, their removal, SIGTERM turned into an
exception (so that `finally` still cleans up), EAL lcore choice, writing files, starting
nplb in a namespace and stopping it with SIGTERM, reading its final counters JSON.
"""
import ctypes
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

EAL_BASE = ["--no-huge", "--no-shconf", "-m", "512", "--log-level", "*:error"]


def make_log(name):
    """A log function printing `name: msg` on stderr."""
    def log(msg):
        print(f"{name}: {msg}", file=sys.stderr, flush=True)
    return log


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def eal_args(single_cpu_on_first=False):
    """Two lcores on the first two CPUs we may use; with one CPU, both lcores share it
    (CPU 0, or the one CPU we have with single_cpu_on_first)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return EAL_BASE + ["-l", f"{cpus[0]},{cpus[1]}"]
    c = cpus[0] if single_cpu_on_first else 0
    return EAL_BASE + ["--lcores", f"0@{c},1@{c}"]


def raise_on_sigterm():
    """meson's timeout sends SIGTERM: raise KeyboardInterrupt so `finally` still cleans up."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


# ---- namespaces ---------------------------------------------------------------------

def prepare_link(ns, dev):
    """No IPv6 (no router solicitations or MLD reports on the link), no addresses,
    offloads off; the device and lo up."""
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
    sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off")
    sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "rx", "off", check=False)
    sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


class Namespaces:
    """Network namespaces made by add(), removed by close() whatever happened."""

    def __init__(self):
        self.made = []

    def add(self, *names):
        for ns in names:
            sh("ip", "netns", "add", ns)
            self.made.append(ns)

    def close(self):
        for ns in self.made:
            # Processes still in the namespace are ours (nplb, peer): end them by pid.
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


class PairBed(Namespaces):
    """Two namespaces (nplb's, the peer's) joined by a veth pair; close() removes all."""

    def __init__(self, ns_lb, ns_peer, if_lb="lb0", if_peer="peer0"):
        super().__init__()
        self.ns_lb, self.ns_peer = ns_lb, ns_peer
        self.if_lb, self.if_peer = if_lb, if_peer

    def up(self):
        self.add(self.ns_lb, self.ns_peer)
        # Create the pair inside the namespaces: nothing of ours ever sits in the root one.
        sh("ip", "-n", self.ns_lb, "link", "add", self.if_lb, "type", "veth",
           "peer", "name", self.if_peer, "netns", self.ns_peer)
        for ns, dev in ((self.ns_lb, self.if_lb), (self.ns_peer, self.if_peer)):
            prepare_link(ns, dev)


class InNetns:
    """Runs a block in another network namespace (this thread only), then comes back.
    With a lock, holds it for the block (one namespace switch at a time)."""

    def __init__(self, name, lock=None):
        self.name = name
        self.lock = lock

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        self.home = os.open(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {self.name}")
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        try:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(self.home)
            if self.lock is not None:
                self.lock.release()


# ---- processes ----------------------------------------------------------------------

def wait_ready(ready_file, proc, errors, tries=100):
    """Waits (0.1 s steps) for ready_file to appear or proc to exit."""
    for _ in range(tries):
        if os.path.exists(ready_file) or proc.poll() is not None:
            return
        time.sleep(0.1)
    errors.append(f"peer not ready within {tries // 10} s")


def start_nplb(ns, nplb, conf, out_path, err_path):
    """nplb in namespace ns, stdout and stderr to files."""
    with open(out_path, "w") as out, open(err_path, "w") as err:
        return subprocess.Popen(["ip", "netns", "exec", ns, nplb, "--config", conf], stdout=out, stderr=err)


def stop_nplb(proc, errors, log, stop_wait=10, stop_bound=1.5):
    """Stops nplb the way an operator does (SIGTERM): it must exit 0 within stop_bound s."""
    if proc.poll() is not None:
        errors.append(f"nplb exited early with status {proc.returncode}")
        return
    proc.send_signal(signal.SIGTERM)
    t_stop = time.monotonic()
    try:
        proc.wait(timeout=stop_wait)
    except subprocess.TimeoutExpired:
        errors.append(f"nplb did not stop within {stop_wait} s of SIGTERM")
        proc.kill()
        proc.wait(timeout=5)
    t_stop = time.monotonic() - t_stop
    log(f"nplb stopped {t_stop:.2f} s after SIGTERM, status {proc.returncode}")
    if t_stop > stop_bound:
        errors.append(f"nplb took {t_stop:.2f} s to stop after SIGTERM (spec: within a second)")
    if proc.returncode != 0:
        errors.append(f"nplb exit status {proc.returncode} after SIGTERM")


def read_counters(out_path, errors):
    """nplb's final counters: its whole stdout, one JSON object (None, and an error, if not)."""
    with open(out_path) as f:
        out_text = f.read()
    try:
        return json.loads(out_text)
    except json.JSONDecodeError:
        errors.append(f"nplb stdout is not one JSON object: {out_text[-500:]!r}")
        return None


def kill_all(*procs):
    """SIGKILL whatever of procs still runs (None entries skipped)."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def keep_and_remove(work, keep):
    """Copies the work folder to keep (if given), then removes it."""
    if keep:
        subprocess.run(["cp", "-r", work + "/.", keep], check=False)
    subprocess.run(["rm", "-rf", work], check=False)


def report_failures(errors, took, log):
    """Logs each error and a summary; True if there were any."""
    if not errors:
        return False
    for e in errors:
        log("FAIL " + e)
    log(f"FAILED with {len(errors)} error(s) in {took:.1f} s")
    return True


# ---- files --------------------------------------------------------------------------

# One NodePort service, web: TCP 80 -> 8080, nodePort 30080.
WEB_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
"""


def write_empty_pcap(path):
    """A pcap file with its header only (DLT_EN10MB): a valid, empty capture."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


# Two NodePort services (str.format with tcp=, udp= nodePorts): web TCP 80 -> 8080, echo UDP 53 -> 5353.
WEB_AND_ECHO_SERVICES = """\
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
