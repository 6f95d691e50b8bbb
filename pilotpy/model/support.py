"""Which fields pilotpy reads, and which it knowingly leaves alone.

A parser run over a `SupportRecorder` reads every field it knows (see `schema.py`); fields it
declares with `Fields.unsupported` or tolerates silently through `done(ignore=...)` are
*declined*: accepted in the input, not translated. Paths are dotted field names without array
or map markers (`http.match.uri.prefix`), relative to the document the parser reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pilotpy.model.fields import Fields
from pilotpy.model.schema import Schema, SchemaRecorder

Text = str


class SupportRecorder(SchemaRecorder):
    __slots__ = ("_declined", "_rejected", "_root")

    def __init__(self, path: Text = "", depth: int = 0,
                 shared: tuple[set[Text], set[Text], Text] | None = None) -> None:
        super().__init__(path, depth)
        self._declined, self._rejected, self._root = shared or (set(), set(), path)

    def _child_recorder(self, path: Text) -> SchemaRecorder:
        return SupportRecorder(path, self._depth + 1,
                               (self._declined, self._rejected, self._root))

    def _relative(self, key: Text) -> Text:
        path = self.at(key)
        if self._root and path.startswith(self._root + "."):
            return path[len(self._root) + 1:]
        return path

    def unsupported(self, *keys: Text, reason: Text = "", consequence: Text = "") -> None:
        self._declined.update(self._relative(key) for key in keys)

    def reject(self, key: Text, message: Text) -> None:
        self._rejected.add(self._relative(key))

    def done(self, ignore: Iterable[Text] = ()) -> None:
        self._declined.update(self._relative(key) for key in ignore)


def _inner(schema: Schema) -> Schema:
    """The object schema a field's values have (through arrays and maps)."""
    while True:
        if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            schema = schema["items"]
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = schema["additionalProperties"]
        else:
            return schema


def _is_open(schema: Schema) -> bool:
    """Read whole (`raw`/`has`): pilotpy takes the value as it is, with whatever it holds."""
    return "type" not in schema and "properties" not in schema and "oneOf" not in schema


def field_paths(schema: Schema, prefix: Text = "") -> Iterator[tuple[Text, bool]]:
    """Every field path below `schema`, each with whether it is taken whole."""
    for key, sub in sorted(schema.get("properties", {}).items()):
        path = f"{prefix}.{key}" if prefix else key
        inner = _inner(sub)
        yield path, _is_open(inner) and _is_open(sub)
        yield from field_paths(inner, path)


@dataclass(frozen=True)
class FieldSupport:
    read: dict[Text, bool]  # path -> taken whole
    declined: frozenset[Text]  # accepted and ignored, with a warning
    rejected: frozenset[Text]  # an object setting them is invalid

    def is_rejected(self, path: Text) -> bool:
        return any(path == r or path.startswith(r + ".") for r in self.rejected)

    def _refused(self, path: Text) -> bool:
        return any(path == r or path.startswith(r + ".")
                   for r in self.declined | self.rejected)

    @property
    def supported(self) -> list[Text]:
        return sorted(p for p in self.read if not self._refused(p))

    def covers(self, path: Text) -> bool:
        """Whether pilotpy reads `path` (itself, or a parent it takes whole)."""
        if self._refused(path):
            return False
        if path in self.read:
            return True
        parts = path.split(".")
        return any(self.read.get(".".join(parts[:n])) for n in range(1, len(parts)))


def field_support(read: Callable[[Fields], Any], root: Text = "spec") -> FieldSupport:
    recorder = SupportRecorder(root)
    read(recorder)
    return FieldSupport(dict(field_paths(recorder.schema())), frozenset(recorder._declined),
                        frozenset(recorder._rejected))
