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


class Fields:
    __slots__ = ("_data", "_issues", "_seen", "path")

    def __init__(self, data: Mapping[str, Any], path: str, issues: list[Issue]) -> None:
        self._data = data
        self.path = path
        self._issues = issues
        self._seen: set[str] = set()

    # -- reporting -------------------------------------------------------------------------

    def at(self, key: str | None = None) -> str:
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def error(self, message: str, key: str | None = None) -> None:
        self._issues.append(Issue(self.at(key), message))

    def warn(self, message: str, key: str | None = None,
             reason: Reason = Reason.UNSUPPORTED) -> None:
        self._issues.append(Issue(self.at(key), message, reason))

    def warn_at(self, path: str, message: str, reason: Reason = Reason.IGNORED) -> None:
        """A warning about a field outside this cursor's subtree, by its full path
        (`metadata.annotations.istio.io/dry-run` while reading `spec`)."""
        self._issues.append(Issue(path, message, reason))

    def deprecated(self, message: str, key: str) -> None:
        self.warn(message, key, Reason.DEPRECATED)

    def unsupported(self, *keys: str, reason: str = "not supported by pilotpy yet",
                    consequence: str = "ignored") -> None:
        """Warn (once per key present) about a valid Istio field pilotpy does not translate."""
        for key in keys:
            if self.has(key):
                self.warn(f"{reason}; {consequence}", key)

    def reject(self, key: str, message: str) -> None:
        """An Istio field pilotpy refuses: the object is invalid for pilotpy when it is set."""
        if self.has(key):
            self.error(message, key)

    def done(self, ignore: Iterable[str] = ()) -> None:
        """Warn about keys nobody read (typos, fields pilotpy does not support yet)."""
        ignored = set(ignore)
        for key in self._data:
            if key not in self._seen and key not in ignored:
                self.warn("unknown field, ignored", str(key), Reason.UNKNOWN_FIELD)

    # -- raw access ------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        self._seen.add(key)
        return self._data.get(key) is not None

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str) -> Any:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in kinds:
            self.error(f"expected {expected}, got {_type_name(value)}", key)
            return None
        if not isinstance(value, kinds):
            self.error(f"expected {expected}, got {_type_name(value)}", key)
            return None
        return value

    # -- nested ----------------------------------------------------------------------------

    def child(self, key: str) -> Fields | None:
        value = self._typed(key, (dict,), "object")
        if value is None:
            return None
        return Fields(value, self.at(key), self._issues)

    def children(self, key: str) -> list[Fields]:
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

    def child_map(self, key: str) -> dict[str, Fields]:
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

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self._typed(key, (str,), "string")
        if value is None:
            if required and self.raw(key) is None:
                self.error("required", key)
            return default
        if required and not value:
            self.error("required, must not be empty", key)
        return _intern(value)

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self._typed(key, (list,), "list of strings")
        if value is None:
            if required:
                self.error("required", key)
            return ()
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self._issues.append(
                    Issue(f"{self.at(key)}[{index}]", f"expected string, got {_type_name(item)}")
                )
                continue
            out.append(item)  # lists hold addresses and hosts: mostly unique, not worth interning
        if required and not out:
            self.error("required, must not be empty", key)
        return tuple(out)

    def string_map(self, key: str) -> dict[str, str]:
        value = self._typed(key, (dict,), "map of strings")
        if value is None:
            return {}
        out = {}
        for name, item in value.items():
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                self._issues.append(
                    Issue(f"{self.at(key)}.{name}", f"expected string, got {_type_name(item)}")
                )
                continue
            out[_intern(str(name))] = _intern(item if isinstance(item, str) else str(item))
        return out

    def integer_map(self, key: str, *, minimum: int = 0, maximum: int = 65535) -> dict[str, int]:
        value = self._typed(key, (dict,), "map of integers")
        if value is None:
            return {}
        out = {}
        for name, item in value.items():
            path = f"{self.at(key)}.{name}"
            if isinstance(item, bool) or not isinstance(item, int):
                self._issues.append(Issue(path, f"expected integer, got {_type_name(item)}"))
            elif not minimum <= item <= maximum:
                self._issues.append(Issue(path, f"{item} is not in range {minimum}..{maximum}"))
            else:
                out[str(name)] = item
        return out

    def integer(
        self,
        key: str,
        *,
        default: int = 0,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = False,
    ) -> int:
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

    def optional_integer(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        if self.raw(key) is None:
            return None
        sentinel = -(2**63)
        value = self.integer(key, default=sentinel, minimum=minimum, maximum=maximum)
        return None if value == sentinel else value

    def number(self, key: str, *, default: float = 0.0) -> float:
        value = self._typed(key, (int, float), "number")
        return default if value is None else float(value)

    def optional_number(self, key: str) -> float | None:
        value = self._typed(key, (int, float), "number")
        return None if value is None else float(value)

    def boolean(self, key: str, *, default: bool = False) -> bool:
        value = self._typed(key, (bool,), "boolean")
        return default if value is None else bool(value)

    def optional_boolean(self, key: str) -> bool | None:
        value = self._typed(key, (bool,), "boolean")
        return None if value is None else bool(value)

    def enum(self, key: str, allowed: Iterable[str], *, default: str = "") -> str:
        value = self.string(key, default=default)
        if not value or value == default:
            return value
        choices = tuple(allowed)
        if value not in choices:
            self.error(f"{value!r} is not one of {', '.join(choices)}", key)
            return default
        return value

    def duration_ns(self, key: str, *, minimum_ns: int = 0) -> int | None:
        """A duration like `10s`, `0.5s`, `1m30s`; None when absent or invalid."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
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
