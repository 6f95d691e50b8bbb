"""The real `istioctl proxy-status --xds-address` against pilotpy with a real Envoy connected:
SYNCED after convergence (plaintext 15010-style and TLS 15012-style ports), the error after a
NACK. The binary is built once by `make istioctl` (hack/istio-bins.sh) into the user's cache."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import W1, W1Factory, weighted_virtual_service
from tests.e2e.test_operations import ENVOY_REJECTS
from tests.istio_bins import ISTIOCTL, UNREACHABLE_KUBECONFIG
from tests.istioctl_certs import ISTIOD_SAN, write_cert_dir

pytestmark = pytest.mark.e2e



@pytest.fixture
def istioctl(tmp_path: Path) -> list[str]:
    if not ISTIOCTL.exists():
        if os.environ.get("PILOTPY_REQUIRE_ISTIOCTL"):
            pytest.fail(f"{ISTIOCTL} is missing: run `make istioctl`")
        pytest.skip(f"{ISTIOCTL} is missing: run `make istioctl`")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG, encoding="utf-8")
    return [str(ISTIOCTL), "--kubeconfig", str(kubeconfig), "proxy-status",
            "--revision", "default", "--timeout", "10s"]


async def run(command: list[str]) -> str:
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                     timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def row_of(table: str, node_id: str) -> dict[str, str]:
    """The row of `node_id` in `proxy-status -v 1`, by column name."""
    header, *rows = table.splitlines()
    columns = header.split()
    for row in rows:
        if row.startswith(node_id):
            # Statuses read like `SYNCED (5s)`: split on runs of 2+ spaces (the tabwriter's).
            cells = [c.strip() for c in row.split("  ") if c.strip()]
            return dict(zip(columns, cells, strict=False))
    raise AssertionError(f"{node_id} not listed:\n{table}")


async def synced_everywhere(command: list[str], node_id: str) -> dict[str, str]:
    async def check() -> dict[str, str] | None:
        row = row_of(await run(command), node_id)
        done = all(row.get(t, "").startswith("SYNCED") for t in ("CDS", "LDS", "EDS", "RDS"))
        return row if done else None

    for _ in range(50):  # bounded: 50 runs, each with its own timeout
        row = await check()
        if row is not None:
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} never SYNCED:\n{await run(command)}")


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_proxy_status_shows_synced_over_plaintext_and_tls(
        w1: W1Factory, istioctl: list[str], tmp_path: Path, delta: bool) -> None:
    env: W1 = await w1(delta=delta)
    plane = env.stack.plane
    node_id = env.stack.node_id
    plaintext = [*istioctl, "--xds-address", f"127.0.0.1:{plane.grpc_port}", "--plaintext",
                 "-v", "1"]
    row = await synced_everywhere(plaintext, node_id)
    identity = json.loads(plane.xds.control_plane_identifier)
    assert row["ISTIOD"] == identity["ID"]

    # TLS: istioctl verifies the server against the mesh root in --cert-dir and proves
    # itself with the mesh certificate there (no token, no --insecure).
    assert plane.secure is not None and plane.secure.authority is not None
    certs = write_cert_dir(plane.secure.authority, tmp_path / "certs")
    over_tls = [*istioctl, "--xds-address", f"127.0.0.1:{plane.grpc_tls_port}",
                "--cert-dir", str(certs), "--authority", ISTIOD_SAN, "-v", "1"]
    await synced_everywhere(over_tls, node_id)


async def test_proxy_status_shows_the_nack(w1: W1Factory, istioctl: list[str]) -> None:
    env = await w1()
    plane = env.stack.plane
    command = [*istioctl, "--xds-address", f"127.0.0.1:{plane.grpc_port}", "--plaintext"]
    await synced_everywhere([*command, "-v", "1"], env.stack.node_id)
    env.write("virtualservice.yaml", weighted_virtual_service(0, 100).replace(
        "  - retries:", f"  - match: [{{uri: {{regex: '{ENVOY_REJECTS}'}}}}]\n    retries:"))

    async def route_error() -> Any:
        (response,) = [json.loads(chunk) for chunk in
                       _json_documents(await run([*command, "-o", "json"]))]
        for resource in response.get("resources", []):
            for config in resource.get("genericXdsConfigs", []):
                if config.get("configStatus") == "ERROR":
                    return config
        return None

    config = None
    for _ in range(50):
        config = await route_error()
        if config:
            break
        await asyncio.sleep(0.2)
    assert config, "no ERROR in proxy-status"
    assert config["typeUrl"].endswith("RouteConfiguration")
    assert "invalid escape sequence" in config["errorState"]["details"]
    table = await run([*command, "-v", "1"])
    assert row_of(table, env.stack.node_id)["RDS"].startswith("ERROR")


def _json_documents(text: str) -> list[str]:
    """`-o json` prints one JSON document per control plane instance."""
    decoder = json.JSONDecoder()
    out, index = [], 0
    text = text.strip()
    while index < len(text):
        _, end = decoder.raw_decode(text, index)
        out.append(text[index:end])
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return out


async def test_proxy_status_of_one_proxy_matches_envoys_config_dump(
        w1: W1Factory, istioctl: list[str], tmp_path: Path) -> None:
    """`istioctl proxy-status <pod>` diffs what pilotpy sends (istio.io/debug/config_dump over
    ADS) against Envoy's own /config_dump (here from --file, as there is no pod to ask)."""
    env = await w1()
    plane = env.stack.plane
    command = [*istioctl, "--xds-address", f"127.0.0.1:{plane.grpc_port}", "--plaintext"]
    await synced_everywhere([*command, "-v", "1"], env.stack.node_id)
    dump = tmp_path / "config_dump.json"
    dump.write_text(await asyncio.to_thread(env.envoy.admin_get, "/config_dump"),
                    encoding="utf-8")
    pod = env.stack.node_id.split("~")[2]
    out = await run([*command, pod, "--file", str(dump)])
    assert "Clusters Match" in out, out
    assert "Listeners Match" in out, out
    assert "Routes Match" in out, out
