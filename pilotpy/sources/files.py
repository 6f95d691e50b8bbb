"""The file source: directories and files of multi-document YAML, watched for changes.

Each file is one store partition. A file that does not parse keeps the objects it last
provided until it parses again; an object that fails validation keeps its last good version
(as the API server would, by rejecting the update), and a new invalid object is skipped.
Watching polls file signatures (mtime, size, inode): portable, and cheap at the size of
config directories.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotpy.model import InvalidObject, Key, UnknownKind, parse_object
from pilotpy.problems import Problem, ProblemLog, Reason, Severity
from pilotpy.store import Store

log = logging.getLogger("pilotpy.sources.files")

SUFFIXES = (".yaml", ".yml", ".json")
try:
    _LOADER: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _LOADER = yaml.SafeLoader

Signature = tuple[int, int, int]


@dataclass
class _FileState:
    signature: Signature | None = None
    good: dict[Key, Any] = field(default_factory=dict)


def discover(paths: list[Path]) -> list[Path]:
    """YAML and JSON files under `paths`, sorted; hidden files and editor backups skipped."""
    out: set[Path] = set()
    for path in paths:
        if path.is_dir():
            for found in path.rglob("*"):
                relative = found.relative_to(path).parts
                if any(part.startswith((".", "#")) or part.endswith("~") for part in relative):
                    continue
                if found.is_file() and found.suffix in SUFFIXES:
                    out.add(found)
        elif path.is_file():
            out.add(path)
    return sorted(out)


def _documents(docs: list[Any]) -> Iterator[tuple[int, Any]]:
    """Documents with their position; `kind: List` (kubectl's output) is expanded."""
    for index, doc in enumerate(docs, start=1):
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(
                doc.get("items"), list):
            for item in doc["items"]:
                yield index, item
        elif doc is not None:
            yield index, doc


def parse_documents(text: str, origin: str, default_namespace: str,
                    last_good: Mapping[Key, Any] | None = None
                    ) -> tuple[dict[Key, Any] | None, list[Problem]]:
    """Objects in `text`, and the problems found. None means the YAML itself is broken."""
    problems: list[Problem] = []
    try:
        docs = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "document"
        reason = getattr(err, "problem", None) or str(err)
        return None, [Problem(Reason.UNREADABLE, f"{where}: invalid YAML: {reason}; serving "
                              "what the file held before", severity=Severity.ERROR,
                              source=origin)]
    objects: dict[Key, Any] = {}
    for index, doc in _documents(docs):
        try:
            parsed = parse_object(doc, default_namespace=default_namespace)
        except UnknownKind as err:
            log.debug("%s: document %d: %s is not read by pilotpy; ignored", origin, index, err)
            continue
        except InvalidObject as err:
            served, note = err.served(last_good.get(err.ref) if last_good else None)
            problems += [issue.problem(err.ref, origin, note) for issue in err.issues]
            if served is not None:
                objects[err.ref] = served
            continue
        obj = parsed.obj
        key = obj.meta.key
        problems += [warning.problem(key, origin) for warning in parsed.warnings]
        if key in objects:
            problems.append(Problem(Reason.DUPLICATE, f"defined again in document {index}; the "
                                    "last definition is used, as kubectl apply would", key,
                                    source=origin))
        objects[key] = obj
    return objects, problems


class FileSource:
    def __init__(self, paths: list[Path], store: Store, problems: ProblemLog, *,
                 default_namespace: str = "default", poll_interval: float = 0.5) -> None:
        self._paths = paths
        self._store = store
        self._problems = problems
        self._namespace = default_namespace
        self._poll_interval = poll_interval
        self._files: dict[Path, _FileState] = {}

    def load(self) -> None:
        """Read everything once (also the first step of watching)."""
        self._scan()

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                self._scan()
            except OSError as err:  # a vanished directory must not stop the server
                log.warning("scanning config files failed: %s; keeping the last config", err)

    @staticmethod
    def _signature(path: Path) -> Signature | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _missing_roots(self) -> list[Path]:
        """Configured paths that are gone. A vanished directory (an unmounted volume, a
        ConfigMap being swapped) is a source failure, not a deletion of everything in it:
        what was read from it keeps being served until it is back."""
        missing = []
        for root in self._paths:
            origin = f"config path {root}"
            if root.exists():
                self._problems.clear(origin)
                continue
            missing.append(root)
            self._problems.set(origin, [Problem(
                Reason.UNREADABLE, "config path missing; serving the objects last read from it",
                severity=Severity.ERROR, source=str(root))])
        return missing

    @staticmethod
    def _under(path: Path, roots: list[Path]) -> bool:
        return any(path == root or root in path.parents for root in roots)

    def _scan(self) -> None:
        missing = self._missing_roots()
        present = discover(self._paths)
        for path in sorted(set(self._files) - set(present)):
            if self._under(path, missing):
                continue
            del self._files[path]
            self._store.replace_partition(str(path), {})
            self._problems.clear(str(path))
            log.info("%s removed", path)
        for path in present:
            state = self._files.setdefault(path, _FileState())
            signature = self._signature(path)
            if signature is None or signature == state.signature:
                continue
            state.signature = signature
            self._read(path, state)

    def _read(self, path: Path, state: _FileState) -> None:
        origin = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            self._problems.set(origin, [Problem(Reason.UNREADABLE, f"cannot read: {err}",
                                                severity=Severity.ERROR, source=origin)])
            return
        objects, problems = parse_documents(text, origin, self._namespace, state.good)
        self._problems.set(origin, problems)
        if objects is None:
            return  # broken YAML: keep serving what the file held before
        state.good = objects
        self._store.replace_partition(origin, objects)
