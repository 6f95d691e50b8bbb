"""An identity provider's key server inside a pod: `python jwks_app.py --jwks-file FILE --pod
--listen 0.0.0.0:8080 [--exit-after SECONDS]` answers `GET /jwks.json` with the file's content
(read on each request, so a test may replace the keys) and counts requests in its log
(`fetch <n>` lines). Standalone on purpose (stdlib only): it runs inside a pod's network
namespace, as the mesh harness runs applications."""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JWKS_PATH = "/jwks.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jwks-file", required=True, type=Path)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--pod", action="store_true")
    parser.add_argument("--exit-after", type=float, default=1800.0)
    # Given to every pod application by the harness; a key server has no use for them.
    parser.add_argument("--version", default="")
    parser.add_argument("--name", default="")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    fetches = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            nonlocal fetches
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            body = args.jwks_file.read_bytes()
            with lock:
                fetches += 1
                print(f"fetch {fetches}", flush=True)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    timer = threading.Timer(args.exit_after, server.shutdown)
    timer.daemon = True
    timer.start()
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
