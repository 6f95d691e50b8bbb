"""The docs hold together: every relative link in README.md, docs/ and manifests/README.md
points at a file that exists (and at a heading of it, when it names one), every pointer from
code into docs/ names a heading that exists, and nothing points outside the repository."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "manifests" / "README.md",
               *(ROOT / "docs").glob("*.md")])
CODE_DIRS = ("pilotpy", "tests", "bench")
README_LIMIT_BYTES = 10_000

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)
_DOC_POINTER = re.compile(r"\b(docs/[\w-]+\.md)(?:#([\w-]+))?")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*?|_(?=\w)|(?<=\w)_", "", heading)  # inline markup
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets `-1`, `-2`, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def links(path: Path) -> list[str]:
    text = _CODE_SPAN.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    return _LINK.findall(text)


def test_slugs_follow_github() -> None:
    assert slug("xDS protocol rules") == "xds-protocol-rules"
    assert slug("The mesh harness (`tests/mesh`)") == "the-mesh-harness-testsmesh"
    assert slug("Differences from istiod") == "differences-from-istiod"
    assert slug("Run on kind") == "run-on-kind"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, broken


def _code_files() -> list[Path]:
    """Source, comments and fixtures that may point into docs/ (golden data excluded)."""
    return sorted(path for directory in CODE_DIRS for path in (ROOT / directory).rglob("*")
                  if path.suffix in (".py", ".txt", ".md", ".yaml") and path.is_file()
                  and "__pycache__" not in path.parts and "testdata" not in path.parts
                  and "out" not in path.relative_to(ROOT).parts[:2])


def test_code_pointers_into_docs_resolve() -> None:
    broken = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for doc, anchor in _DOC_POINTER.findall(text):
            target = ROOT / doc
            if not target.exists():
                broken.append(f"{path.relative_to(ROOT)}: {doc} does not exist")
            elif anchor and anchor not in anchors(target):
                broken.append(f"{path.relative_to(ROOT)}: no heading #{anchor} in {doc}")
    assert not broken, broken


def test_nothing_points_outside_the_repository() -> None:
    # Design rules the code relies on live in docs/architecture.md, not in a file next to the
    # clone that a reader of the repository does not have.
    pattern = re.compile(r"DESIGN\.md|ISTIOD_REFERENCE\.md|BENCHMARKS\.md|SCENARIOS\.md"
                         r"|\.\./shared\b")
    found = []
    for path in [*_code_files(), *DOCS]:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not found, found


def test_readme_stays_short() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT_BYTES, (
        f"README.md is {size} bytes; move detail into docs/ and link it")
