"""Typed, immutable config objects parsed and validated from Kubernetes-style documents."""

from pilotpy.model.errors import Fallback, InvalidObject, Issue, ObjectRef, UnknownKind, is_stand_in
from pilotpy.model.meta import Key, Meta
from pilotpy.model.parse import KINDS, ConfigObject, Parsed, parse_object

__all__ = [
    "KINDS",
    "ConfigObject",
    "Fallback",
    "InvalidObject",
    "Issue",
    "Key",
    "Meta",
    "ObjectRef",
    "Parsed",
    "UnknownKind",
    "is_stand_in",
    "parse_object",
]
