"""Ingress and IngressClass (networking.k8s.io/v1), validated like the API server does
(pkg/apis/networking/validation) so a file-sourced object fails where `kubectl apply` would."""

from __future__ import annotations

from dataclasses import dataclass

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta, is_dns1123_label, is_dns1123_subdomain

# istiod marks the VirtualServices it derives from Ingresses; their prefix matches become
# path-separated prefixes (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`).
ROUTE_SEMANTICS_ANNOTATION = "internal.istio.io/route-semantics"
INGRESS_ROUTE_SEMANTICS = "ingress"
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
# Path parts the API server refuses for Exact and Prefix paths.
_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")


def uses_ingress_semantics(meta: Meta) -> bool:
    return meta.annotations.get(ROUTE_SEMANTICS_ANNOTATION) == INGRESS_ROUTE_SEMANTICS


@dataclass(frozen=True, slots=True)
class IngressBackend:
    """A Service backend: port by number or by name. `service` is empty for a `resource`
    backend, which istiod (and so pilotpy) does not route to."""

    service: str = ""
    port_number: int = 0
    port_name: str = ""


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str  # one of PATH_TYPES, or "" when unset (older objects, files)
    backend: IngressBackend


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str  # "" means every host
    # None when the rule has no `http` (istiod skips such rules).
    paths: tuple[IngressPath, ...] | None


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret_name: str


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: Meta
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    tls: tuple[IngressTLS, ...] = ()
    rules: tuple[IngressRule, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: Meta
    controller: str


def _validate_host(f: Fields, key: str, host: str) -> None:
    name = host[2:] if host.startswith("*.") else host
    if "*" in name or not is_dns1123_subdomain(name):
        f.error(f"{host!r} is not a DNS-1123 subdomain, optionally with a leading '*.' "
                "wildcard label", key)
    elif hosts.is_ip(name):
        f.error(f"{host!r}: an IP address is not allowed as a host", key)


def _parse_backend(f: Fields) -> IngressBackend:
    service = f.child("service")
    has_resource = f.raw("resource") is not None
    if service is None:
        if not has_resource:
            f.error("one of service or resource is required")
        return IngressBackend()
    if has_resource:
        f.error("service and resource are mutually exclusive", "resource")
    name = service.string("name", required=True)
    if name and not is_dns1123_label(name):
        service.error(f"{name!r} is not a valid Service name", "name")
    port = service.child("port")
    number, port_name = 0, ""
    if port is None:
        service.error("required", "port")
    else:
        number = port.integer("number", minimum=1, maximum=65535)
        port_name = port.string("name")
        if bool(number) == bool(port_name):
            port.error("exactly one of name or number is required")
        port.done()
    service.done()
    return IngressBackend(name, number, port_name)


def _parse_path(f: Fields) -> IngressPath | None:
    path = f.string("path")
    path_type = f.enum("pathType", PATH_TYPES)
    if path_type in ("Exact", "Prefix") and not path.startswith("/"):
        f.error(f"{path_type} paths must be absolute (start with '/')", "path")
    elif path and not path.startswith("/"):
        f.error(f"{path!r} must be an absolute path", "path")
    if path_type in ("Exact", "Prefix"):
        for part in _BAD_PATH_PARTS:
            if part in path:
                f.error(f"{path!r} must not contain {part!r}", "path")
        if path.endswith(("/..", "/.")):
            f.error(f"{path!r} must not end with '/..' or '/.'", "path")
    backend = f.child("backend")
    if backend is None:
        f.error("required", "backend")
        return None
    parsed = _parse_backend(backend)
    backend.done(ignore=("resource",))
    f.done()
    return IngressPath(path, path_type, parsed)


def _parse_rule(f: Fields) -> IngressRule:
    host = f.string("host")
    if host:
        _validate_host(f, "host", host)
    http = f.child("http")
    paths: tuple[IngressPath, ...] | None = None
    if http is not None:
        items = http.children("paths")
        if not items:
            http.error("required, must not be empty", "paths")
        paths = tuple(p for item in items if (p := _parse_path(item)) is not None)
        http.done()
    f.done()
    return IngressRule(host, paths)


def _parse_tls(f: Fields) -> IngressTLS:
    tls_hosts = f.string_list("hosts")
    for index, host in enumerate(tls_hosts):
        _validate_host(f, f"hosts[{index}]", host)
    secret = f.string("secretName")
    if secret and not is_dns1123_subdomain(secret):
        f.error(f"{secret!r} is not a valid Secret name", "secretName")
    f.done()
    return IngressTLS(tls_hosts, secret)


def parse_ingress(meta: Meta, root: Fields) -> Ingress:
    spec = root.child("spec")
    if spec is None:
        root.error("required", "spec")
        root.done(ignore=("status",))
        return Ingress(meta)
    class_name = spec.string("ingressClassName") if spec.raw("ingressClassName") is not None \
        else None
    if class_name is not None and not is_dns1123_subdomain(class_name):
        spec.error(f"{class_name!r} is not a valid IngressClass name", "ingressClassName")
    default = spec.child("defaultBackend")
    default_backend = None
    if default is not None:
        default_backend = _parse_backend(default)
        default.done(ignore=("resource",))
    rules = tuple(_parse_rule(r) for r in spec.children("rules"))
    if not rules and default_backend is None:
        spec.error("either defaultBackend or rules must be specified")
    tls = tuple(_parse_tls(t) for t in spec.children("tls"))
    spec.done()
    root.done(ignore=("status",))
    return Ingress(meta, class_name, default_backend, tls, rules)


def parse_ingress_class(meta: Meta, root: Fields) -> IngressClass:
    spec = root.child("spec")
    controller = ""
    if spec is None:
        root.error("required", "spec")
    else:
        controller = spec.string("controller", required=True)
        spec.raw("parameters")  # the controller's own settings; istiod reads none
        spec.done()
    root.done()
    return IngressClass(meta, controller)
