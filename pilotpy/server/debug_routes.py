"""istiod's debug HTTP endpoints (pilot/pkg/xds/debug.go) for a running pilotpy:
/debug/syncz, /debug/configz, /debug/registryz, /debug/adsz, /debug/config_dump?proxyID=,
and pilotpy's /debug/problems?kind=&namespace=&name= (every current problem, by object).

Read-only views of the control plane's state as JSON; served on the HTTP port (8080) and the
monitoring port (15014), like istiod. Lists are paged (`?start=&limit=`, and at most 8 MiB a
response, with a `Link` to the rest).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from pilotpy.discovery import Discovery
from pilotpy.runtime.logtext import clip
from pilotpy.server.debug_pages import DebugPages
from pilotpy.wire.protojson import message_to_json
from pilotpy.xds.debug import config_dump, rfc3339, sync_status
from pilotpy.xds.server import XdsServer


def plain(value: Any) -> Any:
    """Model objects (frozen dataclasses, enums, mappings, tuples) as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def debug_routes(xds: XdsServer, discovery: Discovery,
                 store_objects: Callable[[], Mapping[str, Mapping[Any, Any]]],
                 pages: DebugPages | None = None) -> list[web.RouteDef]:
    """The handlers; lists are paged and encoded off the loop by `pages`
    (pilotpy/server/debug_pages.py)."""
    bounded = pages or DebugPages()

    async def syncz(request: web.Request) -> web.Response:
        namespace = request.query.get("namespace")
        return await bounded.respond(request, [
            sync_status(s) for s in sorted(xds.proxies(), key=lambda s: s.node_id)
            if not namespace or s.node.namespace == namespace])

    def configz_item(item: tuple[str, Any, Any]) -> dict[str, Any]:
        kind, key, obj = item
        return {"kind": kind, "namespace": key.namespace, "name": key.name,
                "object": plain(obj)}

    async def configz(request: web.Request) -> web.Response:
        objects = store_objects()
        return await bounded.respond(request, [
            (kind, key, obj) for kind in sorted(objects)
            for key, obj in sorted(objects[kind].items())], configz_item)

    async def registryz(request: web.Request) -> web.Response:
        push = discovery.push
        services = push.services.all if push is not None else []
        return await bounded.respond(request, sorted(services, key=lambda s: (
            s.hostname, s.namespace)), plain)

    async def adsz(request: web.Request) -> web.Response:
        clients = []
        for connection in sorted(xds.connections.values(), key=lambda c: c.status.stream_id):
            status = connection.status
            clients.append({
                "connectionId": f"{status.node_id}-{status.stream_id}",
                "connectedAt": rfc3339(status.connected_at),
                "proxy": status.node_id, "proxyType": status.node.type,
                "protocol": status.protocol, "debug": connection.debug,
                "watches": {t: {"sentVersion": s.sent_version, "ackedVersion": s.acked_version,
                                "nacks": s.nacks, "lastError": s.last_error}
                            for t, s in sorted(status.types.items())},
            })
        head = f'{{"totalClients": {len(clients)}, "clients": '.encode()
        return await bounded.respond(request, clients, wrap=lambda body: head + body + b"}")

    async def dump(request: web.Request) -> web.Response:
        proxy_id = request.query.get("proxyID", "")
        if not proxy_id:
            return web.Response(status=400, text="proxyID is required\n")
        connection = xds.find_proxy(proxy_id)
        if connection is None:
            return web.Response(status=404, text=f"proxy {clip(proxy_id, 200)} is not "
                                "connected\n")
        snapshot = discovery.snapshot(connection.handle)
        body = await bounded.run(
            lambda: json.dumps(message_to_json(config_dump(snapshot))).encode())
        return web.Response(body=body, content_type="application/json")

    async def problems_of(request: web.Request) -> web.Response:
        """Problems of the objects matching the filters (all when none is given): found
        reading them, translating them for the connected proxies, or analysing them."""
        kind, namespace, name = (request.query.get(k, "") for k in ("kind", "namespace",
                                                                    "name"))
        return await bounded.respond(request, [p for p in discovery.problems.problems()
                                               if p.concerns(kind, namespace, name)],
                                     lambda p: p.to_json())

    return [web.get("/debug/syncz", syncz), web.get("/debug/configz", configz),
            web.get("/debug/registryz", registryz), web.get("/debug/adsz", adsz),
            web.get("/debug/config_dump", dump), web.get("/debug/problems", problems_of)]
