"""istiod's metrics (pilot/pkg/xds/monitoring.go and friends) for one running pilotpy, with
istiod's exact names, plus the source status API that readiness and alerts read.

Counters that live elsewhere (responses sent and NACKs in the xDS server, rejected objects in
Diagnostics, store events) are read at scrape time; the rest are recorded here.

Config sources report their own status through `sources` (pilotpy/runtime/source_status.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from pilotpy.model.kinds import Kind
from pilotpy.runtime.metrics import Registry, process_metrics, sample_line
from pilotpy.runtime.source_status import SourceStatus
from pilotpy.xds import types
from pilotpy.xds.status import StreamStatus, XdsStats

DEBOUNCE_BUCKETS = (.01, .1, .5, 1, 3, 5, 10, 20, 30)
# Store kinds by what istiod calls the trigger of a push (model.TriggerReason).
_TRIGGER_BY_KIND = {Kind.ENDPOINT_SLICE: "endpoint", "Endpoints": "endpoint",
                    Kind.SERVICE: "service", Kind.SERVICE_ENTRY: "service", Kind.POD: "proxy"}


def push_triggers(kinds: Iterable[str]) -> set[str]:
    """The reasons for a push of a change set touching `kinds`."""
    return {_TRIGGER_BY_KIND.get(kind, "config") for kind in kinds}


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _by_type(name: str, counts: Mapping[str, int]) -> list[str]:
    return [sample_line(name, (("type", types.short_name(t)),), v)
            for t, v in sorted(counts.items())]


class PilotMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.debounce_time = r.histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config enters debouncing and the merged push "
            "request is pushed into the push queue.", DEBOUNCE_BUCKETS)
        self.push_triggers = r.counter(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason for the push.",
            ("type",))
        self.vservice_dup_domain = r.gauge("pilot_vservice_dup_domain",
                                           "Virtual services with dup domains.")
        self.analysis_messages = r.gauge(
            "pilotpy_config_analysis_messages",
            "Config analysis findings at ingest (istioctl analyze codes), by code and level.",
            ("code", "level"))
        self.sources = SourceStatus(r)

    # -- what the control plane records ----------------------------------------------------

    def record_push(self, kinds: Iterable[str], debounce_seconds: float) -> None:
        self.debounce_time.observe(debounce_seconds)
        for reason in sorted(push_triggers(kinds)):
            self.push_triggers.inc(type=reason)

    def record_analysis(self, levels_by_code: Mapping[tuple[str, str], int],
                        duplicate_domains: int) -> None:
        """The latest analysis at ingest: findings by (code, level), and istiod's
        pilot_vservice_dup_domain."""
        self.analysis_messages.clear()
        for (code, level), count in sorted(levels_by_code.items()):
            self.analysis_messages.set(count, code=code, level=level)
        self.vservice_dup_domain.set(duplicate_domains)

    def watch_xds(self, stats: XdsStats, proxies: Callable[[], list[StreamStatus]]) -> None:
        def collect() -> list[str]:
            by_version = Counter(p.node.istio_version or "unknown" for p in proxies())
            return [
                *_family("pilot_xds", "gauge",
                         "Number of endpoints connected to this pilot using XDS.",
                         [sample_line("pilot_xds", (("version", v),), n)
                          for v, n in sorted(by_version.items())]
                         or [sample_line("pilot_xds", (), 0)]),
                *_family("pilot_xds_pushes", "counter",
                         "Pilot build and send errors for lds, rds, cds and eds.",
                         _by_type("pilot_xds_pushes", stats.pushes)),
                *stats.push_time.render(),
                *stats.convergence.render(),
                *stats.config_size.render(),
                *_family("pilot_total_xds_rejects", "counter",
                         "Total number of XDS responses from pilot rejected by proxy.",
                         _by_type("pilot_total_xds_rejects", stats.rejects)),
                *_family("pilot_xds_expired_nonce", "counter",
                         "Total number of XDS requests with an expired nonce.",
                         _by_type("pilot_xds_expired_nonce", stats.expired_nonces)),
            ]

        self.registry.collect(collect)

    def watch_config(self, services: Callable[[], int], virtual_services: Callable[[], int],
                     rejected: Callable[[], int], events: Mapping[tuple[str, str], int],
                     generation_failures: Callable[[], Mapping[str, int]] = dict) -> None:
        def collect() -> list[str]:
            return [
                *_family("pilot_services", "gauge", "Total services known to pilot.",
                         [sample_line("pilot_services", (), services())]),
                *_family("pilot_virt_services", "gauge", "Total virtual services known to pilot.",
                         [sample_line("pilot_virt_services", (), virtual_services())]),
                *_family("pilot_total_rejected_configs", "counter",
                         "Total number of configs that Pilot had to reject or ignore.",
                         [sample_line("pilot_total_rejected_configs", (), rejected())]),
                *_family("pilot_k8s_cfg_events", "counter", "Events from k8s config.",
                         [sample_line("pilot_k8s_cfg_events", (("type", kind), ("event", ev)), n)
                          for (kind, ev), n in sorted(events.items())]),
                *_family("pilotpy_generation_failures_total", "counter",
                         "Generations of a proxy class's config that raised; the class kept "
                         "its last good config.",
                         [sample_line("pilotpy_generation_failures_total",
                                      (("proxy_type", t),), n)
                          for t, n in sorted(generation_failures().items())]),
            ]

        self.registry.collect(collect)

    def render(self) -> str:
        return self.registry.render() + "\n".join(process_metrics()) + "\n"
