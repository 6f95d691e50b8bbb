"""S1, one run in this process: cold translation of N services for one proxy (the ingress
gateway, or a sidecar: full CDS/EDS/LDS/RDS), to bytes.

Prints one JSON object. bench/run.py runs it several times in fresh processes, pinned to one
CPU, and reports medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configgen import GATEWAY_NODE, SIDECAR_NODE, documents
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilotpy.discovery import Discovery
from pilotpy.mesh import MeshConfig
from pilotpy.model import parse_object
from pilotpy.runtime.memory import tune_gc
from pilotpy.store import ChangeSet


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure(services: int, endpoints: int, proxy: str = "gateway") -> dict[str, Any]:
    tune_gc()  # as `pilotpy serve` runs
    docs = documents(services, endpoints)
    rss_start = rss_bytes()

    started, cpu = time.perf_counter(), time.process_time()
    objects: dict[str, dict[Any, Any]] = {}
    for doc in docs:
        obj = parse_object(doc).obj
        objects.setdefault(obj.meta.kind, {})[obj.meta.key] = obj
    parse = (time.perf_counter() - started, time.process_time() - cpu)
    rss_parsed = rss_bytes()

    discovery = Discovery(MeshConfig())
    keys = frozenset(k for by_kind in objects.values() for k in by_kind)
    started, cpu = time.perf_counter(), time.process_time()
    discovery.update(ChangeSet(objects, keys, 1))
    push = (time.perf_counter() - started, time.process_time() - cpu)
    rss_pushed = rss_bytes()

    node = base_pb2.Node()
    node.metadata.CopyFrom(struct_pb2.Struct())
    if proxy == "sidecar":
        node.id = SIDECAR_NODE.format(i=1)
        node.metadata.update({"LABELS": {"app": "client"}, "NAMESPACE": "bench"})
    else:
        node.id = GATEWAY_NODE.format(i=0)
        node.metadata.update({"LABELS": {"istio": "ingressgateway"},
                              "NAMESPACE": "istio-system"})
    handle = discovery.connect(node)
    started, cpu = time.perf_counter(), time.process_time()
    snapshot = discovery.snapshot(handle)
    translate = (time.perf_counter() - started, time.process_time() - cpu)

    counts = {t.rsplit(".", 1)[-1]: len(s) for t, s in snapshot.resources.items()}
    # Counted without joining what a resource keeps as parts (it is joined into a response).
    size = sum(r.size for s in snapshot.resources.values() for r in s.by_name.values())
    return {
        "proxy": proxy,
        "services": services,
        "endpoints_per_service": endpoints,
        "parse_wall_s": parse[0], "parse_cpu_s": parse[1],
        "push_context_wall_s": push[0], "push_context_cpu_s": push[1],
        "translate_wall_s": translate[0], "translate_cpu_s": translate[1],
        "resources": counts,
        "bytes": size,
        "rss_growth_mb": (rss_bytes() - rss_start) / 2**20,
        "rss_growth_parse_mb": (rss_parsed - rss_start) / 2**20,
        "rss_growth_push_context_mb": (rss_pushed - rss_parsed) / 2**20,
        "rss_growth_translate_mb": (rss_bytes() - rss_pushed) / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--proxy", choices=("gateway", "sidecar"), default="gateway")
    args = parser.parse_args()
    print(json.dumps(measure(args.services, args.endpoints, args.proxy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
