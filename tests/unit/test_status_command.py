"""`pilotpy status`: KIND/NAME as kubectl names it, reading /debug/status answers (served by
a local stand-in), polling with --wait on a fake clock, and the exit codes CI relies on."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pilotpy.cli.status import (
    ACKED,
    CANNOT_TELL,
    NOT_YET,
    REFUSED,
    Target,
    parse_target,
    run_status,
)
from pilotpy.model.kinds import Kind

TARGET = Target(Kind.VIRTUAL_SERVICE, "default", "reviews")
GATEWAY = "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local"


def _answer(*states: str, generation: int = 2, problems: list[Any] | None = None
            ) -> dict[str, Any]:
    proxies = [{"proxy": f"{GATEWAY}-{i}", "type": "router", "state": s}
               | ({"typeUrl": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                   "message": "invalid escape sequence"} if s == "NACKED" else {})
               for i, s in enumerate(states)]
    return {"kind": "VirtualService", "namespace": "default", "name": "reviews",
            "generation": generation, "version": 7, "deleted": False, "served": True,
            "affected": len(states), "acked": states.count("ACKED"),
            "nacked": states.count("NACKED"), "pending": states.count("PENDING"),
            "proxies": proxies, "problems": problems or []}


class _Server:
    """Answers /debug/status with the queued answers in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.asked = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = outer.answers[min(outer.asked, len(outer.answers) - 1)]
                outer.asked += 1
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    found = _Server()
    thread = threading.Thread(target=found.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield found
    found.httpd.shutdown()
    found.httpd.server_close()
    thread.join()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _run(server: _Server, *, wait: bool = False, timeout: float = 30.0, generation: int = 0,
         output: str = "text") -> tuple[int, str]:
    out = io.StringIO()
    clock = _Clock()
    code = run_status(server.url, TARGET, wait=wait, timeout=timeout, generation=generation,
                      output=output, out=out, clock=clock, sleep=clock.sleep)
    return code, out.getvalue()


def test_kind_and_name_are_taken_as_kubectl_names_them() -> None:
    assert parse_target("vs/reviews", "shop") == Target(Kind.VIRTUAL_SERVICE, "shop", "reviews")
    assert parse_target("DestinationRules/r", "x").kind is Kind.DESTINATION_RULE
    for bad in ("reviews", "widget/reviews", "vs/"):
        with pytest.raises(ValueError):
            parse_target(bad, "default")


def test_every_proxy_acked_exits_0(server: _Server) -> None:
    server.answers = [(200, _answer("ACKED", "ACKED"))]
    code, out = _run(server)
    assert code == ACKED
    assert out.splitlines()[0] == ("VirtualService default/reviews generation 2 (config "
                                   "version 7): 2 proxies affected, 2 ACKED")


def test_one_proxy_is_counted_in_the_singular(server: _Server) -> None:
    server.answers = [(200, _answer("ACKED"))]
    assert _run(server)[1].splitlines()[0].endswith(": 1 proxy affected, 1 ACKED")


def test_a_nack_exits_1_naming_the_proxy_and_its_message(server: _Server) -> None:
    server.answers = [(200, _answer("ACKED", "NACKED"))]
    code, out = _run(server, wait=True)
    assert code == REFUSED
    assert (f"  NACKED   {GATEWAY}-1 (RouteConfiguration): invalid escape sequence"
            in out.splitlines())


def test_an_error_pilotpy_reports_for_the_object_exits_1(server: _Server) -> None:
    problem = {"severity": "Error", "reason": "NotFound", "code": "IST0101",
               "kind": "VirtualService", "namespace": "default", "name": "reviews",
               "field": "spec.gateways[0]", "message": "Referenced gateway not found",
               "source": "", "hint": ""}
    server.answers = [(200, _answer("ACKED", problems=[problem]))]
    code, out = _run(server)
    assert code == REFUSED
    assert ("  Error [IST0101] (VirtualService default/reviews) spec.gateways[0]: Referenced "
            "gateway not found") in out.splitlines()


def test_wait_polls_until_every_proxy_answered(server: _Server) -> None:
    server.answers = [(404, {"error": "not seen"}), (200, _answer("PENDING", "ACKED")),
                      (200, _answer("ACKED", "ACKED"))]
    code, _ = _run(server, wait=True)
    assert code == ACKED and server.asked == 3


def test_wait_for_a_generation_pilotpy_has_not_seen_yet(server: _Server) -> None:
    server.answers = [(200, _answer("ACKED", generation=1)), (200, _answer("ACKED"))]
    assert _run(server, wait=True, generation=2)[0] == ACKED
    assert server.asked == 2


def test_still_pending_when_time_runs_out_exits_2(server: _Server) -> None:
    server.answers = [(200, _answer("PENDING"))]
    code, out = _run(server, wait=True, timeout=2.0)
    assert code == NOT_YET and out.endswith("timed out after 2s\n")
    assert _run(server)[0] == NOT_YET  # without --wait: at once


def test_an_object_pilotpy_never_saw_or_no_answer_exits_3(server: _Server) -> None:
    server.answers = [(404, {"error": "pilotpy has not seen VirtualService default/reviews"})]
    assert _run(server)[0] == CANNOT_TELL
    assert run_status("http://127.0.0.1:9", TARGET, wait=False, timeout=0,
                      out=io.StringIO()) == CANNOT_TELL


def test_json_output_is_the_answer(server: _Server) -> None:
    server.answers = [(200, _answer("ACKED"))]
    code, out = _run(server, output="json")
    assert code == ACKED and json.loads(out) == _answer("ACKED")
