"""The backoff moved to pilotpy/runtime/backoff.py (the supervisor uses it too); kept here for
the modules that import it from this path."""

from pilotpy.runtime.backoff import Backoff

__all__ = ["Backoff"]
