"""OpenAPI schemas for the CRDs, generated from the model's own parsers.

A parser reads a document through `Fields`; running it over a recording `Fields` that claims
every field exists yields each field it reads and the type it reads it as. The schema is
structural (a type on every node) and keeps fields it does not know
(`x-kubernetes-preserve-unknown-fields` on every object): Istio fields pilotpy does not
translate must still be accepted and stored, as istiod's own CRDs accept them, and pilotpy
warns about them when it reads the object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta

Schema = dict[str, Any]
ANY: Schema = {"x-kubernetes-preserve-unknown-fields": True}
MAX_DEPTH = 16
PLACEHOLDER = "x"

def _object(properties: dict[str, Schema] | None = None) -> Schema:
    out: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if properties:
        out["properties"] = properties
    return out


def _merge(old: Schema | None, new: Schema) -> Schema:
    """Two reads of one field: the same type stays; differing types accept anything (a parser
    that sniffs a value's type before reading it, such as an int-or-string)."""
    if old is None or old is ANY:
        return new if old is None else old
    if new is ANY:
        return ANY
    if old.get("type") != new.get("type"):
        return ANY
    if old.get("type") == "object" and "properties" in new:
        merged = dict(old.get("properties", {}))
        for key, value in new["properties"].items():
            merged[key] = _merge(merged.get(key), value)
        return {**old, "properties": merged}
    if old.get("type") == "array":
        return {**old, "items": _merge(old.get("items"), new["items"])}
    return old


class SchemaRecorder(Fields):
    """A `Fields` over a document that has every field: records what the parser reads."""

    __slots__ = ("_depth", "_nodes", "_present")

    def __init__(self, path: str = "", depth: int = 0) -> None:
        super().__init__({}, path, [])
        self._nodes: dict[str, Schema | SchemaRecorder | tuple[str, SchemaRecorder]] = {}
        self._present: set[str] = set()
        self._depth = depth

    # -- recording -------------------------------------------------------------------------

    def _record(self, key: str, schema: Schema) -> None:
        old = self._nodes.get(key)
        if isinstance(old, SchemaRecorder | tuple):
            old = self._schema_of(old)
        self._nodes[key] = _merge(old, schema)

    def _nested(self, key: str, container: str) -> SchemaRecorder | None:
        if self._depth >= MAX_DEPTH:
            self._record(key, ANY)
            return None
        existing = self._nodes.get(key)
        if container == "object" and isinstance(existing, SchemaRecorder):
            return existing
        if isinstance(existing, tuple) and existing[0] == container:
            return existing[1]
        child = self._child_recorder(self.at(key))
        if existing is not None:
            # Read as two different shapes: accept anything.
            self._nodes[key] = ANY
            return child
        self._nodes[key] = child if container == "object" else (container, child)
        return child

    def _child_recorder(self, path: str) -> SchemaRecorder:
        return SchemaRecorder(path, self._depth + 1)

    @staticmethod
    def _schema_of(node: Schema | SchemaRecorder | tuple[str, SchemaRecorder]) -> Schema:
        if isinstance(node, SchemaRecorder):
            return node.schema()
        if isinstance(node, tuple):
            container, child = node
            if container == "array":
                return {"type": "array", "items": child.schema()}
            return {"type": "object", "additionalProperties": child.schema()}
        return node

    def schema(self) -> Schema:
        properties = {key: self._schema_of(node) for key, node in sorted(self._nodes.items())}
        for key in sorted(self._present - self._nodes.keys()):
            properties[key] = ANY
        return _object(properties)

    # -- the Fields interface --------------------------------------------------------------

    def done(self, ignore: Iterable[str] = ()) -> None:
        return None

    def has(self, key: str) -> bool:
        self._present.add(key)
        return True

    def raw(self, key: str) -> Any:
        self._record(key, ANY)
        return None

    def child(self, key: str) -> Fields | None:
        return self._nested(key, "object")

    def children(self, key: str) -> list[Fields]:
        child = self._nested(key, "array")
        return [child] if child is not None else []

    def child_map(self, key: str) -> dict[str, Fields]:
        child = self._nested(key, "map")
        return {PLACEHOLDER: child} if child is not None else {}

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        self._record(key, {"type": "string"})
        return default or PLACEHOLDER

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        self._record(key, {"type": "array", "items": {"type": "string"}})
        return (PLACEHOLDER,)

    def string_map(self, key: str) -> dict[str, str]:
        self._record(key, {"type": "object", "additionalProperties": {"type": "string"}})
        return {PLACEHOLDER: PLACEHOLDER}

    def integer_map(self, key: str, *, minimum: int = 0, maximum: int = 65535) -> dict[str, int]:
        self._record(key, {"type": "object", "additionalProperties": {"type": "integer"}})
        return {PLACEHOLDER: max(minimum, 1)}

    def integer(self, key: str, *, default: int = 0, minimum: int | None = None,
            maximum: int | None = None, required: bool = False) -> int:
        self._record(key, {"type": "integer"})
        return minimum if minimum is not None and minimum > 0 else max(default, 1)

    def optional_integer(self, key: str, *, minimum: int | None = None,
                     maximum: int | None = None) -> int | None:
        return self.integer(key, minimum=minimum, maximum=maximum)

    def number(self, key: str, *, default: float = 0.0) -> float:
        self._record(key, {"type": "number"})
        return default or 1.0

    def optional_number(self, key: str) -> float | None:
        return self.number(key)

    def boolean(self, key: str, *, default: bool = False) -> bool:
        self._record(key, {"type": "boolean"})
        return True

    def optional_boolean(self, key: str) -> bool | None:
        return self.boolean(key)

    def enum(self, key: str, allowed: Iterable[str], *, default: str = "") -> str:
        self._record(key, {"type": "string"})
        choices = tuple(allowed)
        return choices[0] if choices else default

    def duration_ns(self, key: str, *, minimum_ns: int = 0) -> int | None:
        self._record(key, {"type": "string"})
        return max(minimum_ns, 1_000_000_000)


def spec_schema(kind: str, parser: Callable[[Meta, Fields], Any]) -> Schema:
    """The schema of `spec` as `parser` reads it."""
    recorder = SchemaRecorder("spec")
    parser(Meta(kind, PLACEHOLDER, PLACEHOLDER), recorder)
    return recorder.schema()
