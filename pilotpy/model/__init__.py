"""Typed, immutable config objects parsed and validated from Kubernetes-style documents."""

from pilotpy.model.errors import InvalidObject, Issue, ObjectRef, UnknownKind
from pilotpy.model.meta import Key, Meta
from pilotpy.model.parse import KINDS, ConfigObject, Parsed, parse_object

__all__ = [
    "KINDS",
    "ConfigObject",
    "InvalidObject",
    "Issue",
    "Key",
    "Meta",
    "ObjectRef",
    "Parsed",
    "UnknownKind",
    "parse_object",
]
