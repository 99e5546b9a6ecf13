#!/usr/bin/python3
"""Writes a large cluster for the loader's scale test: SERVICES services with
ENDPOINTS endpoints in all (one EndpointSlice per service), NODES nodes, spread
over FILES manifest files, as `kubectl get -o yaml` prints them.

usage: gen_scale.py OUT_DIR [--services 10000] [--endpoints 100000] [--nodes 100] [--files 100]
Writes OUT_DIR/nplb.yaml and OUT_DIR/manifests/*.yaml. Pod backends, explicit
nodePorts (range 20000-60000), every tenth service without one (nplb allocates
it; state_dir is OUT_DIR/state)."""
import argparse
import os

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--services", type=int, default=10000)
ap.add_argument("--endpoints", type=int, default=100000)
ap.add_argument("--nodes", type=int, default=100)
ap.add_argument("--files", type=int, default=100)
a = ap.parse_args()

os.makedirs(os.path.join(a.out, "manifests"), exist_ok=True)
with open(os.path.join(a.out, "nplb.yaml"), "w") as f:
    f.write("""dataplane:
  eal: ["--no-huge", "--no-shconf"]
  ports:
    - name: lan
      device: "net_null0"
      addresses: ["203.0.113.1/24", "198.51.100.1/24"]
forwarding:
  frontends: ["203.0.113.10"]
  snat: ["198.51.100.2"]
  backends: pods
cluster:
  node_port_range: 20000-60000
  manifests: ["manifests"]
state_dir: state
""")


def node_ip(i):
    return "198.51.100.%d" % (10 + i % 240) if i < 240 else "10.%d.%d.1" % (200 + i // 65536, (i // 256) % 256)


with open(os.path.join(a.out, "manifests", "00-nodes.yaml"), "w") as f:
    f.write("apiVersion: v1\nkind: List\nitems:\n")
    for i in range(a.nodes):
        f.write("""- apiVersion: v1
  kind: Node
  metadata:
    name: node-%d
    labels: {kubernetes.io/hostname: node-%d}
  spec:
    podCIDRs: ["10.%d.%d.0/24"]
  status:
    addresses:
    - {type: InternalIP, address: %s}
    - {type: Hostname, address: node-%d}
    conditions:
    - {type: Ready, status: "True"}
""" % (i, i, 64 + i // 256, i % 256, node_ip(i), i))

per_service = max(1, a.endpoints // max(1, a.services))
per_file = (a.services + a.files - 1) // a.files
for fi in range(a.files):
    with open(os.path.join(a.out, "manifests", "svc-%04d.yaml" % fi), "w") as f:
        f.write("apiVersion: v1\nkind: List\nitems:\n")
        for s in range(fi * per_file, min(a.services, (fi + 1) * per_file)):
            node_port = "" if s % 10 == 9 else "\n      nodePort: %d" % (20000 + s)
            f.write("""- apiVersion: v1
  kind: Service
  metadata:
    name: svc-%d
    namespace: ns-%d
    labels: {app: svc-%d}
  spec:
    type: NodePort
    clusterIP: 10.96.%d.%d
    selector: {app: svc-%d}
    ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: http%s
""" % (s, s % 50, s, (s // 250) % 256, s % 250 + 1, s, node_port))
            f.write("""- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: svc-%d-abcde
    namespace: ns-%d
    labels: {kubernetes.io/service-name: svc-%d}
  addressType: IPv4
  ports:
  - {name: http, protocol: TCP, port: 8080}
  endpoints:
""" % (s, s % 50, s))
            for e in range(per_service):
                n = (s * per_service + e) % a.nodes
                host = (s * per_service + e) // a.nodes
                f.write("""  - addresses: ["10.%d.%d.%d"]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: node-%d
""" % (64 + n // 256, n % 256, 2 + host % 250, n))
