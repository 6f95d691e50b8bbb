"""Strings a client or a config author chose, bounded before they reach a log line, a status
message or a debug page: one megabyte of NACK message must not become a megabyte per log
line."""

from __future__ import annotations

LOG_CHARS = 512


def clip(text: str, limit: int = LOG_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
