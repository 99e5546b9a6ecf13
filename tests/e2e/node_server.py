#!/usr/bin/python3
"""A test-bed node: what kube-proxy's NodePort would lead to, answering with the node's name.

    node_server.py --name n1 [--http-port 30080] [--udp-port 30053]

HTTP on every address: GET answers "<name>\\n" with the header X-Seen-From giving the
peer address the node saw (the appliance's SNAT address and port, in nat mode).
UDP echo: a datagram comes back as "<name> <datagram>".
"""
import argparse
import http.server
import socket
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--http-port", type=int, default=30080)
    ap.add_argument("--udp-port", type=int, default=30053)
    a = ap.parse_args()
    name = a.name.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = name + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Seen-From", f"{self.client_address[0]}:{self.client_address[1]}")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stderr.write(f"{a.name} http {self.client_address[0]}:{self.client_address[1]} {fmt % args}\n")

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    # The default backlog of 5 overflows under wrk -c8 (connections then wait
    # a second for a SYN retransmit): a real server's backlog.
    http.server.ThreadingHTTPServer.request_queue_size = 128
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", a.http_port), Handler)
    httpd.daemon_threads = True

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", a.udp_port))

    def echo():
        while True:
            data, peer = udp.recvfrom(65535)
            sys.stderr.write(f"{a.name} udp {peer[0]}:{peer[1]} {len(data)} bytes\n")
            udp.sendto(name + b" " + data, peer)

    threading.Thread(target=echo, daemon=True).start()
    sys.stderr.write(f"{a.name}: http :{a.http_port}, udp echo :{a.udp_port}\n")
    sys.stderr.flush()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
