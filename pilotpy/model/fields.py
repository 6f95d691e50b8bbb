"""A cursor over one mapping of a Kubernetes-style object.

Parsers read fields through it; every problem is recorded with its full path
(`spec.http[0].route[1].weight`) instead of raising, so one pass reports all of
an object's mistakes. Keys a parser never reads are reported as warnings: a
misspelt `retires:` must not be silently ignored.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from pilotpy.model.errors import Issue
from pilotpy.problems import Reason

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration_ns(text: str) -> int | None:
    """Parse Go (`1m30s`, `100ms`) and protobuf JSON (`1.5s`) durations to nanoseconds."""
    text = text.strip()
    if not text:
        return None
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        return None
    return round(total)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _intern(value: str) -> str:
    """Names, namespaces, label keys and values repeat across thousands of objects; one
    copy of each short string keeps a large mesh's memory down."""
    return sys.intern(value) if len(value) <= 64 else value


# The reader's methods are named after the types they read (`f.str("name")`), which hides the
# builtins inside the class body; annotations use these aliases instead.
Text = str
Int = int
Bool = bool
Float = float


class Fields:
    __slots__ = ("_data", "_issues", "_seen", "path")

    def __init__(self, data: Mapping[Text, Any], path: Text, issues: list[Issue]) -> None:
        self._data = data
        self.path = path
        self._issues = issues
        self._seen: set[Text] = set()

    # -- reporting -------------------------------------------------------------------------

    def at(self, key: Text | None = None) -> Text:
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def error(self, message: Text, key: Text | None = None) -> None:
        self._issues.append(Issue(self.at(key), message))

    def warn(self, message: Text, key: Text | None = None,
             reason: Reason = Reason.UNSUPPORTED) -> None:
        self._issues.append(Issue(self.at(key), message, reason))

    def deprecated(self, message: Text, key: Text) -> None:
        self.warn(message, key, Reason.DEPRECATED)

    def unsupported(self, *keys: Text, reason: Text = "not supported by pilotpy yet",
                    consequence: Text = "ignored") -> None:
        """Warn (once per key present) about a valid Istio field pilotpy does not translate."""
        for key in keys:
            if self.has(key):
                self.warn(f"{reason}; {consequence}", key)

    def reject(self, key: Text, message: Text) -> None:
        """An Istio field pilotpy refuses: the object is invalid for pilotpy when it is set."""
        if self.has(key):
            self.error(message, key)

    def done(self, ignore: Iterable[Text] = ()) -> None:
        """Warn about keys nobody read (typos, fields pilotpy does not support yet)."""
        ignored = set(ignore)
        for key in self._data:
            if key not in self._seen and key not in ignored:
                self.warn("unknown field, ignored", str(key), Reason.UNKNOWN_FIELD)

    # -- raw access ------------------------------------------------------------------------

    def has(self, key: Text) -> Bool:
        self._seen.add(key)
        return self._data.get(key) is not None

    def raw(self, key: Text) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def _typed(self, key: Text, kinds: tuple[type, ...], expected: Text) -> Any:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, Bool) and bool not in kinds:
            self.error(f"expected {expected}, got {_type_name(value)}", key)
            return None
        if not isinstance(value, kinds):
            self.error(f"expected {expected}, got {_type_name(value)}", key)
            return None
        return value

    # -- nested ----------------------------------------------------------------------------

    def child(self, key: Text) -> Fields | None:
        value = self._typed(key, (dict,), "object")
        if value is None:
            return None
        return Fields(value, self.at(key), self._issues)

    def children(self, key: Text) -> list[Fields]:
        value = self._typed(key, (list,), "list")
        if value is None:
            return []
        out = []
        for index, item in enumerate(value):
            path = f"{self.at(key)}[{index}]"
            if not isinstance(item, dict):
                self._issues.append(Issue(path, f"expected object, got {_type_name(item)}"))
                continue
            out.append(Fields(item, path, self._issues))
        return out

    def child_map(self, key: Text) -> dict[Text, Fields]:
        """A map whose values are objects, e.g. `headers: {end-user: {exact: jason}}`."""
        value = self._typed(key, (dict,), "object")
        if value is None:
            return {}
        out = {}
        for name, item in value.items():
            path = f"{self.at(key)}.{name}"
            if item is None:
                item = {}
            if not isinstance(item, dict):
                self._issues.append(Issue(path, f"expected object, got {_type_name(item)}"))
                continue
            out[str(name)] = Fields(item, path, self._issues)
        return out

    # -- scalars ---------------------------------------------------------------------------

    def str(self, key: Text, *, required: Bool = False, default: Text = "") -> Text:
        value = self._typed(key, (str,), "string")
        if value is None:
            if required and self.raw(key) is None:
                self.error("required", key)
            return default
        if required and not value:
            self.error("required, must not be empty", key)
        return _intern(value)

    def str_list(self, key: Text, *, required: Bool = False) -> tuple[Text, ...]:
        value = self._typed(key, (list,), "list of strings")
        if value is None:
            if required:
                self.error("required", key)
            return ()
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, Text):
                self._issues.append(
                    Issue(f"{self.at(key)}[{index}]", f"expected string, got {_type_name(item)}")
                )
                continue
            out.append(item)  # lists hold addresses and hosts: mostly unique, not worth interning
        if required and not out:
            self.error("required, must not be empty", key)
        return tuple(out)

    def str_map(self, key: Text) -> dict[Text, Text]:
        value = self._typed(key, (dict,), "map of strings")
        if value is None:
            return {}
        out = {}
        for name, item in value.items():
            if isinstance(item, Bool) or not isinstance(item, Text | Int | Float):
                self._issues.append(
                    Issue(f"{self.at(key)}.{name}", f"expected string, got {_type_name(item)}")
                )
                continue
            out[_intern(str(name))] = _intern(item if isinstance(item, Text) else str(item))
        return out

    def int_map(self, key: Text, *, minimum: Int = 0, maximum: Int = 65535) -> dict[Text, Int]:
        value = self._typed(key, (dict,), "map of integers")
        if value is None:
            return {}
        out = {}
        for name, item in value.items():
            path = f"{self.at(key)}.{name}"
            if isinstance(item, Bool) or not isinstance(item, Int):
                self._issues.append(Issue(path, f"expected integer, got {_type_name(item)}"))
            elif not minimum <= item <= maximum:
                self._issues.append(Issue(path, f"{item} is not in range {minimum}..{maximum}"))
            else:
                out[str(name)] = item
        return out

    def int(
        self,
        key: Text,
        *,
        default: Int = 0,
        minimum: Int | None = None,
        maximum: Int | None = None,
        required: Bool = False,
    ) -> Int:
        value = self._typed(key, (int,), "integer")
        if value is None:
            if required and self.raw(key) is None:
                self.error("required", key)
            return default
        if minimum is not None and value < minimum:
            self.error(f"{value} is below the minimum {minimum}", key)
            return default
        if maximum is not None and value > maximum:
            self.error(f"{value} is above the maximum {maximum}", key)
            return default
        return int(value)

    def optional_int(
        self, key: Text, *, minimum: Int | None = None, maximum: Int | None = None
    ) -> Int | None:
        if self.raw(key) is None:
            return None
        sentinel = -(2**63)
        value = self.int(key, default=sentinel, minimum=minimum, maximum=maximum)
        return None if value == sentinel else value

    def float(self, key: Text, *, default: Float = 0.0) -> Float:
        value = self._typed(key, (int, Float), "number")
        return default if value is None else float(value)

    def bool(self, key: Text, *, default: Bool = False) -> Bool:
        value = self._typed(key, (bool,), "boolean")
        return default if value is None else bool(value)

    def optional_bool(self, key: Text) -> Bool | None:
        value = self._typed(key, (bool,), "boolean")
        return None if value is None else bool(value)

    def enum(self, key: Text, allowed: Iterable[Text], *, default: Text = "") -> Text:
        value = self.str(key, default=default)
        if not value or value == default:
            return value
        choices = tuple(allowed)
        if value not in choices:
            self.error(f"{value!r} is not one of {', '.join(choices)}", key)
            return default
        return value

    def duration_ns(self, key: Text, *, minimum_ns: Int = 0) -> Int | None:
        """A duration like `10s`, `0.5s`, `1m30s`; None when absent or invalid."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, Text):
            self.error(f"expected a duration string such as '10s', got {_type_name(value)}", key)
            return None
        parsed = parse_duration_ns(value)
        if parsed is None:
            self.error(f"{value!r} is not a duration (examples: '10s', '0.5s', '1m30s')", key)
            return None
        if parsed < minimum_ns:
            self.error(f"{value!r} is shorter than the minimum {minimum_ns / 1e9:g}s", key)
            return None
        return parsed
