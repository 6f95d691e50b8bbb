"""The Prometheus exposition pilotpy writes: istiod's names (no `_total` on counters),
cumulative histogram buckets, escaped label values; and the source status API."""

from __future__ import annotations

from pilotpy.runtime.metrics import Registry, process_metrics
from pilotpy.server.monitoring import PilotMetrics, push_triggers


def test_counters_keep_their_name_without_total() -> None:
    registry = Registry()
    pushes = registry.counter("pilot_xds_pushes", "Pushes.", ("type",))
    pushes.inc(type="cds")
    pushes.inc(2, type="cds")
    text = registry.render()
    assert "# TYPE pilot_xds_pushes counter" in text
    assert 'pilot_xds_pushes{type="cds"} 3' in text
    assert "_total" not in text


def test_histogram_buckets_are_cumulative() -> None:
    registry = Registry()
    latency = registry.histogram("pilot_xds_push_time", "Push time.", (0.1, 1, 10), ("type",))
    for value in (0.05, 0.5, 0.5, 20):
        latency.observe(value, type="rds")
    lines = registry.render().splitlines()
    assert 'pilot_xds_push_time_bucket{type="rds",le="0.1"} 1' in lines
    assert 'pilot_xds_push_time_bucket{type="rds",le="1"} 3' in lines
    assert 'pilot_xds_push_time_bucket{type="rds",le="10"} 3' in lines
    assert 'pilot_xds_push_time_bucket{type="rds",le="+Inf"} 4' in lines
    assert 'pilot_xds_push_time_count{type="rds"} 4' in lines
    assert 'pilot_xds_push_time_sum{type="rds"} 21.05' in lines


def test_label_values_are_escaped() -> None:
    registry = Registry()
    gauge = registry.gauge("g", "A gauge.", ("err",))
    gauge.set(1, err='say "no"\\\n')
    assert 'g{err="say \\"no\\"\\\\\\n"} 1' in registry.render()


def test_process_metrics_report_cpu_and_memory() -> None:
    text = "\n".join(process_metrics())
    assert "process_cpu_seconds_total " in text
    assert "process_resident_memory_bytes " in text


def test_push_triggers_follow_istiods_reasons() -> None:
    assert push_triggers(["EndpointSlice"]) == {"endpoint"}
    assert push_triggers(["VirtualService", "Service"]) == {"config", "service"}


def test_sources_gate_readiness_and_report_a_lost_api() -> None:
    metrics = PilotMetrics()
    assert metrics.sources.unsynced() == []
    metrics.sources.set_synced("kube", False)
    assert metrics.sources.unsynced() == ["kube"]
    metrics.sources.set_connected("kube", False)
    text = metrics.render()
    assert 'pilotpy_source_synced{source="kube"} 0' in text
    assert 'pilotpy_source_connected{source="kube"} 0' in text
    metrics.sources.set_synced("kube", True)
    assert metrics.sources.unsynced() == []
