"""Upstream TLS contexts from DestinationRule `tls` (istiod's constructUpstreamTLS), with
certificate files as inline `filename` data sources."""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.destinationrule import ClientTLS
from pilotpy.translate.cluster_tls import SYSTEM_CA_BUNDLE, upstream_tls, upstream_tls_context


def _context(tls: ClientTLS, **kwargs: object) -> tls_pb2.UpstreamTlsContext:
    found = upstream_tls(tls, http2=bool(kwargs.get("http2")))
    assert found is not None
    context = tls_pb2.UpstreamTlsContext()
    assert found.transport_socket.typed_config.Unpack(context)
    return context


def test_simple_without_ca_trusts_the_system_bundle_and_follows_the_host() -> None:
    found = upstream_tls(ClientTLS(mode="SIMPLE"), http2=False)
    assert found is not None
    assert (found.auto_sni, found.auto_san_validation) == (True, True)
    context = _context(ClientTLS(mode="SIMPLE"))
    assert context.common_tls_context.validation_context.trusted_ca.filename == SYSTEM_CA_BUNDLE
    assert context.sni == ""
    assert not context.common_tls_context.tls_certificates


def test_explicit_sni_turns_auto_sni_off() -> None:
    found = upstream_tls(ClientTLS(mode="SIMPLE", sni="api.example"), http2=False)
    assert found is not None
    assert (found.auto_sni, found.auto_san_validation) == (False, False)


def test_explicit_sans_keep_auto_sni_but_not_auto_san_validation() -> None:
    found = upstream_tls(ClientTLS(mode="SIMPLE", subject_alt_names=("a.example",)),
                         http2=False)
    assert found is not None
    assert (found.auto_sni, found.auto_san_validation) == (True, False)


def test_mutual_reads_client_certificate_files() -> None:
    context = _context(ClientTLS(mode="MUTUAL", client_certificate="/c.pem",
                                 private_key="/k.pem", ca_certificates="/ca.pem",
                                 ca_crl="/ca.crl"))
    (certificate,) = context.common_tls_context.tls_certificates
    assert (certificate.certificate_chain.filename, certificate.private_key.filename) == (
        "/c.pem", "/k.pem")
    validation = context.common_tls_context.validation_context
    assert (validation.trusted_ca.filename, validation.crl.filename) == ("/ca.pem", "/ca.crl")


def test_sans_match_every_san_type_like_envoys_untyped_matcher() -> None:
    context = upstream_tls_context(ClientTLS(mode="SIMPLE", subject_alt_names=("x.example",)),
                                   http2=False)
    matchers = context.common_tls_context.validation_context.match_typed_subject_alt_names
    assert [(m.san_type, m.matcher.exact) for m in matchers] == [
        (common_pb2.SubjectAltNameMatcher.DNS, "x.example"),
        (common_pb2.SubjectAltNameMatcher.URI, "x.example"),
        (common_pb2.SubjectAltNameMatcher.EMAIL, "x.example"),
        (common_pb2.SubjectAltNameMatcher.IP_ADDRESS, "x.example")]


def test_service_entry_sans_stand_in_for_the_rules() -> None:
    context = upstream_tls_context(ClientTLS(mode="SIMPLE"), http2=False,
                                   service_sans=("se.example",))
    matchers = context.common_tls_context.validation_context.match_typed_subject_alt_names
    assert {m.matcher.exact for m in matchers} == {"se.example"}


def test_insecure_skip_verify_leaves_an_empty_validation_context() -> None:
    found = upstream_tls(ClientTLS(mode="SIMPLE", insecure_skip_verify=True), http2=False)
    assert found is not None
    assert not found.auto_san_validation
    context = _context(ClientTLS(mode="SIMPLE", insecure_skip_verify=True))
    assert context.common_tls_context.HasField("validation_context")
    empty = common_pb2.CertificateValidationContext()
    assert context.common_tls_context.validation_context == empty


def test_h2_clusters_offer_h2_by_alpn() -> None:
    assert list(_context(ClientTLS(mode="SIMPLE"), http2=True)
                .common_tls_context.alpn_protocols) == ["h2"]
    assert not _context(ClientTLS(mode="SIMPLE")).common_tls_context.alpn_protocols


def test_untranslated_modes_stay_plaintext() -> None:
    for tls in (None, ClientTLS(mode="DISABLE"), ClientTLS(mode="ISTIO_MUTUAL"),
                ClientTLS(mode="SIMPLE", credential_name="egress-credential")):
        assert upstream_tls(tls, http2=False) is None


def test_mesh_tls_defaults_set_curves_and_cipher_suites() -> None:
    mesh = MeshConfig(tls_ecdh_curves=("P-256",),
                      tls_cipher_suites=("ECDHE-ECDSA-AES256-GCM-SHA384",))
    params = upstream_tls_context(ClientTLS(mode="SIMPLE"), http2=False,
                                  mesh=mesh).common_tls_context.tls_params
    assert (list(params.ecdh_curves), list(params.cipher_suites)) == (
        ["P-256"], ["ECDHE-ECDSA-AES256-GCM-SHA384"])
