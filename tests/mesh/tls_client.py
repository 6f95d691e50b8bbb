"""A TLS client application of a pod: `python tls_client.py HOST PORT --sni NAME --cafile CA`
opens one TLS connection per request with that SNI, verifies the server's certificate against
the CA and the SNI name, sends a GET, and prints one JSON list: the status, the answering
backend's version and the certificate's common name (status 0 and the error otherwise).
Standalone on purpose: it runs inside a pod's network namespace."""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
from typing import Any


def fetch(host: str, port: int, sni: str, cafile: str, timeout: float) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (socket.create_connection((host, port), timeout=timeout) as raw,
              context.wrap_socket(raw, server_hostname=sni) as conn):
            cert: dict[str, Any] = dict(conn.getpeercert() or {})
            subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
            conn.sendall(f"GET /headers HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except (OSError, ssl.SSLError) as error:
        return {"status": 0, "version": "", "peer": "", "error": repr(error)}
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    return {"status": int(head[0].split()[1]), "version": headers.get("x-backend-version", ""),
            "peer": subject.get("commonName", ""), "error": ""}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--sni", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    json.dump([fetch(args.host, args.port, args.sni, args.cafile, args.timeout)
               for _ in range(max(1, min(args.count, 100)))], sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
