"""The file source: directories and files of multi-document YAML, watched for changes.

Each file is one store partition. A file that does not parse keeps the objects it last
provided until it parses again; an object that fails validation keeps its last good version
(as the API server would, by rejecting the update), and a new invalid object is skipped.
Watching polls file signatures (mtime, size, inode): portable, and cheap at the size of
config directories.

Files are read, parsed and compared with what they held before in a worker thread, so a big
or hostile file never stalls the event loop that serves proxies; only the result is applied
on the loop. One file's failure (too big, too many objects, too deep, an alias bomb, or a
bug) is that file's problem: it keeps serving what it held, and every other file is read.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotpy.model import InvalidObject, Key, UnknownKind, parse_object
from pilotpy.problems import Problem, ProblemLog, Reason, Severity
from pilotpy.runtime.logtext import clip
from pilotpy.runtime.source_status import SourceStatus
from pilotpy.sources.file_limits import FileLimits
from pilotpy.sources.yaml_documents import LimitExceeded, load_documents
from pilotpy.store import Store

log = logging.getLogger("pilotpy.sources.files")

SOURCE = "files"
SUFFIXES = (".yaml", ".yml", ".json")
SCAN_ORIGIN = "config paths"

Signature = tuple[int, int, int]


@dataclass
class _FileState:
    signature: Signature | None = None
    good: dict[Key, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Read:
    """One file read and parsed in the worker: its objects (None: keep what it held)."""

    path: Path
    signature: Signature
    objects: dict[Key, Any] | None
    problems: list[Problem]


@dataclass(frozen=True, slots=True)
class _Survey:
    """What a scan found, ready to be applied on the loop."""

    missing: list[Path]
    present: list[Path]
    skipped: dict[Path, str]  # config-looking paths that are not regular files, and why
    reads: list[_Read]


def _not_regular(path: Path) -> str | None:
    """Why a path named like a config file cannot be read as one (None: it can)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a loop of symbolic links; skipped"
        if path.is_symlink():
            return "a symbolic link to nothing; skipped"
        return f"cannot be inspected ({err.strerror}); skipped"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return None  # a directory named x.yaml: walked like any other
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
    return f"{kind}, not a regular file; skipped"


def discover(paths: list[Path], skipped: dict[Path, str] | None = None) -> list[Path]:
    """YAML and JSON files under `paths`, sorted; hidden files and editor backups skipped.
    Paths that look like config files but are no regular files (FIFOs, dangling or looping
    links) go into `skipped` with the reason."""
    out: set[Path] = set()
    for path in paths:
        if path.is_dir():
            for found in path.rglob("*"):
                relative = found.relative_to(path).parts
                if any(part.startswith((".", "#")) or part.endswith("~") for part in relative):
                    continue
                if found.suffix not in SUFFIXES:
                    continue
                why = _not_regular(found)
                if why is None:
                    if found.is_file():
                        out.add(found)
                elif skipped is not None:
                    skipped[found] = why
        elif path.is_file():
            out.add(path)
        elif skipped is not None and (why := _not_regular(path)) is not None:
            skipped[path] = why
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


def _unreadable(origin: str, message: str) -> list[Problem]:
    return [Problem(Reason.UNREADABLE, message, severity=Severity.ERROR, source=origin)]


def parse_documents(text: str, origin: str, default_namespace: str,
                    last_good: Mapping[Key, Any] | None = None,
                    limits: FileLimits | None = None
                    ) -> tuple[dict[Key, Any] | None, list[Problem]]:
    """Objects in `text`, and the problems found. None means the file as a whole cannot be
    served (broken YAML, past a limit): what it held before is kept."""
    limits = limits or FileLimits()
    problems: list[Problem] = []
    try:
        docs = load_documents(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "document"
        reason = clip(getattr(err, "problem", None) or str(err), 200)
        what = "past a limit" if isinstance(err, LimitExceeded) else "invalid YAML"
        return None, _unreadable(origin, f"{where}: {what}: {reason}; serving what the file "
                                 "held before")
    found = list(_documents(docs))
    if len(found) > limits.max_objects:
        return None, _unreadable(origin, f"holds {len(found)} objects, more than the "
                                 f"{limits.max_objects} a file may hold "
                                 "(--max-objects-per-file); serving what it held before")
    objects: dict[Key, Any] = {}
    for index, doc in found:
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
                 default_namespace: str = "default", poll_interval: float = 0.5,
                 limits: FileLimits | None = None, status: SourceStatus | None = None
                 ) -> None:
        self._paths = paths
        self._store = store
        self._problems = problems
        self._namespace = default_namespace
        self._poll_interval = poll_interval
        self._limits = limits or FileLimits()
        self._status = status
        self._files: dict[Path, _FileState] = {}
        self._skipped: set[Path] = set()

    def load(self) -> None:
        """Read everything once, on the calling thread (also the first step of watching)."""
        self._apply(self._survey())
        if self._status is not None:
            self._status.set_healthy(SOURCE, True)

    async def watch(self) -> None:
        """Apply changes until cancelled; files are read in a worker thread."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                survey = await asyncio.to_thread(self._survey)
            except OSError as err:  # out of file descriptors, a vanished mount: retried
                self._problems.set(SCAN_ORIGIN, _unreadable(
                    SCAN_ORIGIN, f"cannot scan the config paths: {err}; serving the last "
                    "config read"))
                continue
            self._problems.clear(SCAN_ORIGIN)
            self._apply(survey)
            if self._status is not None:
                self._status.set_healthy(SOURCE, True)

    # -- in the worker: nothing here touches the store or the problem log ------------------

    def _survey(self) -> _Survey:
        missing = [root for root in self._paths if not root.exists()]
        skipped: dict[Path, str] = {}
        present = discover(self._paths, skipped)
        reads = []
        for path in present:
            state = self._files.get(path)
            signature = self._signature(path)
            if signature is None or (state is not None and signature == state.signature):
                continue
            reads.append(self._read(path, signature, state.good if state is not None else {}))
        return _Survey(missing, present, skipped, reads)

    @staticmethod
    def _signature(path: Path) -> Signature | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    def _read(self, path: Path, signature: Signature, good: Mapping[Key, Any]) -> _Read:
        origin = str(path)
        limit = self._limits.max_file_bytes
        too_big = _unreadable(origin, f"larger than the {limit} bytes a file may hold "
                              "(--max-config-file-size); serving what it held before")
        try:
            if signature[1] > limit:
                return _Read(path, signature, None, too_big)
            with path.open("rb") as file:
                data = file.read(limit + 1)
            if len(data) > limit:
                return _Read(path, signature, None, too_big)
            objects, problems = parse_documents(data.decode("utf-8"), origin, self._namespace,
                                                good, self._limits)
            if objects is not None:
                # Compared here rather than by the store on the loop: an unchanged object
                # is handed over as the very object held, which the store compares at once.
                objects = {key: old if (old := good.get(key)) is not None and old == obj
                           else obj for key, obj in objects.items()}
        except OSError as err:  # read again at the next scan
            return _Read(path, (0, 0, 0), None, _unreadable(origin, f"cannot read: {err}"))
        except UnicodeDecodeError as err:
            return _Read(path, signature, None, _unreadable(origin, f"not UTF-8: {err}"))
        except Exception as err:  # a bug must cost this file, not the source
            log.exception("reading %s failed", origin)
            return _Read(path, signature, None, _unreadable(
                origin, f"could not be read ({type(err).__name__}: {clip(str(err), 200)}); "
                "serving what it held before"))
        return _Read(path, signature, objects, problems)

    # -- on the loop -----------------------------------------------------------------------

    @staticmethod
    def _under(path: Path, roots: list[Path]) -> bool:
        return any(path == root or root in path.parents for root in roots)

    def _apply(self, survey: _Survey) -> None:
        for root in self._paths:
            # A vanished directory (an unmounted volume, a ConfigMap being swapped) is a
            # source failure, not a deletion of everything in it: what was read from it
            # keeps being served until it is back.
            origin = f"config path {root}"
            if root in survey.missing:
                self._problems.set(origin, _unreadable(
                    str(root), "config path missing; serving the objects last read from it"))
            else:
                self._problems.clear(origin)
        for path in self._skipped - survey.skipped.keys():
            self._problems.clear(str(path))
        for path, why in survey.skipped.items():
            self._problems.set(str(path), [Problem(Reason.UNREADABLE, why, source=str(path))])
        self._skipped = set(survey.skipped)
        for path in sorted(set(self._files) - set(survey.present)):
            if self._under(path, survey.missing):
                continue
            del self._files[path]
            self._store.replace_partition(str(path), {})
            self._problems.clear(str(path))
            log.info("%s removed", path)
        for read in survey.reads:
            origin = str(read.path)
            state = self._files.setdefault(read.path, _FileState())
            state.signature = read.signature
            self._problems.set(origin, read.problems)
            if read.objects is None:
                continue  # keep serving what the file held before
            state.good = read.objects
            self._store.replace_partition(origin, read.objects)
