"""Pods as network namespaces on one Linux bridge, with addresses in a private /24.

Every name this run creates starts with a per-run prefix (`pm` + 6 hex digits), so teardown
deletes exactly what it created, and a leftover check can prove nothing remains. Every
command has a timeout; nothing here ever targets an address outside the run's subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_TIMEOUT = 20.0
# `ip netns exec` bind-mounts /etc/netns/<name>/* over /etc: each pod gets its own hosts file.
NETNS_ETC = Path("/etc/netns")
STOP_TIMEOUT = 10.0
# 10.77.<n>.0/24, one /24 per run; `n` is picked among the ones no route uses yet.
SUBNET_BASE = "10.77"


class NetworkError(RuntimeError):
    pass


def run(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
        stdin: str | None = None) -> str:
    result = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(args)} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    used = run("ip", "-4", "route", "show")
    start = secrets.randbelow(200)
    for offset in range(200):
        candidate = ipaddress.IPv4Network(f"{SUBNET_BASE}.{(start + offset) % 200 + 20}.0/24")
        if str(candidate.network_address)[:-1] not in used:
            return candidate
    raise NetworkError(f"no free /24 left in {SUBNET_BASE}.0.0/16")


@dataclass(eq=False)
class Process:
    """A process in its own process group, so stopping it stops everything it started."""

    name: str
    popen: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT)
        # Children that outlived their leader are still in the group.
        _signal_group(self.popen.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(eq=False)
class Namespace:
    name: str
    address: str
    processes: list[Process] = field(default_factory=list)

    def exec_args(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, timeout: float = COMMAND_TIMEOUT,
            stdin: str | None = None) -> str:
        return run(*self.exec_args(command), timeout=timeout, stdin=stdin)

    def set_hosts(self, lines: Sequence[str]) -> None:
        """Name resolution for the pod, as cluster DNS would answer it; no DNS server, so
        a name outside the file fails at once instead of leaving the namespace."""
        etc = NETNS_ETC / self.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("\n".join(["127.0.0.1 localhost", *lines]) + "\n")
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def spawn(self, name: str, command: Sequence[str], log_path: str, *,
              cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Process:
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(self.exec_args(command), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=cwd,
                                     env=dict(env) if env is not None else None)
        process = Process(name, popen)
        self.processes.append(process)
        return process


@dataclass(eq=False)
class Network:
    """A bridge in the root namespace holding the subnet's first address; each pod is a
    namespace with a veth on the bridge, the next free address and a default route via the
    bridge. Use as a context manager or call `teardown()` (idempotent)."""

    prefix: str = field(default_factory=lambda: "pm" + secrets.token_hex(3))
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    namespaces: list[Namespace] = field(default_factory=list)
    _bridge_up: bool = False

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def create(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_up = True
        run("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_namespace(self, pod: str) -> Namespace:
        index = len(self.namespaces)
        address = str(self.subnet.network_address + 10 + index)
        namespace = Namespace(f"{self.prefix}-{pod}", address)
        self.namespaces.append(namespace)
        host_side, pod_side = f"{self.prefix}h{index}", f"{self.prefix}p{index}"
        run("ip", "netns", "add", namespace.name)
        run("ip", "link", "add", host_side, "type", "veth", "peer", "name", pod_side)
        run("ip", "link", "set", pod_side, "netns", namespace.name)
        run("ip", "link", "set", host_side, "master", self.bridge)
        run("ip", "link", "set", host_side, "up")
        ns = namespace.name
        run("ip", "-n", ns, "link", "set", pod_side, "name", "eth0")
        run("ip", "-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
        return namespace

    def teardown(self) -> None:
        """Stop every process, then delete namespaces (their veths go with them) and the
        bridge. Errors are collected and raised at the end, after everything was tried."""
        errors: list[str] = []
        for namespace in self.namespaces:
            for process in namespace.processes:
                try:
                    process.stop()
                except Exception as error:  # keep tearing down the rest
                    errors.append(f"stopping {process.name}: {error!r}")
        for namespace in self.namespaces:
            if namespace.name in _names(run("ip", "netns", "list", check=False)):
                try:
                    run("ip", "netns", "delete", namespace.name)
                except Exception as error:
                    errors.append(str(error))
            shutil.rmtree(NETNS_ETC / namespace.name, ignore_errors=True)
        # A namespace's veth pair goes with it, but asynchronously: delete what is left,
        # tolerating links that vanish meanwhile, until nothing of this run remains.
        deadline = time.monotonic() + STOP_TIMEOUT
        while (links := leftover_links(self.prefix)) and time.monotonic() < deadline:
            for link in links:
                run("ip", "link", "delete", link, check=False)
            time.sleep(0.1)
        if links:
            errors.append(f"links left: {links}")
        self.namespaces.clear()
        if errors:
            raise NetworkError("teardown: " + "; ".join(errors))

    def leftovers(self) -> list[str]:
        """Namespaces, links and processes of this run that still exist."""
        found = [f"netns {n}" for n in _names(run("ip", "netns", "list", check=False))
                 if n.startswith(self.prefix)]
        found += [f"link {link}" for link in leftover_links(self.prefix)]
        if NETNS_ETC.exists():
            found += [f"{p}" for p in NETNS_ETC.iterdir() if p.name.startswith(self.prefix)]
        return found

    def __enter__(self) -> Network:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def _names(listing: str) -> list[str]:
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def leftover_links(prefix: str) -> list[str]:
    listing = run("ip", "-o", "link", "show", check=False)
    names = re.findall(r"^\d+:\s+([^:@\s]+)", listing, flags=re.MULTILINE)
    return [n for n in names if n.startswith(prefix)]


def wait_until(check: Callable[[], object], what: str, timeout: float = 30.0,
               interval: float = 0.2) -> None:
    """Poll `check()` until it returns something truthy, for at most `timeout` seconds;
    network errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
        except OSError as error:
            last = error
        if last and not isinstance(last, OSError):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} "
                               f"(last: {last!r})")
        time.sleep(interval)
