"""The unit tier runs the command line in-process (`pilotpy.cli.main.main`), whose
setup_logging replaces the root logger's handlers and level: restore them after each test, so
a later test's caplog sees each record once and no handler writes to a closed capture."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
