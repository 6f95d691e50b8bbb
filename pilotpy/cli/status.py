"""`pilotpy status KIND/NAME -n NS`: has an object's latest change reached every proxy it
affects? Asks a running pilotpy's /debug/status, optionally until the answer is final, so
CI can run `kubectl apply` and then `pilotpy status --wait`.

Exit codes: 0 every affected proxy acknowledged the change; 1 a proxy refused it (its
message is printed) or the object has an error pilotpy reports; 2 not there yet when the
time ran out (at once without --wait); 3 the question cannot be asked (unknown kind,
pilotpy unreachable, an object pilotpy never saw, without --wait).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from pilotpy.model.kinds import Kind, kind_named
from pilotpy.problems import Problem

ACKED, REFUSED, NOT_YET, CANNOT_TELL = 0, 1, 2, 3
POLL_INTERVAL = 0.5
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def parse_target(text: str, namespace: str) -> Target:
    """`KIND/NAME` as kubectl takes it (`vs/reviews`, `VirtualService/reviews`)."""
    kind_text, slash, name = text.partition("/")
    kind = kind_named(kind_text) if slash else None
    if kind is None or not name:
        raise ValueError(f"{text!r}: expected KIND/NAME, e.g. virtualservice/reviews")
    return Target(kind, namespace, name)


class Unreachable(Exception):
    """pilotpy did not answer."""


def fetch(server: str, target: Target) -> tuple[int, Any]:
    """(HTTP status, JSON body) of /debug/status for the object."""
    query = urllib.parse.urlencode({"kind": target.kind.value, "namespace": target.namespace,
                                    "name": target.name})
    url = f"{server.rstrip('/')}/debug/status?{query}"
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, {"error": body.decode("utf-8", "replace").strip()}
    except (OSError, ValueError) as err:
        raise Unreachable(f"cannot read {url}: {err}") from err


def verdict(answer: dict[str, Any], generation: int = 0) -> int:
    """What one answer says, as an exit code (NOT_YET while it may still change)."""
    if any(p.get("severity") == "Error" for p in answer.get("problems", [])):
        return REFUSED
    if answer.get("nacked"):
        return REFUSED
    if "version" not in answer or int(answer.get("generation") or 0) < generation:
        return NOT_YET  # pilotpy has not taken the object (or that generation) yet
    return ACKED if answer.get("pending") == 0 else NOT_YET


def describe(answer: dict[str, Any], target: Target) -> list[str]:
    """The answer in words: a summary line, a line per proxy, one per problem."""
    if "version" not in answer:
        head = f"{target}: {answer.get('error') or 'not served by pilotpy'}"
    else:
        what = "deletion" if answer.get("deleted") else f"generation {answer['generation']}"
        counts = ", ".join(f"{answer[k]} {k.upper()}" for k in ("acked", "nacked", "pending")
                           if answer.get(k))
        head = (f"{target} {what} (config version {answer['version']}): "
                f"{answer['affected']} {'proxy' if answer['affected'] == 1 else 'proxies'} "
                "affected" + (f", {counts}" if counts else ""))
    lines = [head]
    for proxy in answer.get("proxies", []):
        line = f"  {proxy['state']:<8} {proxy['proxy']}"
        if proxy["state"] == "NACKED":
            line += f" ({proxy['typeUrl'].rsplit('.', 1)[-1]}): {proxy['message']}"
        lines.append(line)
    lines += [f"  {Problem.from_json(p)}" for p in answer.get("problems", [])]
    return lines


def run_status(server: str, target: Target, *, wait: bool, timeout: float,
               generation: int = 0, output: str = "text", out: TextIO | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> int:
    out = out if out is not None else sys.stdout
    deadline = clock() + (timeout if wait else 0.0)
    while True:
        try:
            code, answer = fetch(server, target)
        except Unreachable as err:
            print(f"pilotpy status: {err}", file=sys.stderr)
            return CANNOT_TELL
        if code not in (200, 404):
            print(f"pilotpy status: {answer.get('error', answer)}", file=sys.stderr)
            return CANNOT_TELL
        result = verdict(answer, generation) if code == 200 else NOT_YET
        if result != NOT_YET or clock() >= deadline:
            break
        sleep(POLL_INTERVAL)
    if code == 404 and not wait:
        result = CANNOT_TELL
    if output == "json":
        json.dump(answer, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write("\n".join(describe(answer, target)) + "\n")
        if result == NOT_YET and wait:
            out.write(f"timed out after {timeout:g}s\n")
    return result
