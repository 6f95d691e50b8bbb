"""YAML documents from files nobody vetted, built without recursion and within limits.

PyYAML builds a document recursively (a C composer that overflows the stack at about 100,000
levels and takes quadratic time long before that) and shares aliased nodes, so a few hundred
bytes of aliases expand to billions of nodes for whoever walks the result (equality, hashing,
JSON). Here documents are built from libyaml's event stream with an explicit stack: a
document nested deeper than MAX_DEPTH levels, or whose aliases would expand to more than
MAX_ALIAS_NODES nodes, is refused with the line and the path where it happens. Scalars are
resolved and constructed by PyYAML's safe loader itself, so values are exactly what
`yaml.safe_load` returns (bool, int, float, null, timestamps, binary, merge keys, !!set,
!!omap, !!pairs; any other tag is an error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.error import Mark

from pilotpy.runtime.logtext import clip

try:
    _LOADER: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _LOADER = yaml.SafeLoader

# Kubernetes objects nest a few dozen levels at most (an EnvoyFilter patch is among the
# deepest); Python's comparison and JSON encoding recurse once per level.
MAX_DEPTH = 100
# Nodes a file may gain through aliases (each use of an alias counts the whole node).
MAX_ALIAS_NODES = 100_000
# Brackets nested this deep (counted in the raw text, quotes or not) are refused before
# libyaml sees them: its parser slows down quadratically with flow nesting depth.
MAX_RAW_FLOW_DEPTH = 1000

_TAG = "tag:yaml.org,2002:"
STR, MAP, SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
MERGE, VALUE = _TAG + "merge", _TAG + "value"
SET, OMAP, PAIRS = _TAG + "set", _TAG + "omap", _TAG + "pairs"
_FLOW = re.compile(r"[\[\]{}]")


class LimitExceeded(yaml.YAMLError):
    """A document past MAX_DEPTH or MAX_ALIAS_NODES; reads like PyYAML's own errors."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


@dataclass(slots=True)
class _Anchored:
    value: Any = None
    size: int = 1  # nodes, aliases expanded
    height: int = 0  # levels below the node
    complete: bool = False


@dataclass(slots=True)
class _Frame:
    """A collection being built."""

    kind: str  # MAP, SEQ, SET, OMAP, PAIRS
    start: Any
    anchor: _Anchored | None
    items: list[Any] = field(default_factory=list)  # values, or (key, value) pairs
    merges: list[list[tuple[Any, Any]]] = field(default_factory=list)
    key: Any = None
    has_key: bool = False
    key_is_merge: bool = False
    size: int = 1
    height: int = 1  # an empty collection is a level too

    def path_part(self) -> str:
        if self.kind in (SEQ, OMAP, PAIRS):
            return f"[{len(self.items)}]"
        return f".{self.key}" if self.has_key else ""

    def add(self, value: Any, size: int, height: int, is_merge_key: bool, mark: Any) -> None:
        self.size += size
        self.height = max(self.height, height + 1)
        if self.kind in (SEQ, OMAP, PAIRS):
            self.items.append(value)
            return
        if not self.has_key:
            if isinstance(value, (list, dict, set)):
                raise ConstructorError("while constructing a mapping", self.start,
                                       "found unhashable key", mark)
            self.key, self.has_key, self.key_is_merge = value, True, is_merge_key
            return
        self.has_key = False
        if self.key_is_merge:
            self.merges.append(_merged_pairs(value, self.start, mark))
        else:
            self.items.append((self.key, value))

    def finish(self, mark: Any) -> Any:
        if self.kind == SEQ:
            return self.items
        if self.kind in (OMAP, PAIRS):
            pairs = []
            for item in self.items:
                if not isinstance(item, dict) or len(item) != 1:
                    raise ConstructorError(f"while constructing an ordered map ({self.kind})",
                                           self.start, "expected a single mapping item", mark)
                pairs.append(next(iter(item.items())))
            return pairs
        # Merged keys come first and the mapping's own override them, as in PyYAML.
        out = {k: v for pairs in self.merges for k, v in pairs}
        out.update(self.items)
        return set(out) if self.kind == SET else out


def _merged_pairs(value: Any, start: Any, mark: Any) -> list[tuple[Any, Any]]:
    """What `<<: value` merges: a mapping, or mappings of which the first listed wins."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return [pair for mapping in reversed(value) for pair in mapping.items()]
    raise ConstructorError("while constructing a mapping", start,
                           "expected a mapping or list of mappings for merging", mark)


def check_flow_nesting(text: str) -> None:
    """Refuse text whose brackets nest past MAX_RAW_FLOW_DEPTH (an over-estimate: brackets
    inside quotes count too)."""
    if text.count("[") + text.count("{") <= MAX_RAW_FLOW_DEPTH:
        return
    depth = 0
    for match in _FLOW.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_RAW_FLOW_DEPTH:
            line = text.count("\n", 0, match.start())
            raise LimitExceeded(f"brackets nested more than {MAX_RAW_FLOW_DEPTH} deep",
                                Mark("", match.start(), line, 0, "", 0))


def load_documents(text: str) -> list[Any]:
    """Every document of `text`, as yaml.safe_load_all gives them; raises yaml.YAMLError
    (LimitExceeded past the limits)."""
    check_flow_nesting(text)
    loader = _LOADER(text)
    try:
        loader.get_event()  # StreamStart
        documents = []
        budget = [MAX_ALIAS_NODES]
        while not loader.check_event(yaml.StreamEndEvent):
            documents.append(_document(loader, budget))
        return documents
    finally:
        loader.dispose()


def load_document(text: str) -> Any:
    """The one document of `text` (None when empty), as yaml.safe_load gives it."""
    documents = load_documents(text)
    if len(documents) > 1:
        raise ComposerError(None, None, "expected a single document in the stream, but found "
                            "another document", None)
    return documents[0] if documents else None


def _scalar(loader: Any, event: Any, is_key: bool) -> tuple[Any, bool]:
    """The value, and whether it is a merge key (`<<`)."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == STR:
        return event.value, False
    if is_key and tag == MERGE:
        return event.value, True
    if is_key and tag == VALUE:  # `=` is a plain string as a key, as PyYAML makes it
        return event.value, False
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return loader.construct_object(node, deep=True), False
    finally:
        loader.constructed_objects.clear()


def _collection_kind(event: Any, default: str, allowed: tuple[str, ...]) -> str:
    tag = event.tag
    if tag is None or tag in ("!", default):
        return default
    if tag in allowed:
        return str(tag)
    raise ConstructorError(None, None, f"could not determine a constructor for the tag {tag!r}",
                           event.start_mark)


def _document(loader: Any, budget: list[int]) -> Any:
    """One document; `budget` holds the alias nodes the file may still expand."""
    loader.get_event()  # DocumentStart
    anchors: dict[str, _Anchored] = {}
    stack: list[_Frame] = []
    while True:
        event = loader.get_event()
        mark: Any = event.start_mark
        is_merge = False
        if isinstance(event, yaml.ScalarEvent):
            is_key = bool(stack) and stack[-1].kind in (MAP, SET) and not stack[-1].has_key
            value, is_merge = _scalar(loader, event, is_key)
            size, height = 1, 0
            if event.anchor is not None:
                anchors[event.anchor] = _Anchored(value, 1, 0, True)
        elif isinstance(event, yaml.AliasEvent):
            anchored = anchors.get(event.anchor or "")
            if anchored is None:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                    mark)
            if not anchored.complete:
                raise LimitExceeded(f"alias {event.anchor!r} refers to a node that contains it",
                                    mark)
            budget[0] -= anchored.size
            if budget[0] < 0:
                raise LimitExceeded(f"aliases expand to more than {MAX_ALIAS_NODES} nodes",
                                    mark)
            value, size, height = anchored.value, anchored.size, anchored.height
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if isinstance(event, yaml.MappingStartEvent):
                kind = _collection_kind(event, MAP, (SET,))
            else:
                kind = _collection_kind(event, SEQ, (OMAP, PAIRS))
            anchored = None
            if event.anchor is not None:
                anchored = anchors[event.anchor] = _Anchored()
            stack.append(_Frame(kind, mark, anchored))
            if len(stack) > MAX_DEPTH:
                raise _too_deep(stack, mark)
            continue
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = stack.pop()
            value, size, height = frame.finish(mark), frame.size, frame.height
            if frame.anchor is not None:
                frame.anchor.value, frame.anchor.size = value, size
                frame.anchor.height, frame.anchor.complete = height, True
        else:  # DocumentEnd
            return None
        if not stack:
            loader.get_event()  # DocumentEnd
            return value
        if len(stack) + height > MAX_DEPTH:
            raise _too_deep(stack, mark)
        stack[-1].add(value, size, height, is_merge, mark)


def _too_deep(stack: list[_Frame], mark: Any) -> LimitExceeded:
    path = "".join(frame.path_part() for frame in stack[:-1]).lstrip(".") or "the top"
    return LimitExceeded(f"nested more than {MAX_DEPTH} levels deep (at {clip(path, 120)})",
                         mark)
