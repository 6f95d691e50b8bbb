"""The harness cleans up after itself: namespaces, links and process groups all go, even
when the processes ignore SIGTERM."""

from __future__ import annotations

import sys

from tests.mesh.netns import Network, group_alive


def test_teardown_leaves_no_namespace_link_or_process() -> None:
    network = Network()
    try:
        network.create()
        pod = network.add_namespace("probe")
        stubborn = pod.spawn("stubborn", [
            sys.executable, "-c",
            "import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "time.sleep(600)\n"], "/dev/null")
        assert network.leftovers()
    finally:
        network.teardown()
    assert network.leftovers() == []
    assert not group_alive(stubborn.popen.pid)
