"""The client application of a pod: `python client.py URL [--host H] [--header K:V ...]
[--count N] [--concurrency C]` sends N GET requests over C connections at once (each
connection keep-alive, like most HTTP clients; C=1 is one connection) and prints one JSON
list: status, the response headers, the answering backend's version and the time each took.
Status 0 means no answer. Standalone on purpose: it runs inside a pod's network namespace."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def fetch(url: str, host: str, count: int, timeout: float,
          headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    parts = urlsplit(url)
    path = parts.path or "/"
    sent = dict(headers or {})
    if host:
        sent["Host"] = host
    results: list[dict[str, Any]] = []
    connection: http.client.HTTPConnection | None = None
    for _ in range(count):
        conn = connection or http.client.HTTPConnection(parts.hostname or "", parts.port or 80,
                                                        timeout=timeout)
        connection = conn
        started = time.monotonic()
        try:
            conn.request("GET", path, headers=sent)
            response = conn.getresponse()
            body = response.read()
            received = {k.lower(): v for k, v in response.getheaders()}
            results.append({"status": response.status, "headers": received,
                            "version": received.get("x-backend-version", ""),
                            "body": body[:8192].decode("utf-8", errors="replace")})
            if received.get("connection", "").lower() == "close":
                conn.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            results.append({"status": 0, "headers": {}, "version": "", "body": repr(error)})
            conn.close()
            connection = None
        results[-1]["elapsed"] = round(time.monotonic() - started, 4)
    if connection is not None:
        connection.close()
    return results


def fetch_concurrently(url: str, host: str, count: int, timeout: float, *,
                       headers: dict[str, str], concurrency: int) -> list[dict[str, Any]]:
    """`count` requests shared by `concurrency` connections that start together."""
    shares = [count // concurrency + (1 if i < count % concurrency else 0)
              for i in range(concurrency)]
    start = threading.Barrier(concurrency)
    outputs: list[list[dict[str, Any]]] = [[] for _ in shares]

    def worker(index: int) -> None:
        start.wait(timeout)
        outputs[index] = fetch(url, host, shares[index], timeout, headers)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [result for output in outputs for result in output]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--host", default="")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    count = max(1, min(args.count, 1000))
    concurrency = max(1, min(args.concurrency, 8, count))
    json.dump(fetch_concurrently(args.url, args.host, count, args.timeout, headers=headers,
                                 concurrency=concurrency), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
