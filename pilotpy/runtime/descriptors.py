"""The process's open-file limit. Every ADS stream, HTTP connection and config file read holds
a descriptor; a soft limit of 1024 (the usual default) is reached by a few hundred proxies
plus a few hundred idle HTTP clients. Go raises it to the hard limit at start, so istiod runs
with the hard limit; pilotpy does the same."""

from __future__ import annotations

import resource


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard
