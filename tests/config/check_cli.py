#!/usr/bin/python3
"""Runs the real `nplb --check` on the configs under cases/ and checks exit
codes, stderr lines and the exact stdout JSON. Usage: check_cli.py NPLB CASES"""
import subprocess
import sys

NPLB, CASES = sys.argv[1], sys.argv[2]

GOOD_JSON = (
    '{"frontends": ["203.0.113.10"], '
    '"nodes": [{"name": "n1", "address": "198.51.100.21"}, {"name": "n2", "address": "198.51.100.22"}, '
    '{"name": "n3", "address": "198.51.100.23"}], '
    '"services": ['
    '{"namespace": "default", "name": "web", "type": "NodePort", "ports": '
    '[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]}, '
    '{"namespace": "kube-system", "name": "dns", "type": "LoadBalancer", "ports": '
    '[{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns", "nodePort": 30053}, '
    '{"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": "dns-tcp", "nodePort": 30053}]}]}'
)

CASES_TABLE = [
    # (config, exit code, stderr lines that must appear, exact stdout or None)
    ("good/nplb.yaml", 0, [], GOOD_JSON),
    ("bad-settings/nplb.yaml", 1, [
        "bad-settings/nplb.yaml:4:12: dataplane.workers: must be between 1 and 128, got 0",
        "bad-settings/nplb.yaml:13:3: unknown key 'mdoe' in forwarding; did you mean 'mode'?",
        'bad-settings/nplb.yaml:18:15: cluster.manifests[0]: "missing.yaml" not found '
        "(looked for bad-settings/missing.yaml)",
    ], None),
    ("bad-objects/nplb.yaml", 1, [
        "bad-objects/services.yaml:20:18: Service default/zero: spec.ports[0].port: Invalid value: 0: "
        "must be between 1 and 65535, inclusive",
        "bad-objects/services.yaml:13:44: Service default/api: spec.ports[0].nodePort: Invalid value: 30080: "
        "provided port is already allocated",
    ], None),
    ("syntax/nplb.yaml", 1, [
        "syntax/nplb.yaml:4:1: YAML syntax error: end of sequence flow not found",
    ], None),
]

failures = 0
for config, want_rc, want_stderr, want_stdout in CASES_TABLE:
    run = subprocess.run([NPLB, "--config", config, "--check"], cwd=CASES,
                         capture_output=True, text=True, timeout=30)
    problems = []
    if run.returncode != want_rc:
        problems.append(f"exit code {run.returncode}, want {want_rc}")
    lines = run.stderr.splitlines()
    for line in want_stderr:
        if line not in lines:
            problems.append(f"stderr lacks: {line}")
    if want_rc != 0 and len([l for l in lines if l.startswith(config.split("/")[0] + "/")]) != len(want_stderr):
        problems.append(f"stderr has other error lines than the {len(want_stderr)} expected")
    if want_stdout is not None and run.stdout.strip() != want_stdout:
        problems.append(f"stdout:\n  {run.stdout.strip()}\nwant:\n  {want_stdout}")
    if want_rc != 0 and run.stdout.strip():
        problems.append(f"stdout should be empty on failure, got: {run.stdout.strip()[:200]}")
    status = "ok" if not problems else "FAIL"
    print(f"{status}: nplb --check {config}")
    for p in problems:
        print("   ", p)
    if problems:
        print("    stderr was:\n      " + "\n      ".join(lines))
        failures += 1

sys.exit(1 if failures else 0)
