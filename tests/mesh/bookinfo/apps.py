"""Bookinfo stand-ins, one process per pod: `python apps.py --name productpage|details|
reviews|ratings --version v1 --listen 0.0.0.0:9080 [--exit-after SECONDS]`.

They keep what the W3 walkthrough observes of Istio's Bookinfo, and answer JSON:

- productpage: `GET /productpage` calls details (`/details/0`) and reviews (`/reviews/0`),
  forwarding `end-user` (from the header, else from the `user` cookie `/login` sets) and the
  request-id/tracing headers; it reports each sub-call's status, body or error and duration.
  Also `/static/*`, `/login`, `/logout`, `/api/v1/products[/...]`.
- details: `GET /details/<id>`.
- reviews: `GET /reviews/<id>` with its version; v2 and v3 call ratings (`/ratings/<id>`) with
  a client timeout (v2 10 s, v3 2.5 s, as Bookinfo's black and red stars) and report the
  rating or "Ratings service is currently unavailable" with the status they got.
- ratings: `GET /ratings/<id>`.

Every app logs one `request <json>` line per request (method, path, Host, end-user,
x-forwarded-client-cert), so a test can see what a pod received, e.g. the `-shadow` Host of
mirrored requests or the caller's identity its sidecar forwarded. Standalone on
purpose (stdlib only): it runs inside a pod's network namespace.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOG_LOCK = threading.Lock()

PORT = 9080
# What productpage forwards to the services it calls (Bookinfo's propagated headers).
FORWARDED_HEADERS = ("end-user", "x-request-id", "x-b3-traceid", "x-b3-spanid",
                     "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3", "traceparent",
                     "tracestate", "x-ot-span-context", "user-agent")
# productpage's timeout on its sub-calls (Bookinfo's is 3 s for reviews).
PRODUCTPAGE_TIMEOUT = 3.0
RATINGS_TIMEOUT = {"v2": 10.0, "v3": 2.5}
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


def call(host: str, path: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """GET http://host:9080/path; status 0 and the error when nothing answered."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(host, PORT, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw[:512].decode("utf-8", errors="replace")
        result: dict[str, Any] = {"status": response.status, "body": body}
    except (OSError, http.client.HTTPException) as error:
        result = {"status": 0, "error": repr(error)}
    finally:
        connection.close()
    result["elapsed"] = round(time.monotonic() - started, 4)
    return result


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: App

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one structured line per request instead, below

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        record = {"method": "GET", "path": parts.path, "host": self.headers.get("host", ""),
                  "end-user": self.headers.get("end-user", ""),
                  "xfcc": self.headers.get("x-forwarded-client-cert", "")}
        line = "request " + json.dumps(record) + "\n"
        with LOG_LOCK:  # one whole line per request, whatever the threads do
            sys.stdout.write(line)
            sys.stdout.flush()
        app = self.server
        status, body, extra = app.answer(parts.path, parse_qs(parts.query), self.headers)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-backend-name", app.name)
        self.send_header("x-backend-version", app.version)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class App(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str, version: str) -> None:
        super().__init__(address, Handler)
        self.name = name
        self.version = version

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The caller's sidecar gave up (a route timeout) before the answer was written.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def answer(self, path: str, query: dict[str, list[str]],
               headers: Any) -> tuple[int, Any, dict[str, str]]:
        if path == "/health":
            return 200, {"status": f"{self.name} is healthy"}, {}
        item = path.rsplit("/", 1)[-1]
        if self.name == "details" and path.startswith("/details/"):
            return 200, {"id": item, "author": "William Shakespeare", "year": 1595,
                         "type": "paperback", "pages": 200, "version": self.version}, {}
        if self.name == "ratings" and path.startswith("/ratings/"):
            return 200, {"id": item, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}, {}
        if self.name == "reviews" and path.startswith("/reviews/"):
            return 200, self.reviews(item, headers), {}
        if self.name == "productpage":
            return self.productpage(path, query, headers)
        return 404, {"error": f"{self.name} has no {path}"}, {}

    def reviews(self, item: str, headers: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": item, "version": self.version,
                                "reviews": [{"reviewer": "Reviewer1"}, {"reviewer": "Reviewer2"}]}
        timeout = RATINGS_TIMEOUT.get(self.version)
        if timeout is None:
            return body  # v1 shows no stars
        forwarded = {k: v for k in FORWARDED_HEADERS if (v := headers.get(k))}
        ratings = call("ratings", f"/ratings/{item}", forwarded, timeout)
        if ratings["status"] == 200:
            body["rating"] = ratings["body"]["ratings"]
        else:
            body["rating"] = {"error": RATINGS_UNAVAILABLE, "status": ratings["status"]}
        body["ratings_elapsed"] = ratings["elapsed"]
        return body

    def productpage(self, path: str, query: dict[str, list[str]],
                    headers: Any) -> tuple[int, Any, dict[str, str]]:
        if path == "/productpage":
            return 200, self.page(headers), {}
        if path.startswith("/static/"):
            return 200, {"static": path}, {}
        if path == "/login":
            user = query.get("user", ["jason"])[0]
            return 200, {"user": user}, {"set-cookie": f"user={user}; Path=/"}
        if path == "/logout":
            return 200, {"user": ""}, {"set-cookie": "user=; Path=/; Max-Age=0"}
        if path == "/api/v1/products" or path.startswith("/api/v1/products/"):
            return 200, [{"id": 0, "title": "The Comedy of Errors"}], {}
        return 404, {"error": f"productpage has no {path}"}, {}

    def page(self, headers: Any) -> dict[str, Any]:
        forwarded = {k: v for k in FORWARDED_HEADERS if (v := headers.get(k))}
        if "end-user" not in forwarded:
            cookies = dict(part.strip().split("=", 1) for part in
                           headers.get("cookie", "").split(";") if "=" in part)
            if cookies.get("user"):
                forwarded["end-user"] = cookies["user"]
        details = call("details", "/details/0", forwarded, PRODUCTPAGE_TIMEOUT)
        reviews = call("reviews", "/reviews/0", forwarded, PRODUCTPAGE_TIMEOUT)
        body = reviews.get("body")
        review: dict[str, Any] = body if isinstance(body, dict) else {}
        return {
            "user": forwarded.get("end-user", ""),
            "details": details,
            "reviews": {"status": reviews["status"], "elapsed": reviews["elapsed"],
                        "error": reviews.get("error", "") or ("" if review else body),
                        "version": review.get("version", ""),
                        "rating": review.get("rating"),
                        "ratings_elapsed": review.get("ratings_elapsed")},
            "forwarded": sorted(forwarded),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True,
                        choices=("productpage", "details", "reviews", "ratings"))
    parser.add_argument("--version", default="v1")
    parser.add_argument("--listen", default=f"0.0.0.0:{PORT}")
    parser.add_argument("--exit-after", type=float, default=0.0)
    parser.add_argument("--pod", action="store_true", help="accepted for the harness")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    app = App((host, int(port)), args.name, args.version)
    if args.exit_after > 0:
        # The pod's process ends by itself should the test process die without teardown.
        threading.Timer(args.exit_after, lambda: os._exit(0)).start()
    print(f"listening on {host}:{port} name={args.name} version={args.version}", flush=True)
    app.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
