"""Messages written from pre-serialized parts (translate/pb.entry, which is
protowire.field_bytes, the encoder the xDS layer joins responses with too) are byte-identical
to protobuf's own deterministic serialization of the same message."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from pilotpy.translate import pb


def _route(name: str, body_bytes: int) -> rc.Route:
    route = rc.Route(name=name, match=rc.RouteMatch(prefix="/" + name))
    route.route.cluster = "outbound|80||" + name + ".default.svc.cluster.local"
    route.route.timeout.CopyFrom(pb.seconds(0))
    # A map (written in key order only when deterministic) and a long field (a multi-byte
    # length varint).
    route.metadata.filter_metadata["z"].fields["k"].string_value = "x" * body_bytes
    route.metadata.filter_metadata["a"].fields["k"].string_value = "y"
    return route


def test_entries_concatenate_to_the_whole_message() -> None:
    routes = [_route("one", 10), _route("two", 300), _route("three", 20000)]
    vhost = rc.VirtualHost(name="vh", domains=["a", "a:80"], routes=routes,
                           include_request_attempt_count=True)
    whole = route_pb2.RouteConfiguration(name="80", virtual_hosts=[vhost, vhost],
                                         validate_clusters=pb.boolean(False))

    route_bytes = b"".join(pb.entry(rc.VirtualHost.ROUTES_FIELD_NUMBER,
                                    r.SerializeToString(deterministic=True)) for r in routes)
    vhost_bytes = (rc.VirtualHost(name="vh", domains=["a", "a:80"]).SerializeToString()
                   + route_bytes
                   + rc.VirtualHost(include_request_attempt_count=True).SerializeToString())
    entry = pb.entry(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER, vhost_bytes)
    assembled = (route_pb2.RouteConfiguration(name="80").SerializeToString() + entry + entry
                 + route_pb2.RouteConfiguration(validate_clusters=pb.boolean(False))
                 .SerializeToString(deterministic=True))

    assert assembled == whole.SerializeToString(deterministic=True)
    assert route_pb2.RouteConfiguration.FromString(assembled) == whole


def test_entry_lengths_across_varint_boundaries() -> None:
    for size in (1, 127, 128, 16383, 16384, 2**21):
        payload = b"x" * size
        assert pb.entry(1, payload) == wrappers_pb2.BytesValue(value=payload).SerializeToString()


def test_an_entry_written_as_parts_joins_to_the_entry() -> None:
    head = rc.VirtualHost(name="vh", domains=["a"]).SerializeToString()
    parts = [_route("one", 10).SerializeToString(deterministic=True), b"",
             _route("two", 20000).SerializeToString(deterministic=True)]
    written = pb.entry_parts(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER, head,
                             parts)
    assert b"".join(written) == pb.entry(
        route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER, head + b"".join(parts))
    assert written[1] is parts[0] and written[2] is parts[2]  # shared, not copied
