"""The tier's report: every difference of every case, per resource and field, with the
accepted entry that explains it (or UNEXPLAINED), written as JSON and text; and each case's
normalised resources from both sides, to read a difference in context.

Written to $PILOTPY_DIFF_OUT, else tests/diff/out/ (not checked in)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.diff.accepted import Entry
from tests.diff.compare import Difference
from tests.diff.harness import CaseResult

UNEXPLAINED = "UNEXPLAINED"


def out_dir() -> Path:
    configured = os.environ.get("PILOTPY_DIFF_OUT")
    return Path(configured) if configured else Path(__file__).with_name("out")


@dataclass
class Report:
    directory: Path = field(default_factory=out_dir)
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: CaseResult, explained: list[tuple[Difference, Entry | None]]) -> None:
        safe = result.case.name.replace("/", "_")
        for label, (theirs, ours) in result.resources.items():
            base = self.directory / "resources" / safe
            base.mkdir(parents=True, exist_ok=True)
            name = label.replace(" ", "_")
            (base / f"{name}.istiod.json").write_text(json.dumps(theirs, indent=1,
                                                                 sort_keys=True))
            (base / f"{name}.pilotpy.json").write_text(json.dumps(ours, indent=1,
                                                                  sort_keys=True))
        self.cases.append({
            "case": result.case.name,
            "proxies": result.proxies,
            "refused_by_api_server": result.refused,
            "unreadable_files": result.unreadable,
            "differences": [{**d.as_json(), "accepted": e.id if e else UNEXPLAINED}
                            for d, e in explained],
        })
        self.write()

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "report.json").write_text(
            json.dumps({"cases": self.cases}, indent=1) + "\n", encoding="utf-8")
        (self.directory / "report.txt").write_text(self.text(), encoding="utf-8")

    def text(self) -> str:
        lines: list[str] = []
        by_entry: Counter[str] = Counter()
        for case in self.cases:
            differences = case["differences"]
            lines.append(f"== {case['case']} ({', '.join(case['proxies'])}): "
                         f"{len(differences)} differences")
            for refused in case["refused_by_api_server"]:
                lines.append(f"   refused by the API server: {refused}")
            for d in differences:
                by_entry[d["accepted"]] += 1
                where = f"{d['type']} {d['resource']}" + (f" {d['path']}" if d["path"] else "")
                lines.append(f"   [{d['accepted']}] {d['proxy']}: {where}: "
                             f"istiod {_short(d['istiod'])}; pilotpy {_short(d['pilotpy'])}")
        lines.append("== by accepted entry")
        lines += [f"   {count:6d} {entry}" for entry, count in by_entry.most_common()]
        return "\n".join(lines) + "\n"


def _short(value: Any, limit: int = 200) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"
