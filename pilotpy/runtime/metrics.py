"""Prometheus metric primitives and the text exposition format (version 0.0.4).

Written here rather than taken from prometheus_client because istiod's counters carry no
`_total` suffix (`pilot_xds_pushes`, not `pilot_xds_pushes_total`), and dashboards built for
istiod match those names literally. Each metric keeps its samples by label values; a
Registry renders every metric it holds, plus collectors that compute samples at scrape time.
"""

from __future__ import annotations

import math
import os
import resource
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def sample_line(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {_format_value(value)}"
    return f"{name} {_format_value(value)}"


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.label_names)}")
        return tuple((n, str(labels[n])) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        return self.header() + self.samples()


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        if not self._values and not self.label_names:
            return [sample_line(self.name, (), 0)]
        return [sample_line(self.name, k, v) for k, v in sorted(self._values.items())]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value

    def clear(self) -> None:
        self._values.clear()


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0
    count: int = 0


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float],
                 label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[Labels, _Buckets] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = _Buckets([0] * len(self.buckets))
        index = bisect_left(self.buckets, value)
        if index < len(self.buckets):
            found.counts[index] += 1
        found.total += value
        found.count += 1

    def count(self, **labels: str) -> int:
        found = self._values.get(self._key(labels))
        return found.count if found is not None else 0

    def samples(self) -> list[str]:
        out = []
        for key, values in sorted(self._values.items(), key=lambda kv: kv[0]):
            cumulative = 0
            for bound, count in zip(self.buckets, values.counts, strict=True):
                cumulative += count
                out.append(sample_line(f"{self.name}_bucket", (*key, ("le", _format_value(
                    bound))), cumulative))
            out.append(sample_line(f"{self.name}_bucket", (*key, ("le", "+Inf")), values.count))
            out.append(sample_line(f"{self.name}_sum", key, values.total))
            out.append(sample_line(f"{self.name}_count", key, values.count))
        return out


Collector = Callable[[], Iterable[str]]


class Registry:
    """Metrics plus scrape-time collectors, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._collectors: list[Collector] = []

    def add(self, metric: Metric) -> Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, label_names)
        self.add(metric)
        return metric

    def gauge(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, label_names)
        self.add(metric)
        return metric

    def histogram(self, name: str, help_text: str, buckets: Sequence[float],
                  label_names: Sequence[str] = ()) -> Histogram:
        metric = Histogram(name, help_text, buckets, label_names)
        self.add(metric)
        return metric

    def collect(self, collector: Collector) -> None:
        """`collector` runs at every scrape and returns exposition lines (HELP/TYPE included)."""
        self._collectors.append(collector)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.render()
        for collector in self._collectors:
            lines += collector()
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_START_TIME = time.time()


def process_metrics() -> list[str]:
    """The standard process_* metrics Prometheus clients export (CPU, memory, fds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lines = [
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        sample_line("process_cpu_seconds_total", (), usage.ru_utime + usage.ru_stime),
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.",
        "# TYPE process_start_time_seconds gauge",
        sample_line("process_start_time_seconds", (), round(_START_TIME, 3)),
    ]
    rss, vms = _memory()
    if rss is not None:
        lines += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
                  "# TYPE process_resident_memory_bytes gauge",
                  sample_line("process_resident_memory_bytes", (), rss)]
    if vms is not None:
        lines += ["# HELP process_virtual_memory_bytes Virtual memory size in bytes.",
                  "# TYPE process_virtual_memory_bytes gauge",
                  sample_line("process_virtual_memory_bytes", (), vms)]
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        return lines
    return [*lines, "# HELP process_open_fds Number of open file descriptors.",
            "# TYPE process_open_fds gauge", sample_line("process_open_fds", (), fds)]


def _memory() -> tuple[int | None, int | None]:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            vms_pages, rss_pages = (int(v) for v in statm.read().split()[:2])
    except (OSError, ValueError):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_maxrss * 1024, None
    page = os.sysconf("SC_PAGE_SIZE")
    return rss_pages * page, vms_pages * page
