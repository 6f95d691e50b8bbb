"""What one config file may hold (docs/operations.md#limits); apart from the file source so
that the command line reads the defaults without loading the model."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_file_bytes: int = 32 * MiB
    max_objects: int = 50_000
