"""RFC 6902 JSON patches between two JSON documents: the webhook's answer is the patch that
turns the pod the API server sent into the injected pod. A changed list is replaced whole
(the API server applies the patch to exactly the object it sent, so nothing is lost), a
changed map is patched key by key."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Operation = dict[str, Any]


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def diff(before: Any, after: Any, path: tuple[str, ...] = ()) -> list[Operation]:
    """The operations that turn `before` into `after`."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        ops: list[Operation] = []
        for key in before:
            if key not in after:
                ops.append({"op": "remove", "path": _pointer((*path, key))})
        for key, value in after.items():
            if key not in before:
                ops.append({"op": "add", "path": _pointer((*path, key)), "value": value})
            else:
                ops += diff(before[key], value, (*path, key))
        return ops
    if before == after and type(before) is type(after):
        return []
    return [{"op": "replace", "path": _pointer(path), "value": after}]


def _unpointer(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def apply(document: Any, operations: list[Operation]) -> Any:
    """`operations` (add, remove, replace) applied to a copy of `document`."""
    out = copy.deepcopy(document)
    for op in operations:
        parts = _unpointer(op["path"])
        if not parts or parts == [""]:
            raise ValueError("patching the whole document is not supported")
        parent = out
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[last]
        elif op["op"] == "replace" and last not in parent:
            raise ValueError(f"replace of a missing member: {op['path']}")
        else:
            parent[last] = copy.deepcopy(op["value"])
    return out
