"""Fixtures of the xDS protocol tier: pilotpy running in-process on loopback over a temp dir
holding the W1 example config (examples/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.xds.xds_harness import ConfigDir, Harness, harness


@pytest.fixture
def config_dir(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path)


@pytest_asyncio.fixture
async def xds(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    """A running control plane; clients made through it are closed before it stops."""
    async with harness(config_dir) as running_plane:
        yield running_plane
