"""`pilotpy analyze PATH...`: istioctl analyze's checks on a directory of YAML, for people and
for CI (`--output json`). Exits 1 when an Error-level message is found, 0 otherwise."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from pilotpy.analysis.checks import analyze, to_json
from pilotpy.problems import Problem, ProblemLog
from pilotpy.server.controlplane import load_mesh_config
from pilotpy.server.settings import Settings
from pilotpy.sources.files import FileSource
from pilotpy.store import Store


def analyze_paths(paths: list[Path], *, mesh_config: Path | None = None,
                  default_namespace: str = "default") -> list[Problem]:
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{path}: no such file or directory")
    read = ProblemLog()
    store = Store(clock=time.monotonic)
    FileSource(paths, store, read, default_namespace=default_namespace).load()
    mesh = load_mesh_config(Settings(mesh_config=mesh_config))
    return analyze(store.snapshot().objects, mesh, read.problems())


def report(messages: list[Problem], output: str, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if output == "json":
        json.dump([to_json(m) for m in messages], out, indent=2)
        out.write("\n")
    elif messages:
        for message in messages:
            out.write(f"{message}\n")
    else:
        out.write("\u2714 No validation issues found when analyzing the given files.\n")
    return 1 if any(m.is_error for m in messages) else 0
