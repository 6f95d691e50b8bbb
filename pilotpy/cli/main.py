"""pilotpy's command line: serve | translate | analyze | bootstrap | local | demo | version."""

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
from pilotpy.runtime.memory import tune_gc
from pilotpy.server.settings import (
    DEFAULT_GRPC_ADDR,
    DEFAULT_GRPC_TLS_ADDR,
    DEFAULT_HTTP_ADDR,
    DEFAULT_MAX_CONNECTION_AGE,
    DEFAULT_MONITORING_ADDR,
    Settings,
)


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
    from pilotpy.runtime.lifecycle import run_until_stopped
    from pilotpy.server.controlplane import ControlPlane
    from pilotpy.sources.kube import KubeConfigError

    kube = args.kube or args.kubeconfig is not None
    if not args.config and not kube:
        raise SystemExit("pilotpy serve: give --config PATH, --kube or --kubeconfig FILE")
    for path in args.config:
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file or directory")
    settings = Settings(config_paths=args.config, grpc_addr=args.grpc_addr,
                        grpc_tls_addr=args.grpc_tls_addr, http_addr=args.http_addr,
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
                        control_plane_namespace=args.namespace)
    try:
        plane = ControlPlane(settings)
    except (MeshConfigError, KubeConfigError, ValueError, OSError) as err:
        raise SystemExit(f"pilotpy: {err}") from err
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
