"""pilotpy's command line: serve | translate | analyze | diff | explain | status | bootstrap |
local | demo | version."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pilotpy import __version__
from pilotpy.runtime.logfilter import RepeatFilter
from pilotpy.runtime.memory import tune_gc
from pilotpy.server.settings import (
    DEFAULT_GRPC_ADDR,
    DEFAULT_GRPC_TLS_ADDR,
    DEFAULT_HTTP_ADDR,
    DEFAULT_MAX_CONNECTION_AGE,
    DEFAULT_MAX_PROXY_CLASSES,
    DEFAULT_MONITORING_ADDR,
    DEFAULT_WEBHOOK_ADDR,
    HttpLimits,
    Settings,
)
from pilotpy.sources.file_limits import FileLimits
from pilotpy.xds.limits import StreamLimits


class JsonFormatter(logging.Formatter):
    """One JSON object per line; stream events add their structured `fields` (proxy id and
    type, stream, xDS types) as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _labels(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"--label {value!r}: expected KEY=VALUE")
        out[key] = val
    return out


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration_seconds(value: str) -> float:
    """`90`, `90s`, `30m`, `1h` -> seconds."""
    text = value.strip()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 30m") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return seconds


_SIZE_UNITS = {"": 1, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}


def size_bytes(value: str) -> int:
    """`1048576`, `512Ki`, `64Mi`, `1Gi` (a trailing `B` is allowed) -> bytes."""
    text = value.strip().removesuffix("B")
    number = text.rstrip("KMGi")
    unit = _SIZE_UNITS.get(text[len(number):])
    if unit is None or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a size like 64Mi")
    return int(number) * unit


def count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive count")
    return int(value)


def _add_limit_flags(serve: argparse.ArgumentParser) -> None:
    """docs/operations.md#limits"""
    files, xds, http = FileLimits(), StreamLimits(), HttpLimits()
    serve.add_argument("--max-config-file-size", type=size_bytes, metavar="SIZE",
                       default=files.max_file_bytes,
                       help="larger config files keep serving what they held (default 32Mi)")
    serve.add_argument("--max-objects-per-file", type=count, metavar="N",
                       default=files.max_objects,
                       help="files with more objects keep serving what they held "
                            "(default 50000)")
    serve.add_argument("--max-request-size", type=size_bytes, metavar="SIZE",
                       default=xds.max_request_bytes,
                       help="largest ADS request accepted (default 4Mi, as istiod)")
    serve.add_argument("--max-resource-names", type=count, metavar="N",
                       default=xds.max_resource_names,
                       help="resource names in one ADS request or Delta subscription "
                            "(default 100000)")
    serve.add_argument("--max-unknown-names", type=count, metavar="N",
                       default=xds.max_unknown_names,
                       help="subscribed names that match no resource, across all streams "
                            "(default 50000)")
    serve.add_argument("--response-cache-size", type=size_bytes, metavar="SIZE", default=0,
                       help="memory for diffs and responses shared by streams (default 0: "
                            "4x the served config, at least 16Mi)")
    serve.add_argument("--max-proxy-classes", type=count, metavar="N",
                       default=DEFAULT_MAX_PROXY_CLASSES,
                       help="distinct proxy configs generated at once; proxies of a new one "
                            "past it are refused (default 10000)")
    serve.add_argument("--http-max-connections", type=count, metavar="N",
                       default=http.max_connections,
                       help="connections per HTTP port (default 256)")
    serve.add_argument("--http-header-timeout", type=duration_seconds, metavar="DURATION",
                       default=http.header_timeout,
                       help="how soon a request's headers must arrive (default 10s)")


def _add_config_flags(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--config", action="append", type=Path, required=required,
                        metavar="PATH", default=[],
                        help="a YAML file or directory of Istio and Kubernetes objects "
                             "(repeatable)")
    parser.add_argument("--mesh-config", type=Path, metavar="FILE",
                        help="meshConfig YAML (the `mesh` key of istiod's ConfigMap)")
    parser.add_argument("--default-namespace", default="default",
                        help="namespace of objects that do not name one (default: default)")


def cmd_serve(args: argparse.Namespace) -> int:
    from pilotpy.mesh import MeshConfigError
    from pilotpy.runtime.descriptors import raise_open_file_limit
    from pilotpy.runtime.lifecycle import run_until_stopped
    from pilotpy.server.controlplane import ControlPlane
    from pilotpy.sources.kube import KubeConfigError

    kube = args.kube or args.kubeconfig is not None
    if not args.config and not kube:
        raise SystemExit("pilotpy serve: give --config PATH, --kube or --kubeconfig FILE")
    for path in args.config:
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file or directory")
    webhook_addr = args.webhook_addr
    if webhook_addr is None:  # by default on, with the TLS port whose certificate it shows
        webhook_addr = DEFAULT_WEBHOOK_ADDR if args.grpc_tls_addr else ""
    settings = Settings(config_paths=args.config, grpc_addr=args.grpc_addr,
                        grpc_tls_addr=args.grpc_tls_addr, http_addr=args.http_addr,
                        webhook_addr=webhook_addr, inject_dir=args.inject_dir,
                        native_sidecars=args.native_sidecars,
                        serving_hosts=tuple(h for h in args.serving_host if h),
                        monitoring_addr=args.monitoring_addr, tls_cert_file=args.tls_cert_file,
                        tls_key_file=args.tls_key_file, ca_dir=args.ca_dir,
                        jwt_rule=args.jwt_rule, workload_cert_ttl_seconds=args.workload_cert_ttl,
                        max_workload_cert_ttl_seconds=args.max_workload_cert_ttl,
                        serving_cert_ttl_seconds=args.serving_cert_ttl,
                        lease_duration_seconds=args.lease_duration,
                        poll_interval=args.poll_interval,
                        mesh_config=args.mesh_config,
                        default_namespace=args.default_namespace,
                        max_connection_age_seconds=args.max_connection_age, kube=kube,
                        kubeconfig=args.kubeconfig, kube_context=args.kube_context,
                        control_plane_namespace=args.namespace,
                        enable_status=args.enable_status,
                        file_limits=FileLimits(args.max_config_file_size,
                                               args.max_objects_per_file),
                        stream_limits=StreamLimits(max_request_bytes=args.max_request_size,
                                                   max_resource_names=args.max_resource_names,
                                                   max_unknown_names=args.max_unknown_names),
                        response_cache_bytes=args.response_cache_size,
                        max_proxy_classes=args.max_proxy_classes,
                        http_limits=HttpLimits(args.http_max_connections,
                                               args.http_header_timeout))
    try:
        plane = ControlPlane(settings)
    except (MeshConfigError, KubeConfigError, ValueError, OSError) as err:
        raise SystemExit(f"pilotpy: {err}") from err
    logging.getLogger("pilotpy").info("open files: up to %d", raise_open_file_limit())
    run_until_stopped(plane.run_forever)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from pilotpy.cli.translate import translate

    output, problems = translate(args.config, node_id=args.node_id, labels=_labels(args.label),
                                 mesh_config=args.mesh_config,
                                 default_namespace=args.default_namespace, delta=False,
                                 generator=args.generator, agent=args.agent,
                                 verified_identity=args.verified_identity)
    for problem in problems:  # as `pilotpy analyze` prints them
        print(problem, file=sys.stderr)
    json.dump(output, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if args.strict and any(p.is_error for p in problems) else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from pilotpy.cli.analyze import analyze_paths, report
    from pilotpy.mesh import MeshConfigError

    try:
        messages = analyze_paths(args.paths, mesh_config=args.mesh_config,
                                 default_namespace=args.default_namespace)
    except MeshConfigError as err:
        raise SystemExit(f"pilotpy: {err}") from err
    return report(messages, args.output)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from pilotpy.local.bootstrap import envoy_bootstrap
    from pilotpy.local.grpc_bootstrap import grpc_bootstrap
    from pilotpy.server.settings import split_address

    host, port = split_address(args.xds_address, default_host="127.0.0.1")
    try:
        if args.grpc:
            bootstrap = grpc_bootstrap(args.node_id, (host, port), labels=_labels(args.label),
                                       namespace=args.namespace)
        else:
            bootstrap = envoy_bootstrap(
                node_id=args.node_id, xds_address=(host, port), delta=args.delta,
                labels=_labels(args.label), namespace=args.namespace, cluster=args.cluster,
                admin_port=args.admin_port, status_port=args.status_port,
                stats_port=args.stats_port if args.admin_port else None)
    except ValueError as err:
        raise SystemExit(f"pilotpy bootstrap: {err}") from err
    json.dump(bootstrap, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from pilotpy.local.run import run_local

    return run_local(args.config, delta=args.delta)


def cmd_crds(args: argparse.Namespace) -> int:
    from pilotpy.model.crds import crds_yaml

    sys.stdout.write(crds_yaml())
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    from pilotpy.cli.fields import istio_spec_paths, markdown, update_doc

    istio = istio_spec_paths(args.istio_crds) if args.istio_crds is not None else None
    if args.doc is not None:
        update_doc(args.doc, istio)
    else:
        sys.stdout.write(markdown(istio) + "\n")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from pilotpy.cli import diff
    from pilotpy.cli.translate import check_paths, load_objects, proxy_of, read_objects

    try:
        kube = args.kube or args.kubeconfig is not None
        if not args.config and not kube:
            raise SystemExit("pilotpy diff: give the current state: --config PATH or --kube")
        check_paths(args.config)
        check_paths(args.proposed, "--proposed")
        objects, problems = read_objects(args.config, default_namespace=args.default_namespace)
        if kube:
            import asyncio

            listed, kube_problems = asyncio.run(diff.kube_objects(
                args.kubeconfig, args.kube_context, args.namespace))
            objects, problems = diff.overlay(listed, objects), (*kube_problems, *problems)
        changes, proposed_problems = read_objects(args.proposed,
                                                  default_namespace=args.default_namespace)
        current = load_objects(objects, problems, mesh_config=args.mesh_config)
        proposed = load_objects(diff.overlay(objects, changes, prune=args.prune),
                                (*problems, *proposed_problems), mesh_config=args.mesh_config)
        if args.node_id:
            proxies = [proxy_of(args.node_id, _labels(args.label))]
        elif args.server:
            proxies = diff.connected_proxies(args.server)
        else:
            proxies = diff.registry_proxies(current.objects, proposed.objects,
                                            domain_suffix=current.push.mesh.domain_suffix)
        result = diff.diff(current, proposed, proxies)
    except SystemExit as err:
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
            return diff.ERRORS
        raise
    (diff.write_json if args.output == "json" else diff.write_text)(result, sys.stdout)
    return result.exit_code


def cmd_explain(args: argparse.Namespace) -> int:
    from pilotpy.cli.explain import RequestError, explain, parse_request, write_json, write_text
    from pilotpy.cli.translate import load_config, proxy_config, proxy_of

    try:
        request = parse_request(args.request, args.header)
    except RequestError as err:
        raise SystemExit(f"pilotpy explain: {err}") from err
    proxy = proxy_of(args.node_id, _labels(args.label), args.generator)
    loaded = load_config(args.config, mesh_config=args.mesh_config,
                         default_namespace=args.default_namespace)
    answer = explain(loaded, proxy_config(loaded.push, proxy), request)
    (write_json if args.output == "json" else write_text)(answer, sys.stdout)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pilotpy.cli.status import CANNOT_TELL, parse_target, run_status

    try:
        target = parse_target(args.target, args.namespace)
    except ValueError as err:
        print(f"pilotpy status: {err}", file=sys.stderr)
        return CANNOT_TELL
    return run_status(args.server, target, wait=args.wait, timeout=args.timeout,
                      generation=args.generation, output=args.output)


def cmd_demo(args: argparse.Namespace) -> int:
    from pilotpy.local.demo import run_demo

    return run_demo(delta=args.delta)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pilotpy", description=__doc__)
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve xDS to Envoy proxies")
    _add_config_flags(serve, required=False)
    serve.add_argument("--kube", action="store_true",
                       help="watch the Kubernetes API (in-cluster credentials, or $KUBECONFIG "
                            "/ ~/.kube/config)")
    serve.add_argument("--kubeconfig", type=Path, metavar="FILE",
                       help="watch the Kubernetes API with this kubeconfig (implies --kube)")
    serve.add_argument("--kube-context", metavar="NAME", help="kubeconfig context to use")
    serve.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "istio-system"),
                       help="control-plane namespace, where the mesh ConfigMap `istio` is read "
                            "(default $POD_NAMESPACE or istio-system)")
    serve.add_argument("--grpc-addr", default=DEFAULT_GRPC_ADDR,
                       help=f"ADS listen address (default {DEFAULT_GRPC_ADDR})")
    serve.add_argument("--grpc-tls-addr", default=DEFAULT_GRPC_TLS_ADDR,
                       help=f"ADS over TLS listen address, '' for none "
                            f"(default {DEFAULT_GRPC_TLS_ADDR})")
    serve.add_argument("--http-addr", default=DEFAULT_HTTP_ADDR,
                       help=f"/ready and /debug/* listen address (default {DEFAULT_HTTP_ADDR})")
    serve.add_argument("--monitoring-addr", default=DEFAULT_MONITORING_ADDR,
                       help=f"/metrics and /debug/* listen address, '' for none "
                            f"(default {DEFAULT_MONITORING_ADDR})")
    serve.add_argument("--webhook-addr", default=None, metavar="ADDR",
                       help=f"the sidecar injection webhook (HTTPS, the TLS port's "
                            f"certificate), '' for none (default {DEFAULT_WEBHOOK_ADDR}; off "
                            f"when --grpc-tls-addr is '')")
    serve.add_argument("--inject-dir", type=Path, metavar="DIR",
                       help="off the cluster: the injector's settings, files `config` (policy) "
                            "and `values` (Istio's Helm values), as istiod mounts them (in the "
                            "cluster: ConfigMap istio-sidecar-injector)")
    serve.add_argument("--native-sidecars", choices=("auto", "true", "false"),
                       default=os.environ.get("ENABLE_NATIVE_SIDECARS", "auto"),
                       help="inject istio-proxy as a native sidecar (an init container that "
                            "keeps running): auto when every node's kubelet is 1.33 or later "
                            "(default $ENABLE_NATIVE_SIDECARS or auto)")
    serve.add_argument("--serving-host", action="append", metavar="NAME",
                       default=[h.strip() for h in
                                os.environ.get("ISTIOD_CUSTOM_HOST", "").split(",")],
                       help="another name or IP address the serving certificate of the TLS "
                            "port and the webhook is valid for (repeatable; default "
                            "$ISTIOD_CUSTOM_HOST, comma-separated)")
    serve.add_argument("--tls-cert-file", type=Path, metavar="PEM",
                       help="serving certificate chain of the TLS port (default: issued by the "
                            "mesh CA and renewed at half its life)")
    serve.add_argument("--tls-key-file", type=Path, metavar="PEM",
                       help="private key of --tls-cert-file")
    serve.add_argument("--poll-interval", type=duration_seconds, default="0.5s",
                       metavar="DURATION",
                       help="how often --config files are checked for changes (default 0.5s)")
    serve.add_argument("--lease-duration", type=duration_seconds, default="30s",
                       metavar="DURATION",
                       help="with --kube: the Lease of the leader that writes the "
                            "istio-ca-root-cert ConfigMaps; a successor takes over this long "
                            "after a leader dies (default 30s, as istiod)")
    serve.add_argument("--ca-dir", type=Path, metavar="DIR",
                       help="off the cluster: the mesh CA's ca-cert.pem, ca-key.pem, "
                            "root-cert.pem, cert-chain.pem (a new self-signed root is written "
                            "there when it has no ca-key.pem); default: a root in memory")
    serve.add_argument("--jwt-rule", default=os.environ.get("JWT_RULE", ""), metavar="JSON",
                       help="off the cluster: how :15012 checks service-account JWTs, as "
                            "istiod's JWT_RULE: {\"issuer\": ..., \"jwksUri\": \"https://|file://"
                            "...\" or \"jwks\": ..., \"audiences\": [\"istio-ca\"]} "
                            "(default $JWT_RULE)")
    serve.add_argument("--workload-cert-ttl", type=duration_seconds, metavar="DURATION",
                       default=os.environ.get("DEFAULT_WORKLOAD_CERT_TTL", "24h"),
                       help="validity of workload certificates when the CSR asks none "
                            "(default $DEFAULT_WORKLOAD_CERT_TTL or 24h)")
    serve.add_argument("--max-workload-cert-ttl", type=duration_seconds, metavar="DURATION",
                       default=os.environ.get("MAX_WORKLOAD_CERT_TTL", "2160h"),
                       help="longest validity a CSR may ask; longer ones are refused "
                            "(default $MAX_WORKLOAD_CERT_TTL or 2160h, 90 days)")
    serve.add_argument("--serving-cert-ttl", type=duration_seconds, metavar="DURATION",
                       default="168h", help="validity of the TLS port's certificate, renewed "
                                            "at half its life (default 168h)")
    serve.add_argument("--max-connection-age", type=duration_seconds,
                       default=DEFAULT_MAX_CONNECTION_AGE, metavar="DURATION",
                       help="close ADS connections after this age, +-10%% jitter, so proxies "
                            "rebalance across instances; 0 disables (default 30m)")
    serve.add_argument("--enable-status", action="store_true",
                       default=os.environ.get("PILOT_ENABLE_STATUS", "").lower() == "true",
                       help="with --kube, write the Reconciled condition and observedGeneration "
                            "to Istio objects (default $PILOT_ENABLE_STATUS, as istiod)")
    _add_limit_flags(serve)
    serve.set_defaults(func=cmd_serve)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions pilotpy reads")
    crds.set_defaults(func=cmd_crds)

    fields = sub.add_parser("fields", help="list the Istio fields pilotpy supports and not")
    fields.add_argument("--istio-crds", type=Path, metavar="FILE",
                        help="Istio's CRDs (istio.io/api kubernetes/"
                             "customresourcedefinitions.gen.yaml): also list Istio fields "
                             "pilotpy does not read")
    # --readme is the flag's old name, from when the list lived in the README.
    fields.add_argument("--doc", "--readme", dest="doc", type=Path, metavar="FILE",
                        help="rewrite the generated section of FILE (docs/fields.md) instead "
                             "of printing")
    fields.set_defaults(func=cmd_fields)

    translate = sub.add_parser("translate",
                               help="print what pilotpy would send a proxy, without a server")
    _add_config_flags(translate)
    translate.add_argument("--node-id", required=True,
                           help="Istio node id, e.g. router~10.0.0.1~gw-1.istio-system~"
                                "istio-system.svc.cluster.local")
    translate.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                           help="a workload label of the proxy (repeatable)")
    translate.add_argument("--generator", choices=("grpc",), default="",
                           help="the node's GENERATOR metadata: grpc for a proxyless gRPC "
                                "client or server (docs/proxyless-grpc.md)")
    translate.add_argument("--agent", action="store_true",
                           help="the proxy runs under pilot-agent (node metadata PROXY_CONFIG): "
                                "mesh mTLS with the agent's SDS certificates")
    translate.add_argument("--verified-identity", default="", metavar="SPIFFE_ID",
                           help="the identity the proxy's stream proves, e.g. spiffe://"
                                "cluster.local/ns/istio-system/sa/istio-ingressgateway: also "
                                "print the Secrets it would get over SDS (keys redacted)")
    translate.add_argument("--strict", action="store_true",
                           help="exit 1 when the input contains invalid objects")
    translate.set_defaults(func=cmd_translate)

    analyze = sub.add_parser("analyze", help="check config like istioctl analyze (IST0101, "
                                             "IST0106, IST0109, IST0132, IST0145); exit 1 on "
                                             "errors")
    analyze.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                         help="YAML files or directories")
    analyze.add_argument("--mesh-config", type=Path, metavar="FILE",
                         help="meshConfig YAML (the `mesh` key of istiod's ConfigMap)")
    analyze.add_argument("--default-namespace", default="default",
                         help="namespace of objects that do not name one (default: default)")
    analyze.add_argument("--output", "-o", default="text", choices=("text", "json"))
    analyze.set_defaults(func=cmd_analyze)

    diff = sub.add_parser(
        "diff", help="what a config change does to each proxy class's Envoy resources, and the "
                     "problems it raises (exit 0 no change, 1 changes, 2 errors)")
    _add_config_flags(diff, required=False)
    diff.add_argument("--proposed", action="append", type=Path, required=True, metavar="PATH",
                      default=[], help="YAML files or directories applied over the current "
                                       "state, as kubectl apply would (repeatable)")
    diff.add_argument("--prune", action="store_true",
                      help="Istio config objects (Gateway, VirtualService, DestinationRule, "
                           "ServiceEntry, Sidecar) the proposed files lack are deleted")
    diff.add_argument("--kube", action="store_true",
                      help="the current state from the Kubernetes API (in-cluster credentials, "
                           "or $KUBECONFIG / ~/.kube/config); --config files apply over it")
    diff.add_argument("--kubeconfig", type=Path, metavar="FILE", help="implies --kube")
    diff.add_argument("--kube-context", metavar="NAME")
    diff.add_argument("--namespace", default="istio-system",
                      help="where the mesh ConfigMap `istio` is read with --kube")
    who = diff.add_mutually_exclusive_group()
    who.add_argument("--node-id", help="compare for this proxy only")
    who.add_argument("--all-proxies", action="store_true",
                     help="compare for every workload of the registry (the default)")
    who.add_argument("--server", metavar="URL",
                     help="compare for the proxies connected to the pilotpy at URL (its "
                          "/debug/adsz), e.g. http://istiod.istio-system:8080")
    diff.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                      help="a workload label of --node-id's proxy (repeatable)")
    diff.add_argument("--output", "-o", default="text", choices=("text", "json"))
    diff.set_defaults(func=cmd_diff)

    explain = sub.add_parser(
        "explain", help="where a request from a proxy goes: listener, route, clusters, "
                        "endpoints, and the VirtualService and DestinationRule behind each")
    _add_config_flags(explain)
    explain.add_argument("--node-id", required=True,
                         help="the proxy sending (a sidecar) or receiving (a gateway) it")
    explain.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="a workload label of the proxy (repeatable; the registry's Pod "
                              "with the node's IP gives them otherwise)")
    explain.add_argument("--generator", choices=("grpc",), default="", help=argparse.SUPPRESS)
    explain.add_argument("request", metavar="'[METHOD] URL'",
                         help="e.g. 'GET http://reviews:9080/reviews/0'")
    explain.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                         help="a request header, as curl takes it (repeatable)")
    explain.add_argument("--output", "-o", default="text", choices=("text", "json"))
    explain.set_defaults(func=cmd_explain)

    status = sub.add_parser(
        "status", help="has an object's latest change reached every proxy it affects? (exit 0 "
                       "all ACKed, 1 a NACK, 2 not yet or timed out, 3 cannot tell)")
    status.add_argument("target", metavar="KIND/NAME",
                        help="e.g. virtualservice/reviews, vs/reviews, gateway/bookinfo-gateway")
    status.add_argument("--namespace", "-n", default="default")
    status.add_argument("--server", default="http://127.0.0.1:8080",
                        help="pilotpy's HTTP address (its /debug/status; default "
                             "http://127.0.0.1:8080)")
    status.add_argument("--wait", action="store_true",
                        help="poll until every affected proxy answered, or --timeout")
    status.add_argument("--timeout", type=duration_seconds, default=30.0, metavar="DURATION",
                        help="how long --wait waits (default 30s)")
    status.add_argument("--generation", type=int, default=0,
                        help="wait for this metadata.generation at least (what `kubectl get "
                             "-o jsonpath={.metadata.generation}` prints after an apply)")
    status.add_argument("--output", "-o", default="text", choices=("text", "json"))
    status.set_defaults(func=cmd_status)

    bootstrap = sub.add_parser("bootstrap", help="print an Envoy bootstrap pointing at pilotpy "
                                                 "(--grpc: a proxyless gRPC one)")
    bootstrap.add_argument("--node-id", required=True,
                           help="Istio's type~ip~<pod>.<namespace>~<namespace>.svc.cluster.local")
    bootstrap.add_argument("--xds-address", default="127.0.0.1:15010")
    bootstrap.add_argument("--delta", action="store_true", help="use Delta xDS")
    bootstrap.add_argument("--grpc", action="store_true",
                           help="the GRPC_XDS_BOOTSTRAP file of a proxyless gRPC client or "
                                "server instead (docs/proxyless-grpc.md)")
    bootstrap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                           help="a workload label (node metadata LABELS); repeat")
    bootstrap.add_argument("--namespace", default="",
                           help="node metadata NAMESPACE (default: the node id's namespace; "
                                "another one is refused)")
    bootstrap.add_argument("--cluster", default="",
                           help="node.cluster (default: <app label>.<namespace>, else "
                                "istio-proxy.<namespace>, as pilot-agent)")
    bootstrap.add_argument("--admin-port", type=int, default=15000)
    bootstrap.add_argument("--status-port", type=int, default=15021)
    bootstrap.add_argument("--stats-port", type=int, default=15090)
    bootstrap.set_defaults(func=cmd_bootstrap)

    local = sub.add_parser("local", help="run pilotpy, a real Envoy gateway and local "
                                         "backends on this machine (what `make run` runs)")
    local.add_argument("--config", type=Path, default=Path("examples"))
    local.add_argument("--delta", action="store_true", help="the gateway uses Delta xDS")
    local.set_defaults(func=cmd_local)

    demo = sub.add_parser("demo", help="the W1 walkthrough against a real Envoy, step by step")
    demo.add_argument("--delta", action="store_true")
    demo.set_defaults(func=cmd_demo)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _: print(f"pilotpy {__version__}") or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    tune_gc()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
