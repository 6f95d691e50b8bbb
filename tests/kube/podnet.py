"""Pod addresses the API server accepts (it refuses loopback in EndpointSlices): one network
namespace of the test's own, joined to the host by a veth pair, holding one address per
httpbin "pod" and a backend process listening on it. Traffic never leaves the host: Envoy in
the host namespace reaches the backends over the veth. Everything is removed at stop, also
after a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

PREFIX = "10.78.0"
HOST_ADDRESS = f"{PREFIX}.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class PodNetwork:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.netns = f"pilotpy-kube-{tag}"
        self._host_link = f"ppk{tag}h"
        self._pod_link = f"ppk{tag}p"
        self._processes: list[subprocess.Popen[str]] = []
        self._addresses: list[str] = []

    def start(self, addresses: list[str]) -> None:
        try:
            _ip("netns", "add", self.netns)
            _ip("link", "add", self._host_link, "type", "veth", "peer", "name", self._pod_link)
            _ip("link", "set", self._pod_link, "netns", self.netns)
            _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", self._host_link)
            _ip("link", "set", self._host_link, "up")
            _ip("-n", self.netns, "link", "set", "lo", "up")
            for address in addresses:
                _ip("-n", self.netns, "addr", "add", f"{address}/24", "dev", self._pod_link)
            _ip("-n", self.netns, "link", "set", self._pod_link, "up")
            self._addresses = addresses
        except BaseException:
            self.stop()
            raise

    def backend(self, address: str, port: int, version: str) -> None:
        """A backend process for `address`, inside the namespace; returns once it listens."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "pilotpy.local.backend",
             "--pod", "--listen", f"{address}:{port}", "--version", version,
             "--exit-after", "900"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"backend {version} on {address}:{port} did not start: {line}"
                               f"{process.stdout.read() if process.poll() is not None else ''}")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
        self._processes.clear()
        subprocess.run(["ip", "link", "del", self._host_link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)

    def leftovers(self) -> list[str]:
        """Anything of this network still on the host (a test asserts none)."""
        found = []
        netns = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True,
                               text=True).stdout
        if self.netns in netns:
            found.append(f"netns {self.netns}")
        links = subprocess.run(["ip", "-o", "link"], check=False, capture_output=True,
                               text=True).stdout
        if self._host_link in links:
            found.append(f"link {self._host_link}")
        return found
