"""docs/fields.md, the Istio field list, is the parsers' own: it cannot claim a field no code
reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pilotpy.cli.fields import (
    documented,
    generated_section,
    rejected,
    supported_lines,
    unsupported,
)
from pilotpy.model.fields import Fields
from pilotpy.model.support import field_support

FIELDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "fields.md"


def _kind_blocks() -> dict[str, str]:
    section = generated_section(FIELDS_DOC.read_text())
    parts = re.split(r"^## (\w+)$", section, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_fields_doc_lists_every_documented_kind() -> None:
    assert sorted(_kind_blocks()) == sorted(documented())


def test_fields_doc_supported_fields_are_the_fields_the_parsers_read() -> None:
    blocks = _kind_blocks()
    for kind, (support, top) in documented().items():
        listed = [line for line in blocks[kind].splitlines() if line.startswith("- `")]
        assert listed == supported_lines(support, top), (
            f"docs/fields.md's {kind} fields are stale: run `make fields-doc`")


def test_fields_doc_lists_declined_and_rejected_fields() -> None:
    blocks = _kind_blocks()
    for kind, (support, _) in documented().items():
        for path in unsupported(support, ()):
            assert f"`{path}`" in blocks[kind].split("Not supported", 1)[1], (kind, path)
        for path in rejected(support):
            assert f"`{path}`" in blocks[kind].split("Rejected", 1)[1], (kind, path)


def _parser(f: Fields) -> None:
    f.string("name")
    for item in f.children("items"):
        item.integer("port")
        item.unsupported("legacy")
        item.done(ignore=("tolerated",))
    f.reject("dangerous", "not allowed")
    f.raw("opaque")


def test_support_recorder_separates_read_declined_and_rejected_fields() -> None:
    support = field_support(_parser)
    assert support.supported == ["items", "items.port", "name", "opaque"]
    assert support.declined == {"items.legacy", "items.tolerated"}
    assert support.rejected == {"dangerous"}
    # A field read whole covers whatever Istio nests below it; a declined one never counts.
    assert support.covers("opaque.anything")
    assert not support.covers("items.legacy")
    assert unsupported(support, ["name", "items.port", "items.other", "items.legacy.x",
                                 "dangerous.inner"]) == [
        "items.legacy", "items.other", "items.tolerated"]


def test_objects_read_alike_are_listed_once() -> None:
    def parser(f: Fields) -> None:
        for key in ("base", "override"):
            p = f.child(key)
            assert p is not None
            p.integer("a")
            p.integer("b")
            p.integer("c")
            p.unsupported("d")

    support = field_support(parser)
    assert supported_lines(support, "(spec)") == [
        "- `(spec)`: base, override", "- `base`: a, b, c", "- `override`: as `base`"]
    assert unsupported(support, ["base.d", "override.d"]) == ["base.d"]


def test_fields_command_rewrites_only_the_generated_section(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pilotpy.cli.fields import markdown
    from pilotpy.cli.main import main

    doc = tmp_path / "fields.md"
    doc.write_text("# title\n\n" + generated_section(FIELDS_DOC.read_text()) + "\n\ntail\n")
    assert main(["fields", "--doc", str(doc)]) == 0
    assert doc.read_text() == "# title\n\n" + markdown(None) + "\n\ntail\n"
    # --readme, the flag's old name, still works.
    doc.write_text("# title\n\n" + generated_section(FIELDS_DOC.read_text()) + "\n\ntail\n")
    assert main(["fields", "--readme", str(doc)]) == 0
    assert doc.read_text() == "# title\n\n" + markdown(None) + "\n\ntail\n"
    assert main(["fields"]) == 0
    assert capsys.readouterr().out == markdown(None) + "\n"
