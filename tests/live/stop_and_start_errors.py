#!/usr/bin/python3
"""Start-time failures and clean stops of the real nplb binary.

    stop_and_start_errors.py BUILD/nplb [--keep DIR]

No network and no root needed: EAL runs with --no-huge --no-shconf, ports are
net_null / net_pcap vdevs or an absent PCI address.

1. Start-time checks (issue 2: "Checks that need the running system (lcores, ports
   present, queue counts, pool sizes) run at start and fail it with the same format"):
   each case writes a config, runs nplb, and asserts exit status 1 and a stderr line
   `FILE:LINE[:COLUMN]: message` naming the config file and the exact line of the
   offending key, with the message mentioning that key; nothing on stdout.
2. Stops: nplb on net_null0 (whose RX returns packets endlessly, so the worker is
   busy) gets SIGTERM, then in a second run SIGINT; each must exit 0 within a second
   of the signal and print its final counters as one JSON object on stdout, with
   port rx > 0 (the load was real).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import livebed  # noqa: E402

STOP_DEADLINE_S = 1.0
START_TIMEOUT_S = 30

SERVICES = livebed.WEB_SERVICE

BASE_EAL = ["--no-huge", "--no-shconf", "-m", "256", "--log-level", "*:error"]


log = livebed.make_log("stop_and_start_errors")


def config(eal, workers, device, extra=""):
    """A config whose key lines are fixed: see LINES."""
    return (
        "dataplane:\n"                                            # 1
        f"  eal: {json.dumps(eal)}\n"                              # 2
        f"  workers: {workers}\n"                                  # 3
        f"  mbufs: {extra or 16383}\n"                             # 4
        "  ports:\n"                                               # 5
        "    - name: lan\n"                                        # 6
        f"      device: {json.dumps(device)}\n"                    # 7
        '      addresses: ["203.0.113.1/24", "198.51.100.1/24"]\n'  # 8
        "forwarding:\n"
        "  mode: nat\n"
        '  frontends: ["203.0.113.10"]\n'
        '  snat: ["198.51.100.2"]\n'
        "cluster:\n"
        "  nodes:\n"
        "    - {name: n1, address: 198.51.100.21}\n"
        '  manifests: ["services.yaml"]\n')


LINES = {"eal": 2, "workers": 3, "mbufs": 4, "device": 7}


def lcores(n):
    """EAL lcore arguments for n lcores on whatever CPUs we may use (lcores may share a CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    return ["--lcores", ",".join(f"{i}@{cpus[min(i, len(cpus) - 1)]}" for i in range(n))]


def start_error_cases(work):
    pcap = os.path.join(work, "empty.pcap")
    livebed.write_empty_pcap(pcap)
    one_lcore = ["-l", str(sorted(os.sched_getaffinity(0))[0])]
    # (name, eal, workers, device, mbufs, key lines accepted, words the message must contain)
    return [
        ("workers beyond lcores (1 worker, 1 lcore)",
         BASE_EAL + one_lcore, 1, "net_null0", "", {LINES["workers"]}, ["workers", "lcore"]),
        ("workers beyond lcores (2 workers, 2 lcores)",
         BASE_EAL + lcores(2), 2, "net_null0", "", {LINES["workers"]}, ["workers", "lcore"]),
        ("lcore not enabled on this machine (-l 0,127)",
         BASE_EAL + ["-l", "0,127"], 1, "net_null0", "", {LINES["eal"]}, ["eal"]),
        ("PCI device not present",
         BASE_EAL + lcores(2), 1, "0000:ff:1f.7", "", {LINES["device"]}, ["device", "0000:ff:1f.7"]),
        ("vdev that fails to probe",
         BASE_EAL + lcores(2), 1, "net_pcap0,rx_pcap=/nonexistent/in.pcap", "", {LINES["device"]},
         ["device", "net_pcap0"]),
        # The queue count is the port's and the workers' business: either line names the culprit.
        ("queues beyond the device (net_pcap has 1, 2 workers)",
         BASE_EAL + lcores(3), 2, f"net_pcap0,rx_pcap={pcap}", "", {LINES["device"], LINES["workers"]},
         ["queue"]),
        ("mbufs too few for descriptors",
         BASE_EAL + lcores(2), 1, "net_null0", "512", {LINES["mbufs"]}, ["mbufs"]),
    ]


LOCATED = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.+)$")


def run_start_error(nplb, work, idx, case, errors):
    name, eal, workers, device, mbufs, lines, words = case
    conf = os.path.join(work, f"start_error_{idx}.yaml")
    with open(conf, "w") as f:
        f.write(config(eal, workers, device, mbufs))
    try:
        r = subprocess.run([nplb, "--config", conf], capture_output=True, text=True, timeout=START_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        errors.append(f"[{name}] nplb still running after {START_TIMEOUT_S} s (expected a start failure)")
        return
    problems = []
    if r.returncode != 1:
        problems.append(f"exit status {r.returncode}, expected 1")
    if r.stdout.strip():
        problems.append(f"stdout not empty: {r.stdout[:200]!r}")
    # The error lines: those that begin with the config file's path.
    ours = [l for l in r.stderr.splitlines() if l.startswith(conf)]
    located = [m for m in (LOCATED.match(l) for l in ours) if m and m.group("file") == conf]
    hit = [m for m in located if int(m.group("line")) in lines
           and all(w.lower() in m.group("msg").lower() for w in words)]
    if not hit:
        problems.append(f"no stderr line '{conf}:LINE[:COL]: ...{'...'.join(words)}...' with LINE in "
                        f"{sorted(lines)}; lines naming the file: {ours or '(none)'}")
    if problems:
        errors.append(f"[{name}] " + "; ".join(problems))
        log(f"FAIL {name}:")
        for p in problems:
            log(f"    {p}")
    else:
        log(f"ok   {name}: {hit[0].group(0)}")


def run_stop(nplb, work, sig, errors):
    """nplb busy on net_null0; the signal must stop it within a second, exit 0, JSON on stdout."""
    name = signal.Signals(sig).name
    conf = os.path.join(work, f"stop_{name}.yaml")
    with open(conf, "w") as f:
        f.write(config(BASE_EAL + lcores(2), 1, "net_null0"))
    out_path, err_path = os.path.join(work, f"stop_{name}.out"), os.path.join(work, f"stop_{name}.log")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([nplb, "--config", conf], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        # Running = the worker was launched; then let it chew on net_null's endless RX a while.
        deadline = time.monotonic() + START_TIMEOUT_S
        started = False
        while time.monotonic() < deadline and proc.poll() is None:
            with open(err_path) as f:
                if re.search(r"worker 0 on lcore", f.read()):
                    started = True
                    break
            time.sleep(0.05)
        if not started:
            errors.append(f"[{name}] nplb did not start its worker within {START_TIMEOUT_S} s "
                          f"(exit {proc.poll()}): {open(err_path).read()[-1500:]}")
            return
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            errors.append(f"[{name}] nplb still running 10 s after {name}")
            return
        took = time.monotonic() - t0
        problems = []
        if took > STOP_DEADLINE_S:
            problems.append(f"stopped {took:.3f} s after {name} (spec: within a second)")
        if proc.returncode != 0:
            problems.append(f"exit status {proc.returncode} after {name}, expected 0")
        text = open(out_path).read()
        try:
            counters = json.loads(text)  # exactly one JSON value: trailing garbage fails here
        except json.JSONDecodeError as e:
            counters = None
            problems.append(f"stdout is not one JSON object ({e}): {text[:300]!r}")
        if counters is not None:
            if not isinstance(counters, dict):
                problems.append(f"stdout JSON is a {type(counters).__name__}, not an object")
            else:
                for key in ("ports", "drops", "flows_created", "services", "backends"):
                    if key not in counters:
                        problems.append(f"final counters lack '{key}'")
                lan = counters.get("ports", {}).get("lan", {})
                if not isinstance(lan.get("rx"), int) or lan.get("rx", 0) <= 0:
                    problems.append(f"ports.lan.rx {lan.get('rx')!r}: net_null0 should have kept it busy")
                if "default/web:80" not in counters.get("services", {}):
                    problems.append(f"services lack default/web:80: {list(counters.get('services', {}))}")
        log_text = open(err_path).read()
        if "final counters" not in log_text:
            problems.append("the log (stderr) does not carry the final counters")
        if problems:
            errors.append(f"[{name}] " + "; ".join(problems))
            log(f"FAIL stop by {name}:")
            for p in problems:
                log(f"    {p}")
            log("nplb log tail:\n" + log_text[-1500:])
        else:
            log(f"ok   stop by {name}: exit 0 after {took:.3f} s, "
                f"{counters['ports']['lan']['rx']} packets received under load, counters JSON parsed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nplb", help="path to the nplb binary")
    ap.add_argument("--keep", help="copy configs and logs to this folder")
    args = ap.parse_args()
    nplb = os.path.abspath(args.nplb)
    if not os.access(nplb, os.X_OK):
        log(f"{nplb} is not executable")
        return 1

    livebed.raise_on_sigterm()  # meson's timeout: still clean up in finally

    work = tempfile.mkdtemp(prefix="nplb-sse-")
    errors = []
    t0 = time.monotonic()
    try:
        with open(os.path.join(work, "services.yaml"), "w") as f:
            f.write(SERVICES)
        for i, case in enumerate(start_error_cases(work)):
            run_start_error(nplb, work, i, case, errors)
        for sig in (signal.SIGTERM, signal.SIGINT):
            run_stop(nplb, work, sig, errors)
    except (Exception, KeyboardInterrupt) as e:
        errors.append(f"harness: {e!r}")
    finally:
        if args.keep:
            subprocess.run(["cp", "-r", work + "/.", args.keep], check=False)
        shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - t0
    if livebed.report_failures(errors, took, log):
        return 1
    log(f"PASS in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
