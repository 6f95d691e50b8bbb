"""Hostname rules, checked against istio's `host.Name` / `host.Names` documented cases
(pkg/config/host/name_test.go, names_test.go) and the resolution rules of pilot's config
model (ResolveShortnameToFQDN, gateway name resolution)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotpy.model import hosts

# -- Name.Matches ------------------------------------------------------------------------------

MATCHES = [
    # (a, b, expected) from istio's TestNameMatches
    ("foo.com", "foo.com", True),
    ("bar.com", "foo.com", False),
    ("bar.foo.com", "foo.com", False),
    ("foo.com", "bar.foo.com", False),
    ("*.com", "foo.com", True),
    ("*.foo.com", "bar.foo.com", True),
    ("*", "foo.com", True),
    ("*", "*.com", True),
    ("*", "com", True),
    ("*", "*", True),
    ("*.com", "*.foo.com", True),
    ("foo.com", "*.foo.com", False),
    ("*.foo.com", "foo.com", False),
    ("*.foo.bar.baz", "baz", False),
    ("*.foo.bar.baz", "*.baz", True),
    ("foo.bar.baz", "*.baz", True),
    ("a.facebook.com", "*.facebook.COM", False),  # case-sensitive, like istio
    ("", "foo.com", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), MATCHES)
def test_matches_follows_istio_name_matches(a: str, b: str, expected: bool) -> None:
    assert hosts.matches(a, b) is expected


@pytest.mark.parametrize(("a", "b", "expected"), MATCHES)
def test_matches_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert hosts.matches(b, a) is expected


# -- Name.SubsetOf -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "other", "expected"),
    [
        ("foo.com", "foo.com", True),
        ("bar.com", "foo.com", False),
        ("bar.foo.com", "foo.com", False),
        ("foo.com", "*.com", True),
        ("bar.foo.com", "*.foo.com", True),
        ("foo.com", "*", True),
        ("*.com", "*", True),
        ("*", "*", True),
        # a wildcard is never covered by a plain name, nor by a narrower wildcard
        ("*.com", "foo.com", False),
        ("*", "foo.com", False),
        ("*", "*.com", False),
        ("*.com", "*.foo.com", False),
        ("*.foo.com", "*.com", True),
        ("*.foo.com", "foo.com", False),
        ("foo.com", "*.foo.com", False),
    ],
)
def test_subset_of_is_one_directional(host: str, other: str, expected: bool) -> None:
    assert hosts.subset_of(host, other) is expected


# -- Names.Intersection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (["foo.com"], ["bar.com"], []),
        (["foo.com", "bar.com"], ["bar.com"], ["bar.com"]),
        (["foo.com", "bar.com"], ["*.com"], ["foo.com", "bar.com"]),
        (["*.com"], ["foo.com", "bar.com"], ["foo.com", "bar.com"]),
        (["foo.com", "*.net"], ["*.com", "bar.net"], ["foo.com", "bar.net"]),
        (["foo.com", "*.net"], ["*.bar.net"], ["*.bar.net"]),
        (["foo.com", "bar.net"], ["*"], ["foo.com", "bar.net"]),
        (["foo.com"], [], []),
        ([], ["bar.com"], []),
        (["*", "foo.com"], ["foo.com"], ["foo.com"]),
        (["*"], ["foo.com"], ["foo.com"]),
        (["foo.com"], ["Foo.com"], []),
    ],
)
def test_intersection_follows_istio_names_intersection(
    left: list[str], right: list[str], expected: list[str]
) -> None:
    assert hosts.intersection(left, right) == expected


def test_intersection_keeps_the_more_specific_name_of_each_pair() -> None:
    # A Gateway server host `*.example.com` and a VirtualService host `a.example.com`
    # meet at `a.example.com`, whichever side is which.
    assert hosts.intersection(["*.example.com"], ["a.example.com"]) == ["a.example.com"]
    assert hosts.intersection(["a.example.com"], ["*.example.com"]) == ["a.example.com"]


def test_intersection_does_not_repeat_names() -> None:
    assert hosts.intersection(["a.example.com", "*.example.com"], ["*", "a.example.com"]) == [
        "a.example.com", "*.example.com"]


_LABEL = st.sampled_from(["a", "b", "foo", "bar", "example", "com"])
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_HOST = st.one_of(
    _NAME,
    _NAME.map(lambda n: f"*.{n}"),
    st.just("*"),
)


@given(st.lists(_HOST, max_size=4), st.lists(_HOST, max_size=4))
def test_intersection_has_the_same_members_either_way(left: list[str], right: list[str]) -> None:
    assert set(hosts.intersection(left, right)) == set(hosts.intersection(right, left))


@given(st.lists(_HOST, max_size=4), st.lists(_HOST, max_size=4))
def test_every_intersection_member_is_covered_by_both_sides(
    left: list[str], right: list[str]
) -> None:
    for name in hosts.intersection(left, right):
        assert any(hosts.subset_of(name, a) for a in left)
        assert any(hosts.subset_of(name, b) for b in right)


@given(_HOST, _HOST)
def test_matches_means_one_side_covers_the_other(a: str, b: str) -> None:
    assert hosts.matches(a, b) == (hosts.subset_of(a, b) or hosts.subset_of(b, a))
    assert hosts.matches(a, b) == hosts.matches(b, a)


@given(_HOST, _HOST, _HOST)
def test_subset_of_is_transitive(a: str, b: str, c: str) -> None:
    if hosts.subset_of(a, b) and hosts.subset_of(b, c):
        assert hosts.subset_of(a, c)


@given(_HOST)
def test_every_host_is_covered_by_star_and_by_itself(host: str) -> None:
    assert hosts.subset_of(host, "*")
    assert hosts.subset_of(host, host)


# -- NamesForNamespace -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_hosts", "namespace", "expected"),
    [
        # istio's documented NamesForNamespace examples
        (["ns1/foo.com", "ns2/bar.com"], "ns1", ["foo.com"]),
        (["ns1/foo.com", "ns2/bar.com"], "ns3", []),
        (["ns1/foo.com", "*/bar.com"], "ns1", ["foo.com", "bar.com"]),
        (["ns1/foo.com", "*/bar.com"], "ns3", ["bar.com"]),
        (["foo.com", "ns2/bar.com"], "ns2", ["foo.com", "bar.com"]),
        (["foo.com", "ns2/bar.com"], "ns3", ["foo.com"]),
    ],
)
def test_names_for_namespace_filters_by_namespace_prefix(
    server_hosts: list[str], namespace: str, expected: list[str]
) -> None:
    assert hosts.names_for_namespace(server_hosts, namespace) == expected


def test_names_for_namespace_leaves_dot_slash_to_the_caller() -> None:
    # `./host` means "the Gateway's own namespace"; only the caller knows it, so the raw
    # `.` is compared like any namespace name.
    assert hosts.names_for_namespace(["./foo.com"], "default") == []
    assert hosts.names_for_namespace(["./foo.com"], ".") == ["foo.com"]


# -- short names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "namespace", "suffix", "expected"),
    [
        ("reviews", "default", "cluster.local", "reviews.default.svc.cluster.local"),
        ("reviews", "bookinfo", "cluster.local", "reviews.bookinfo.svc.cluster.local"),
        # a name with a dot is taken as already qualified
        ("reviews.default", "other", "cluster.local", "reviews.default"),
        ("httpbin.org", "default", "cluster.local", "httpbin.org"),
        ("reviews.default.svc.cluster.local", "x", "cluster.local",
         "reviews.default.svc.cluster.local"),
        ("*.example.com", "default", "cluster.local", "*.example.com"),
        ("*", "default", "cluster.local", "*"),
        ("10.0.0.1", "default", "cluster.local", "10.0.0.1"),
        ("::1", "default", "cluster.local", "::1"),
        # simulation tests run with an empty suffix: `productpage.default`
        ("productpage", "default", "", "productpage.default"),
    ],
)
def test_resolve_short_name(host: str, namespace: str, suffix: str, expected: str) -> None:
    assert hosts.resolve_short_name(host, namespace, suffix) == expected


# -- gateway names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("httpbin-gateway", "default", "default/httpbin-gateway"),
        ("./httpbin-gateway", "test-ns", "test-ns/httpbin-gateway"),
        ("istio-system/ingress", "default", "istio-system/ingress"),
        # the legacy FQDN form names the gateway's namespace in its second label
        ("ingress.istio-system.svc.cluster.local", "default", "istio-system/ingress"),
        ("mesh", "default", "mesh"),
    ],
)
def test_resolve_gateway_name(name: str, namespace: str, expected: str) -> None:
    assert hosts.resolve_gateway_name(name, namespace) == expected


# -- hostname syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["httpbin.org", "a.b-c.example.com", "*.example.com", "istio.io.",
                                  "10.1.2.3", "fd00::1", "reviews"])
def test_valid_hostnames(host: str) -> None:
    assert hosts.validate_hostname(host, allow_wildcard=True) is None


@pytest.mark.parametrize("host", ["", "bad_host.com", "a..b", "-a.com", "a.123",
                                  "foo.*.com", "a" * 64 + ".com"])
def test_invalid_hostnames(host: str) -> None:
    assert hosts.validate_hostname(host, allow_wildcard=True) is not None


def test_wildcards_are_rejected_where_not_allowed() -> None:
    assert hosts.validate_hostname("*.example.com", allow_wildcard=False) is not None


@pytest.mark.parametrize("value", [
    "10.96.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
    "1.2.3.4\n", " 1.2.3.4", "1.2.3.04", "1.2.3.٤", "httpbin", "10.96.0.1.nip.io", "", "::",
    "::1", "fe80::1", "2001:db8::1", "2001:db8::g", "::ffff:1.2.3.4", "1:2", "a.b.c.d",
])
def test_is_ip_agrees_with_ipaddress(value: str) -> None:
    try:
        ipaddress.ip_address(value)
        expected = True
    except ValueError:
        expected = False
    assert hosts.is_ip(value) is expected


@given(st.lists(st.text("0123456789", min_size=0, max_size=4), min_size=1, max_size=5))
def test_is_ip_agrees_with_ipaddress_on_dotted_numbers(parts: list[str]) -> None:
    value = ".".join(parts)
    try:
        ipaddress.ip_address(value)
        expected = True
    except ValueError:
        expected = False
    assert hosts.is_ip(value) is expected
