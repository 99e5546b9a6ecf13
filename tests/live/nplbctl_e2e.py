#!/usr/bin/python3
"""nplbctl against the real nplb binary (issue 3: control API and nplbctl).

    nplbctl_e2e.py BUILD/nplb BUILD/nplbctl [--keep DIR]

No network and no root: nplb runs with --no-huge --no-shconf on a net_pcap port whose
RX pcap is empty but valid, so it idles until SIGTERM. api.listen is 127.0.0.1 on a
port that was free a moment ago (bound to port 0 and released).

Checks, in order:
 1. /v1/status answers (waited for, up to START_TIMEOUT_S) with the documented keys.
 2. `nplbctl get svc`: kubectl-style header and the web row, `80:30080/TCP` and the
    backend count; `-o wide` lists 198.51.100.21:30080 and .22; `-o json` is the
    API's JSON (services[0] as documented); `-o yaml` names the service.
 3. `get nodes` / `get endpoints` print the nodes and backends.
 4. `status` shows the generation; `reload` with nothing changed exits 0; after a
    second service is added to the manifest it prints one line per change naming it;
    after a YAML syntax error it exits 1 with the error, and `get svc` still shows
    both services (the running config stayed).
 5. Errors: an unused port -> "cannot reach nplb at ...: Connection refused", exit 1;
    a usage error exits 2.
 6. SIGTERM: nplb exits 0 within STOP_DEADLINE_S and prints its counters as JSON.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import livebed  # noqa: E402

START_TIMEOUT_S = 30
STOP_DEADLINE_S = 5

SERVICES = livebed.WEB_SERVICE

DNS = """\
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default}
spec:
  type: NodePort
  selector: {app: dns}
  ports:
    - {name: dns, protocol: UDP, port: 53, targetPort: 53, nodePort: 30053}
"""

failures = []


log = livebed.make_log("nplbctl_e2e")


def check(cond, what, detail=""):
    if cond:
        log(f"ok   {what}")
    else:
        log(f"FAIL {what}" + (f"\n{detail}" if detail else ""))
        failures.append(what)
    return cond


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def eal_args():
    cpus = sorted(os.sched_getaffinity(0))
    if 0 in cpus and 1 in cpus:
        lcores = ["-l", "0,1"]
    else:
        a = cpus[0]
        b = cpus[1] if len(cpus) > 1 else cpus[0]
        lcores = ["--lcores", f"0@{a},1@{b}"]
    return ["--no-huge", "--no-shconf", "-m", "256", *lcores, "--log-level", "*:error"]


def config(work, listen):
    cfg = {
        "dataplane": {
            "eal": eal_args(),
            "workers": 1,
            "ports": [{
                "name": "lan",
                "device": f"net_pcap0,rx_pcap={work}/in.pcap,tx_pcap={work}/out.pcap",
                "addresses": ["203.0.113.1/24", "198.51.100.1/24"],
            }],
        },
        "forwarding": {"mode": "nat", "frontends": ["203.0.113.10"], "snat": ["198.51.100.2"]},
        "cluster": {
            "nodes": [{"name": "n1", "address": "198.51.100.21"},
                      {"name": "n2", "address": "198.51.100.22"}],
            "manifests": ["services.yaml"],
        },
        "api": {"listen": listen},
    }
    return json.dumps(cfg, indent=2) + "\n"  # JSON is YAML


def wait_for_status(proc, addr):
    deadline = time.monotonic() + START_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, f"nplb exited with {proc.returncode} before the API answered"
        try:
            with urllib.request.urlopen(f"http://{addr}/v1/status", timeout=2) as r:
                return json.loads(r.read()), None
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.1)
    return None, f"no answer from http://{addr}/v1/status within {START_TIMEOUT_S}s: {last}"


def ctl(nplbctl, addr, *args):
    r = subprocess.run([nplbctl, "-s", addr, *args], capture_output=True, text=True, timeout=60)
    log(f"$ nplbctl -s {addr} {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}")
    return r


def run(nplb, nplbctl, work):
    livebed.write_empty_pcap(f"{work}/in.pcap")
    with open(f"{work}/services.yaml", "w") as f:
        f.write(SERVICES)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    conf = f"{work}/nplb.yaml"
    with open(conf, "w") as f:
        f.write(config(work, addr))

    # Before nplb starts: nothing listens there.
    r = ctl(nplbctl, addr, "status")
    check(r.returncode == 1 and r.stderr.strip() == f"nplbctl: cannot reach nplb at {addr}: Connection refused",
          "unreachable API: message and exit 1", r.stderr)
    r = ctl(nplbctl, addr, "get")
    check(r.returncode == 2 and "Usage: nplbctl" in r.stderr, "usage error: exit 2 with usage text")
    r = ctl(nplbctl, addr, "get", "svc", "-o", "xml")
    check(r.returncode == 2, "unknown output format: exit 2")

    out = open(f"{work}/stdout", "w")
    err = open(f"{work}/stderr", "w")
    proc = subprocess.Popen([nplb, "--config", conf], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        status, why = wait_for_status(proc, addr)
        if not check(status is not None, f"GET /v1/status answers at {addr}", why or ""):
            return
        check(all(k in status for k in ("version", "generation", "uptime_seconds", "workers", "config",
                                        "last_reload")),
              "status has the documented keys", json.dumps(status))

        r = ctl(nplbctl, addr, "get", "svc")
        lines = r.stdout.splitlines()
        check(r.returncode == 0 and lines and
              re.match(r"^NAMESPACE\s+NAME\s+TYPE\s+FRONTENDS\s+PORT\(S\)\s+BACKENDS$", lines[0]) is not None,
              "get svc: header")
        row = next((l.split() for l in lines[1:] if l.split()[:2] == ["default", "web"]), None)
        check(row == ["default", "web", "NodePort", "203.0.113.10", "80:30080/TCP", "2"],
              "get svc: the web row", repr(row))

        r = ctl(nplbctl, addr, "get", "svc", "-o", "wide")
        check(r.returncode == 0 and "198.51.100.21:30080" in r.stdout and "198.51.100.22:30080" in r.stdout,
              "get svc -o wide: backend addresses")

        r = ctl(nplbctl, addr, "get", "svc", "-o", "json")
        try:
            doc = json.loads(r.stdout)
            svc = doc["services"][0]
            ok = (svc["namespace"], svc["name"], svc["type"], svc["frontends"]) == \
                ("default", "web", "NodePort", ["203.0.113.10"]) and \
                svc["ports"][0]["nodePort"] == 30080 and \
                sorted(b["address"] for b in svc["ports"][0]["backends"]) == ["198.51.100.21", "198.51.100.22"]
        except Exception as e:
            ok = False
            log(f"get svc -o json: {e}")
        check(r.returncode == 0 and ok, "get svc -o json: the documented shape")

        r = ctl(nplbctl, addr, "get", "svc", "-o", "yaml")
        check(r.returncode == 0 and "- namespace: default\n  name: web\n" in r.stdout, "get svc -o yaml")

        r = ctl(nplbctl, addr, "get", "nodes")
        # No probe can leave this pcap-only appliance (no route): the nodes are
        # honestly "unknown" (and serve); with a kernel path they turn up/down.
        check(r.returncode == 0 and re.search(r"^n1\s+198\.51\.100\.21\s+(up|unknown)", r.stdout, re.M) is not None,
              "get nodes")
        r = ctl(nplbctl, addr, "get", "endpoints")
        check(r.returncode == 0 and "default/web" in r.stdout and "198.51.100.21:30080" in r.stdout,
              "get endpoints")
        r = ctl(nplbctl, addr, "get", "stats", "-o", "json")
        try:
            stats = json.loads(r.stdout)
            ok = "lan" in stats["ports"] and "drops" in stats
        except Exception:
            ok = False
        check(r.returncode == 0 and ok, "get stats -o json: the counters object")

        r = ctl(nplbctl, addr, "status")
        gen0 = status["generation"]
        check(r.returncode == 0 and re.search(rf"^Generation:\s+{gen0}$", r.stdout, re.M) is not None,
              "status shows the generation")

        r = ctl(nplbctl, addr, "reload")
        check(r.returncode == 0, "reload with nothing changed: exit 0")

        with open(f"{work}/services.yaml", "a") as f:
            f.write(DNS)
        r = ctl(nplbctl, addr, "reload")
        check(r.returncode == 0 and any("default/dns" in l for l in r.stdout.splitlines()),
              "reload after adding a service: a line names it")
        r = ctl(nplbctl, addr, "get", "svc")
        check(re.search(r"^default\s+dns\s+NodePort\s+203\.0\.113\.10\s+53:30053/UDP\s+2$", r.stdout, re.M)
              is not None, "get svc after reload: the new service")

        with open(f"{work}/services.yaml", "a") as f:
            f.write("---\nkind: Service\nmetadata: {name: broken\n")
        r = ctl(nplbctl, addr, "reload")
        check(r.returncode == 1 and "services.yaml" in r.stderr, "reload of a YAML syntax error: exit 1, the error")
        r = ctl(nplbctl, addr, "get", "svc")
        check(r.returncode == 0 and re.search(r"^default\s+dns\s", r.stdout, re.M) and
              re.search(r"^default\s+web\s", r.stdout, re.M), "refused reload: running services unchanged")
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_DEADLINE_S + 25)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        took = time.monotonic() - t0
        out.close()
        err.close()
    check(rc == 0 and took <= STOP_DEADLINE_S, f"SIGTERM: exit 0 within {STOP_DEADLINE_S}s",
          f"exit {rc} after {took:.1f}s\n" + open(f"{work}/stderr").read()[-2000:])
    try:
        json.loads(open(f"{work}/stdout").read())
        ok = True
    except Exception:
        ok = False
    check(ok, "final counters on stdout are JSON")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nplb")
    ap.add_argument("nplbctl")
    ap.add_argument("--keep", help="work in this folder and keep it")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="nplbctl_e2e_")
    os.makedirs(work, exist_ok=True)

    def on_term(signum, frame):
        raise SystemExit(f"nplbctl_e2e: stopped by signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    try:
        run(os.path.abspath(a.nplb), os.path.abspath(a.nplbctl), work)
    finally:
        if not a.keep and not failures:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        log(f"{len(failures)} check(s) failed (files in {work}):\n  " + "\n  ".join(failures))
        sys.exit(1)
    log("all checks passed")


if __name__ == "__main__":
    main()
