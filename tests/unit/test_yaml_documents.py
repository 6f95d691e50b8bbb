"""The file source's YAML reader (pilotpy/sources/yaml_documents.py): what yaml.safe_load_all
gives for any document within the limits, and a clear refusal past them, without recursion."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotpy.sources.yaml_documents import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    LimitExceeded,
    load_documents,
)

# Nine levels of nine aliases each: 9**9 strings for whoever walks the result.
BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]"
       for previous, name in zip("abcdefgh", "bcdefghi", strict=True)])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False), st.text(max_size=12),
    st.dates(min_value=datetime.date(1900, 1, 1)),
    st.binary(max_size=8))
keys = st.one_of(st.text(max_size=8), st.integers(-100, 100), st.booleans())
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=30)


def pyyaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.booleans())
def test_documents_read_as_pyyaml_reads_them(documents: list[Any], flow: bool) -> None:
    text = yaml.safe_dump_all(documents, default_flow_style=flow)
    assert load_documents(text) == pyyaml(text)


@settings(max_examples=100, deadline=None)
@given(values)
def test_shared_values_read_through_aliases_as_pyyaml_reads_them(value: Any) -> None:
    # safe_dump writes an object met twice as an anchor and an alias.
    text = yaml.safe_dump({"first": [value], "again": [value], "list": [[value], [value]]})
    assert load_documents(text) == pyyaml(text)


@pytest.mark.parametrize("text", [
    "a: !!set {x, y}", "a: !!omap [{x: 1}, {y: 2}]", "a: !!pairs [{x: 1}, {x: 2}]",
    "a: !!binary aGk=", "a: 2001-12-14T21:59:43.10-05:00", "a: !!str 1", 'a: !!int "3"',
    "!!map {a: 1}", "a: !!float 1", "a: 017", "a: 1_000", "a: 1:30", "a: .inf", "a: ~",
    "a: yes", "---\n---\na: 1\n...\n", "", "# only a comment\n", "=: 1",
    "x: &m {a: 1, b: 2}\ny: &n {b: 3, c: 4}\nz: {<<: [*m, *n], d: 5}\nw: {<<: *m, a: 9}",
    'a: "x"\nb: \'y\'\nc: |\n  block\n  text\nd: >\n  folded\n',
])
def test_tags_merges_and_styles_read_as_pyyaml_reads_them(text: str) -> None:
    assert load_documents(text) == pyyaml(text)


@pytest.mark.parametrize("text", [
    "a: =", "? [1,2]\n: 3", "a: !foo x", "a: !!map x", "a: *nope", "k: {<<: 3}",
    "a: !!omap [1]", "a: [", "a: b: c",
])
def test_what_pyyaml_refuses_is_refused(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        pyyaml(text)
    with pytest.raises(yaml.YAMLError):
        load_documents(text)


def test_an_alias_bomb_is_refused_at_the_alias_that_passes_the_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        load_documents(BILLION_LAUGHS)
    assert caught.value.problem == f"aliases expand to more than {MAX_ALIAS_NODES} nodes"
    assert caught.value.problem_mark.line == 5  # `f: [*e, ...]`: 9**6 nodes


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="refers to a node that contains it"):
        load_documents("x: &r [1, *r]")


@pytest.mark.parametrize("style", ["block", "flow"])
def test_nesting_past_the_limit_names_the_line_and_path(style: str) -> None:
    levels = 1000
    if style == "block":
        body = "".join(f"{'  ' * (i + 2)}a:\n" for i in range(levels)) + "  " * (levels + 2) + "x"
    else:
        body = "    " + "{a: " * levels + "x" + "}" * levels
    text = f"kind: AuthorizationPolicy\nspec:\n  rules:\n{body}\n"
    with pytest.raises(LimitExceeded) as caught:
        load_documents(text)
    assert caught.value.problem.startswith(f"nested more than {MAX_DEPTH} levels deep (at "
                                           "spec.rules.a.a.a")
    # 0-based: the mapping at depth 101 starts on the line of its first key.
    assert caught.value.problem_mark.line == (MAX_DEPTH + 1 if style == "block" else 3)


def test_brackets_nested_beyond_what_libyaml_parses_quickly_are_refused_unparsed() -> None:
    """libyaml takes minutes on 100,000 nested brackets and overflows the stack on more."""
    with pytest.raises(LimitExceeded, match="brackets nested more than 1000 deep"):
        load_documents("a: " + "[" * 1_000_000 + "]" * 1_000_000)


def test_aliases_within_the_limit_are_read() -> None:
    text = "base: &b {x: 1, y: [1, 2, 3]}\n" + "".join(f"k{i}: *b\n" for i in range(100))
    assert load_documents(text) == pyyaml(text)
