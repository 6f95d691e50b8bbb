"""`make bench-compare`: pilotpy against the real istiod on this machine, in the same run.

Both serve the same kube-apiserver objects and the same fake-proxy client fleets
(bench/fakeproxies.py, which sends the node metadata pilot-agent sends). One control plane runs
at a time, pinned to CPU 0 (istiod with GOMAXPROCS=1); the API server, etcd and the fake
proxies run on CPU 1. istiod runs with its defaults ("istiod": new streams capped at 20/s on
one core) and with that cap lifted ("istiod-uncapped"); the capped one only where connecting
is what is measured (S6, S7). Every scenario runs `--rounds` times per control plane (the
groups of thousands of proxies `--heavy-rounds` times), the order alternating between rounds;
the table shows medians and the ratio pilotpy / istiod (uncapped).

Writes `<out>/compare.json` (every run's figures, the medians, the machine) and
`<out>/compare.txt` (the table). Scenarios: bench/compare_scenarios.py; meshes:
bench/compare_meshes.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from compare_env import Api  # noqa: E402
from compare_meshes import gateway_mesh, reference_mesh  # noqa: E402
from compare_scenarios import (  # noqa: E402
    Figures,
    Sizes,
    endpoint_churn,
    gateway_mesh_scenarios,
    generation_10k,
    idle_streams,
    reference,
    storm,
)

ISTIOD, ISTIOD_CAPPED, PILOTPY = "istiod-uncapped", "istiod", "pilotpy"
GROUPS = ("gateway", "churn", "idle", "storm", "reference", "generation-10k")

# (figure, what it is, unit, target as a ratio pilotpy/istiod or an absolute bound, or "")
ROWS: list[tuple[str, str, str, str]] = [
    ("gen_sidecar_1k_s", "per-proxy generation: fresh sidecar, 1k services", "s", "<= 1.0x"),
    ("gen_sidecar_1k_cpu_s", "  CPU", "s", ""),
    ("gen_sidecar_1k_first_s", "  the first fresh sidecar", "s", ""),
    ("gen_sidecar_1k_first_cpu_s", "  its CPU", "s", ""),
    ("gen_sidecar_10k_s", "per-proxy generation: fresh sidecar, 10k services", "s", "<= 1.0x"),
    ("gen_sidecar_10k_cpu_s", "  CPU", "s", ""),
    ("gen_sidecar_10k_first_s", "  the first fresh sidecar", "s", ""),
    ("gen_sidecar_10k_first_cpu_s", "  its CPU", "s", ""),
    ("gen_router_10k_s", "per-proxy generation: fresh gateway, 10k services", "s", "<= 1.0x"),
    ("gen_router_10k_cpu_s", "  CPU", "s", ""),
    ("gen_router_10k_first_s", "  the first fresh gateway", "s", ""),
    ("gen_router_10k_first_cpu_s", "  its CPU", "s", ""),
    ("s1_start_to_config_s", "S1 start -> full config at one gateway, 1k services", "s", ""),
    ("s1_cpu_s", "  CPU", "s", ""),
    ("s2_change_to_ack_s", "S2 one VirtualService change -> ACK, 1 proxy", "s", ""),
    ("s2_cpu_s", "  CPU", "s", ""),
    ("s3_100_p50_s", "S3 change -> ACK, 100 gateways, p50", "s", ""),
    ("s3_100_p99_s", "  p99", "s", ""),
    ("s3_100_cpu_s", "  CPU per push", "s", ""),
    ("s3_1000_p50_s", "S3 change -> ACK, 1000 gateways, p50", "s", ""),
    ("s3_1000_p99_s", "  p99", "s", "<= 1 s"),
    ("s3_1000_cpu_s", "  CPU per push", "s", ""),
    ("s4_cpu_cores", "S4 50 endpoint changes/s, 1000 gateways: CPU", "cores", ""),
    ("s4_cpu_ms_per_change", "  CPU per change", "ms", ""),
    ("s4_eds_responses_per_proxy", "  EDS responses per proxy", "", ""),
    ("s5_kb_per_proxy", "S5 RSS per idle gateway (200 routes), 1k->5k", "kB", "<= 0.3x"),
    ("s6_all_converged_s", "S6 5000 gateways (200 routes) in 10 s: all converged", "s", ""),
    ("s6_cpu_s", "  CPU", "s", ""),
    ("s6_peak_rss_mb", "  peak RSS", "MB", ""),
    ("s7_connect_s", "S7 2000 sidecars, 200 classes: all converged", "s", ""),
    ("s7_connect_cpu_ms_per_proxy", "  CPU per connect", "ms", "<= 0.5x"),
    ("s7_push_cpu_s", "  one push to a namespace: CPU", "s", "<= 0.5x"),
    ("s7_push_p99_s", "  one push: p99 change -> ACK", "s", ""),
    ("s7_churn_cpu_cores", "  light churn: average CPU", "cores", ""),
    ("s7_peak_rss_mb", "  peak RSS", "MB", ""),
    ("s8_fresh_router_s", "S8 fresh gateway proxy, 1000 VirtualServices", "s", ""),
    ("s8_fresh_router_cpu_s", "  CPU", "s", ""),
    ("s8_rss_mb", "  RSS, 1k services, one proxy", "MB", ""),
]


def _alternating(kinds: list[str], round_index: int) -> list[str]:
    shift = round_index % len(kinds)
    return kinds[shift:] + kinds[:shift]


def _run(runs: list[dict[str, Any]], group: str, kinds: list[str], rounds: int,
         scenario: Callable[[str, Figures], None], *, save: Callable[[], object]) -> None:
    for round_index in range(rounds):
        for kind in _alternating(kinds, round_index):
            started = time.monotonic()
            figures: Figures = {}
            try:
                scenario(kind, figures)
            except Exception as error:  # one failed run is reported, the others still run
                print(f"  {group} {kind} round {round_index + 1}: FAILED {error!r}",
                      flush=True)
            runs.append({"group": group, "plane": kind, "round": round_index + 1,
                         "seconds": round(time.monotonic() - started, 1),
                         "figures": figures})
            print(f"  {group} {kind} round {round_index + 1}: "
                  f"{json.dumps({k: round(v, 4) for k, v in figures.items()})}", flush=True)
            save()


def _with_api(workdir: Path, docs: list[dict[str, Any]], body: Callable[[Api], object]
              ) -> float:
    """A fresh API server holding `docs` for `body`; the seconds loading took."""
    api = Api(Path(tempfile.mkdtemp(prefix="api-", dir=workdir)))
    api.start()
    try:
        loaded = api.load(docs)
        body(api)
        return loaded
    finally:
        api.stop()


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """plane -> figure -> median over its runs."""
    samples: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for name, value in run["figures"].items():
            samples.setdefault(run["plane"], {}).setdefault(name, []).append(value)
    return {kind: {name: statistics.median(values) for name, values in figures.items()}
            for kind, figures in samples.items()}


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("s", "cores") and value < 10:
        return f"{value:.3f}"
    return f"{value:.1f}"


def table(report: dict[str, Any]) -> str:
    middle = report["medians"]
    header = (f"{'scenario':<56}{'istiod':>10}{'istiod':>10}{'pilotpy':>10}{'ratio':>8}"
              f"  target\n{'':<56}{'':>10}{'20/s cap':>10}{'':>10}{'':>8}")
    lines = [header]
    for name, label, unit, target in ROWS:
        theirs = middle.get(ISTIOD, {}).get(name)
        capped = middle.get(ISTIOD_CAPPED, {}).get(name)
        ours = middle.get(PILOTPY, {}).get(name)
        ratio = f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"
        lines.append(f"{label + f' ({unit})':<56}{_cell(theirs, unit):>10}"
                     f"{_cell(capped, unit):>10}{_cell(ours, unit):>10}{ratio:>8}  {target}")
    machine = report["machine"]
    lines.append(f"\n{report['date']}, {machine['cpus']} CPUs ({machine['cpu_model']}), "
                 f"{machine['platform']}; medians of {report['rounds']} alternating runs "
                 f"({report['heavy_rounds']} for S5, S6, S7); ratio = pilotpy / istiod "
                 "without the stream cap")
    return "\n".join(lines)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heavy-rounds", type=int, default=2,
                        help="rounds of the thousands-of-proxies groups (idle, storm, reference)")
    parser.add_argument("--quick", action="store_true",
                        help="one round, smaller fleets and shorter churn (a smoke run)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups of {GROUPS}")
    parser.add_argument("--keep", type=Path,
                        help="an earlier compare.json whose runs of the other groups are kept "
                             "(to rerun some groups only)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    heavy = 1 if args.quick else args.heavy_rounds
    sizes = Sizes.quick() if args.quick else Sizes()
    only = set(args.only.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-compare-"))
    runs: list[dict[str, Any]] = []
    if args.keep is not None:
        earlier = json.loads(args.keep.read_text(encoding="utf-8"))
        runs = [r for r in earlier["runs"] if r["group"] not in only]
    loaded: dict[str, float] = {}
    started = time.time()

    def save() -> dict[str, Any]:
        """The report of what ran so far (rewritten after every run: an interrupted
        comparison keeps its results)."""
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
            "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(),
                        "python": platform.python_version(), "platform": platform.platform()},
            "rounds": rounds, "heavy_rounds": heavy, "sizes": vars(sizes),
            "load_seconds": loaded, "seconds": round(time.time() - started, 1),
            "medians": medians(runs), "runs": runs,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n",
                                               encoding="utf-8")
        (args.out / "compare.txt").write_text(table(report) + "\n", encoding="utf-8")
        return report

    def group(name: str, kinds: list[str], times: int,
              scenario: Callable[[str, Figures], None]) -> None:
        if name in only:
            _run(runs, name, kinds, times, scenario, save=save)

    def gateway_groups(api: Api, docs: list[dict[str, Any]]) -> None:
        group("gateway", [ISTIOD, PILOTPY], rounds, lambda kind, out: gateway_mesh_scenarios(
            kind, api, docs, workdir, sizes, figures=out))
        group("churn", [ISTIOD, PILOTPY], rounds, lambda kind, out: endpoint_churn(
            kind, api, docs, workdir, sizes, figures=out))

    def fleet_groups(api: Api) -> None:
        group("idle", [ISTIOD, PILOTPY], heavy, lambda kind, out: idle_streams(
            kind, api, workdir, sizes, figures=out))
        group("storm", [ISTIOD, ISTIOD_CAPPED, PILOTPY], heavy, lambda kind, out: storm(
            kind, api, workdir, sizes, figures=out))

    try:
        if only & {"gateway", "churn"}:
            docs = gateway_mesh(1000)
            loaded["gateway_mesh_1k"] = _with_api(workdir, docs,
                                                  lambda api: gateway_groups(api, docs))
        if only & {"idle", "storm"}:
            # istiod holds megabytes per stream of a 1000-route gateway: thousands of them
            # get the gateway of the hand comparison, 200 routes.
            loaded["gateway_mesh_1k_200_routes"] = _with_api(
                workdir, gateway_mesh(1000, gateway_routes=200), fleet_groups)
        if "reference" in only:
            mesh = reference_mesh()
            loaded["reference_mesh"] = _with_api(workdir, mesh.docs, lambda api: group(
                "reference", [ISTIOD, ISTIOD_CAPPED, PILOTPY], heavy,
                lambda kind, out: reference(kind, api, mesh, workdir, sizes, figures=out)))
        if "generation-10k" in only:
            loaded["gateway_mesh_10k"] = _with_api(workdir, gateway_mesh(10000), lambda api: group(
                "generation-10k", [ISTIOD, PILOTPY], rounds,
                lambda kind, out: generation_10k(kind, api, workdir, sizes, figures=out)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report = save()
    print(table(report))
    print(f"\nreport: {args.out / 'compare.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
