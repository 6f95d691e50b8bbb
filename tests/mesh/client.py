"""The client application of a pod: `python client.py URL [--host H] [--count N]` sends N
GET requests (one connection, keep-alive, like most HTTP clients) and prints one JSON list:
status, the response headers, and the answering backend's version. Status 0 means no
answer. Standalone on purpose: it runs inside a pod's network namespace."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from typing import Any
from urllib.parse import urlsplit


def fetch(url: str, host: str, count: int, timeout: float) -> list[dict[str, Any]]:
    parts = urlsplit(url)
    path = parts.path or "/"
    results: list[dict[str, Any]] = []
    connection: http.client.HTTPConnection | None = None
    for _ in range(count):
        conn = connection or http.client.HTTPConnection(parts.hostname or "", parts.port or 80,
                                                        timeout=timeout)
        connection = conn
        try:
            headers = {"Host": host} if host else {}
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            received = {k.lower(): v for k, v in response.getheaders()}
            results.append({"status": response.status, "headers": received,
                            "version": received.get("x-backend-version", ""),
                            "body": body[:2048].decode("utf-8", errors="replace")})
            if received.get("connection", "").lower() == "close":
                conn.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            results.append({"status": 0, "headers": {}, "version": "", "body": repr(error)})
            conn.close()
            connection = None
    if connection is not None:
        connection.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--host", default="")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    json.dump(fetch(args.url, args.host, max(1, min(args.count, 1000)), args.timeout),
              sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
