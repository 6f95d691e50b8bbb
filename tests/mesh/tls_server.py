"""An external HTTPS server for the egress tests: `python tls_server.py --listen 0.0.0.0:443
--cert C --key K --sni NAME [--client-ca CA]`. It refuses a handshake whose SNI is not NAME,
and with `--client-ca` one without a client certificate signed by that CA. Every answer is 200
with JSON saying what the TLS handshake carried (SNI, version, client certificate subject).
Standalone on purpose: it runs inside a pod's network namespace."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        connection = self.request
        assert isinstance(connection, ssl.SSLSocket)
        peer = connection.getpeercert() or {}
        subject = {str(pair[0]): str(pair[1]) for pairs in peer.get("subject", ())
                   for pair in pairs}
        body = json.dumps({
            "tls": True,
            "sni": getattr(connection, "sni_seen", None),
            "version": connection.version(),
            "client_subject": subject.get("commonName", ""),
            "host": self.headers.get("Host", ""),
            "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend-Name", "tls-server")
        self.end_headers()
        self.wfile.write(body)


def _context(cert: str, key: str, sni: str, client_ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)

    def check_sni(connection: ssl.SSLSocket | ssl.SSLObject, name: str | None,
                  _: ssl.SSLContext) -> int | None:
        connection.sni_seen = name  # type: ignore[union-attr]
        if name != sni:
            sys.stderr.write(f"refused SNI {name!r}, want {sni!r}\n")
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    context.sni_callback = check_sni
    return context


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--sni", required=True)
    parser.add_argument("--client-ca", default="")
    parser.add_argument("--exit-after", type=float, default=1800.0)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), _Handler)
    server.daemon_threads = True
    # A failed handshake raises from accept(); socketserver drops that connection only.
    server.socket = _context(args.cert, args.key, args.sni, args.client_ca).wrap_socket(
        server.socket, server_side=True)
    threading.Timer(args.exit_after, server.shutdown).start()
    print(f"listening on {args.listen}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
