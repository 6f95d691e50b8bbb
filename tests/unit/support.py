"""Helpers shared by the unit tests: parse documents, collect errors, build push contexts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import pytest

from pilotpy.mesh import MeshConfig
from pilotpy.model import InvalidObject, Key, parse_object
from pilotpy.push import PushContext, build_push_context

T = TypeVar("T")


def parse_as(doc: dict[str, Any], kind: type[T]) -> T:
    obj = parse_object(doc).obj
    assert isinstance(obj, kind), f"expected {kind.__name__}, got {type(obj).__name__}"
    return obj


def errors_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    """path -> messages of the errors the document raises."""
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    out: dict[str, list[str]] = {}
    for issue in info.value.issues:
        out.setdefault(issue.path, []).append(issue.message)
    return out


def objects_of(docs: Iterable[dict[str, Any]]) -> dict[str, dict[Key, Any]]:
    """Documents as the store hands them over: kind -> key -> object (an invalid security
    policy as its fail-closed stand-in; any other invalid document raises)."""
    out: dict[str, dict[Key, Any]] = {}
    for doc in docs:
        try:
            obj = parse_object(doc).obj
        except InvalidObject as err:
            if err.fallback is None:
                raise
            obj = err.fallback.obj
        out.setdefault(obj.meta.kind, {})[obj.meta.key] = obj
    return out


def context(*docs: dict[str, Any], mesh: MeshConfig | None = None) -> PushContext:
    push, _ = build_push_context(objects_of(docs), mesh or MeshConfig(), 1)
    return push
