"""`make bench`: the benchmark scenarios implemented so far (S1, S5, S12, S13;
docs/benchmarks.md).

Each S1 run is a fresh process pinned to one CPU; medians are reported. S5 runs the server and
the fake proxies in separate processes pinned to different CPUs. S13 runs a real Envoy against
a fresh server per attack, the attacker pinned away from the server. Writes
`<out>/report.json` and prints a table with the targets next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
S1_TARGET_SECONDS = {1000: 0.150, 10000: 1.5}
S1_TARGET_RSS_MB = 100
S5_TARGET_KB = 100
# S13: under every attack, propagation p99 and server RSS within these multiples of idle.
S13_PROPAGATION_RATIO = 2.0
S13_RSS_RATIO = 1.5
S12_TARGET_PER_CPU_SECOND = 500
S12_TARGET_P99_MS = 50
S12_PUSH_SLOWDOWN = 1.10  # push p99 under CSR load within 10% of the idle run


def taskset(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 else []


def run_json(command: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def s1(services: int, runs: int, proxy: str = "gateway") -> dict[str, Any]:
    samples = [run_json([*taskset(0), sys.executable, str(HERE / "s1.py"), "--services",
                         str(services), "--proxy", proxy], timeout=600) for _ in range(runs)]
    keys = [k for k, v in samples[0].items() if isinstance(v, float)]
    medians = {k: statistics.median(s[k] for s in samples) for k in keys}
    return {"scenario": "S1", "proxy": proxy, "services": services, "runs": runs,
            "median": medians,
            "resources": samples[0]["resources"], "bytes": samples[0]["bytes"],
            "samples": samples}


def s5(steps: str, mode: str) -> dict[str, Any]:
    return run_json([sys.executable, str(HERE / "s5.py"), "--steps", steps, "--mode", mode],
                    timeout=900)


def s13(samples: int) -> dict[str, Any]:
    return run_json([sys.executable, str(HERE / "s13.py"), "--samples", str(samples)],
                    timeout=1200)


def _s13_rows(entry: dict[str, Any]) -> list[str]:
    idle = entry.get("idle") or {}
    base_time, base_rss = idle.get("propagation_p99"), idle.get("rss_peak_mb")
    lines = []
    for result in entry["attacks"]:
        name = result["attack"]
        if "error" in result:
            lines.append(_row(f"S13 {name}", "run failed", "-", "", result["error"][:60]))
            continue
        p99, rss = result["propagation_p99"], result["rss_peak_mb"]
        if name == "idle" or not base_time or not base_rss or p99 is None:
            lines.append(_row(f"S13 {name}", "propagation p99", f"{p99} s"))
            lines.append(_row("", "server RSS peak", f"{rss:.0f} MB"))
            continue
        time_target = S13_PROPAGATION_RATIO * base_time
        rss_target = S13_RSS_RATIO * base_rss
        lines.append(_row(f"S13 {name}", "propagation p99", f"{p99:.3f} s",
                          f"<= {time_target:.3f} s", "met" if p99 <= time_target else "MISSED"))
        lines.append(_row("", "server RSS peak", f"{rss:.0f} MB", f"<= {rss_target:.0f} MB",
                          "met" if rss <= rss_target else "MISSED"))
    return lines


def s12() -> dict[str, Any]:
    return run_json([sys.executable, str(HERE / "s12.py")], timeout=900)


def _row(scenario: str, figure: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"{scenario:<22}{figure:<34}{value:>12}  {target:<10}{verdict}"


def table(report: dict[str, Any]) -> str:
    lines = [_row("scenario", "figure", "result", "target")]
    for entry in report.get("s1", []):
        n, m = entry["services"], entry["median"]
        target = S1_TARGET_SECONDS[n]
        cpu = m["translate_cpu_s"]
        lines.append(_row(f"S1 {n} {entry['proxy']}", "translate to bytes, CPU", f"{cpu:.3f} s",
                          f"<= {target} s", "met" if cpu <= target else "MISSED"))
        lines.append(_row("", "push context build, CPU", f"{m['push_context_cpu_s']:.3f} s"))
        lines.append(_row("", "parse input, CPU", f"{m['parse_cpu_s']:.3f} s"))
        translation_rss = m["rss_growth_push_context_mb"] + m["rss_growth_translate_mb"]
        verdict = "met" if translation_rss <= S1_TARGET_RSS_MB else "MISSED"
        if n == 10000:
            lines.append(_row("", "RSS growth, translation", f"{translation_rss:.1f} MB",
                              f"<= {S1_TARGET_RSS_MB} MB", verdict))
            lines.append(_row("", "RSS growth, with input", f"{m['rss_growth_mb']:.1f} MB"))
        lines.append(_row("", "bytes", str(entry["bytes"])))
    for entry in report.get("s5", []):
        kb = entry["rss_kb_per_proxy"]
        most = max(map(int, entry["rss_mb_by_connected_proxies"]))
        lines.append(_row(f"S5 {entry['mode']} {most} proxies", "RSS per proxy", f"{kb:.1f} kB",
                          f"<= {S5_TARGET_KB} kB", "met" if kb <= S5_TARGET_KB else "MISSED"))
        lines.append(f"{'':22}RSS (MB) by connected proxies: "
                     f"{entry['rss_mb_by_connected_proxies']}")
    for entry in report.get("s12", []):
        capacity, at_rate = entry["capacity"], entry["at_rate"]
        per_cpu = capacity["signatures_per_cpu_second"]
        lines.append(_row("S12 CA, 50 clients", "signatures per CPU-second", f"{per_cpu:.0f}",
                          f">= {S12_TARGET_PER_CPU_SECOND}",
                          "met" if per_cpu >= S12_TARGET_PER_CPU_SECOND else "MISSED"))
        lines.append(_row("", "signatures per second (wall)",
                          f"{capacity['signatures_per_second']:.0f}"))
        p99 = at_rate["latency_ms"]["p99"]
        lines.append(_row("", f"CSR p99 at {at_rate['rate']:.0f}/s", f"{p99:.1f} ms",
                          f"<= {S12_TARGET_P99_MS} ms",
                          "met" if p99 <= S12_TARGET_P99_MS else "MISSED"))
        idle, loaded = entry["push_latency_ms_idle"]["p99"], entry["push_latency_ms_at_rate"]["p99"]
        lines.append(_row("", "push p99 idle / under CSRs", f"{idle:.0f}/{loaded:.0f} ms",
                          "<= +10%",
                          "met" if loaded <= idle * S12_PUSH_SLOWDOWN else "MISSED"))
    for entry in report.get("s13", []):
        lines += _s13_rows(entry)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--quick", action="store_true", help="fewer runs and proxies")
    parser.add_argument("--only", default="s1,s5,s12,s13",
                        help="scenarios to run, comma-separated (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    if "s1" in only:
        report["s1"] = [s1(n, runs, proxy) for proxy in ("gateway", "sidecar")
                        for n, runs in ((1000, 3 if args.quick else 5),
                                        (10000, 1 if args.quick else 3))]
    if "s5" in only:
        report["s5"] = [s5("1000" if args.quick else "1000,2000,5000", "sotw"),
                        s5("1000" if args.quick else "1000,2000", "delta")]
    if "s12" in only:
        report["s12"] = [s12()]
    if "s13" in only:
        report["s13"] = [s13(4 if args.quick else 8)]
    report["seconds"] = round(time.time() - started, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = table(report)
    (args.out / "report.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nreport: {args.out / 'report.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
