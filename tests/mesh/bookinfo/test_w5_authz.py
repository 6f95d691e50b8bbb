"""W5, Istio's security walkthrough, the AuthorizationPolicy and RequestAuthentication steps,
through the real pilot-agent gateway and sidecars of the Bookinfo mesh, where every sidecar
hop is mutual TLS: allow-nothing, then GET allowed by service account hop by hop restoring the
page, a DENY on a path and on a header, a TCP port's policy by principal, a gateway policy by
remoteIpBlocks, and JWTs (no token 403, a bad token 401, a valid token 200) verified by
productpage's sidecar against the keys it fetches from the `jwks` pod."""

from __future__ import annotations

from typing import Any

from tests.mesh.bookinfo.conftest import (
    GATEWAY_ACCOUNT,
    GATEWAY_POD,
    IDP,
    JWKS_URI,
    PLAINTEXT_CLIENT,
    TCP_PORT,
)
from tests.mesh.bookinfo.steps import gateway_get, sample, use
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

DENIED = "RBAC: access denied"


def authorization_policy(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def answer(mesh: Mesh, path: str = "/productpage", **headers: str) -> dict[str, Any]:
    (found,) = gateway_get(mesh, path, headers=headers)
    return found


def wait_for_status(mesh: Mesh, status: int, path: str = "/productpage",
                    **headers: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(answer(mesh, path, **headers))
        return bool(found["status"] == status)

    wait_until(reached, f"{path} answers {status} through the gateway")
    return found


def baseline(mesh: Mesh) -> None:
    """Bookinfo without the policies of an earlier test, the page served again: each step
    then waits for a change its own policy makes, never for a state left behind."""
    use(mesh)
    wait_for_status(mesh, 200)


def test_w5_allow_nothing_denies_every_workload_of_the_namespace(bookinfo: Mesh) -> None:
    baseline(bookinfo)
    use(bookinfo, authorization_policy("allow-nothing"))
    found = wait_for_status(bookinfo, 403)
    assert found["body"] == DENIED, found
    # productpage's sidecar refused it: the gateway forwarded, productpage never answered.
    assert "x-backend-name" not in found["headers"], found
    (direct,) = bookinfo.pods["fortio"].get("http://details:9080/details/0")
    assert (direct["status"], direct["body"]) == (403, DENIED)


def principal(account: str, namespace: str = "default") -> str:
    return f"cluster.local/ns/{namespace}/sa/{account}"


def allow_get(app: str, *accounts: str) -> dict[str, Any]:
    """Istio's `<app>-viewer`: GET to `app` from the workloads of `accounts`."""
    return authorization_policy(f"{app}-viewer", selector={"matchLabels": {"app": app}},
                                action="ALLOW", rules=[{
                                    "from": [{"source": {"principals": list(accounts)}}],
                                    "to": [{"operation": {"methods": ["GET"]}}]}])


def test_w5_allowing_get_by_service_account_restores_the_page(bookinfo: Mesh) -> None:
    """allow-nothing, then each hop allowed from its caller's identity only (the SPIFFE id
    of the client certificate mutual TLS carries): the page, its details, reviews v3 and its
    ratings come back; a sidecar with another identity is still refused."""
    baseline(bookinfo)
    reviews_v3 = sample("virtual-service-reviews-v3.yaml")
    use(bookinfo, *reviews_v3, authorization_policy("allow-nothing"))
    wait_for_status(bookinfo, 403)
    use(bookinfo, *reviews_v3, authorization_policy("allow-nothing"),
        allow_get("productpage", principal(GATEWAY_ACCOUNT, "istio-system")),
        allow_get("details", principal("bookinfo-productpage")),
        allow_get("reviews", principal("bookinfo-productpage")),
        allow_get("ratings", principal("bookinfo-reviews")))

    def restored() -> bool:
        found = answer(bookinfo)
        page = found["page"] or {}
        return bool(found["status"] == 200 and page["details"]["status"] == 200
                    and page["reviews"]["status"] == 200
                    and "Reviewer1" in (page["reviews"]["rating"] or {}))

    wait_until(restored, "the page with details, reviews and ratings")
    (direct,) = bookinfo.pods["fortio"].get("http://details:9080/details/0")
    assert (direct["status"], direct["body"]) == (403, DENIED)


def tcp_policy(*accounts: str) -> dict[str, Any]:
    return authorization_policy("tcp-by-principal", selector={"matchLabels": {"app": "httpbin"}},
                                rules=[{"from": [{"source": {"principals": list(accounts)}}],
                                        "to": [{"operation": {"ports": [str(TCP_PORT)]}}]}])


def tcp_get(mesh: Mesh, pod: str, address: str = "httpbin-tcp") -> int:
    """An HTTP request carried as opaque TCP (the port is `tcp-echo`): 0 when the
    connection is closed before an answer, as network RBAC closes it."""
    (found,) = mesh.pods[pod].get(f"http://{address}:{TCP_PORT}/headers", timeout=5)
    return int(found["status"])


def test_w5_a_tcp_port_policy_by_principal(bookinfo: Mesh) -> None:
    """Network RBAC on httpbin's TCP port: only fortio's identity connects; a sidecar-less
    pod (plaintext, no peer identity) and then fortio itself, once the policy names another
    account, get the connection closed."""
    baseline(bookinfo)
    httpbin = bookinfo.pods["httpbin-v1"]
    use(bookinfo, tcp_policy(principal("fortio")))
    wait_until(lambda: "tcp-by-principal" in str(httpbin.listener_config("virtualInbound")),
               "httpbin's sidecar holding the TCP policy")
    wait_until(lambda: tcp_get(bookinfo, "fortio") == 200, "fortio through the TCP port")
    assert tcp_get(bookinfo, PLAINTEXT_CLIENT, httpbin.ip) == 0
    use(bookinfo, tcp_policy(principal("bookinfo-ratings")))
    wait_until(lambda: tcp_get(bookinfo, "fortio") == 0, "fortio refused on the TCP port")
    assert httpbin.stat("tcp.rbac.denied") >= 1


def test_w5_deny_on_a_path(bookinfo: Mesh) -> None:
    baseline(bookinfo)
    use(bookinfo, authorization_policy(
        "deny-products-api", action="DENY",
        selector={"matchLabels": {"app": "productpage"}},
        rules=[{"to": [{"operation": {"paths": ["/api/v1/products*"]}}]}]))
    found = wait_for_status(bookinfo, 403, "/api/v1/products")
    assert found["body"] == DENIED
    assert answer(bookinfo)["status"] == 200


def test_w5_deny_on_a_header(bookinfo: Mesh) -> None:
    """reviews' sidecar refuses requests productpage forwards for user mallory."""
    baseline(bookinfo)
    use(bookinfo, authorization_policy(
        "deny-mallory", action="DENY", selector={"matchLabels": {"app": "reviews"}},
        rules=[{"when": [{"key": "request.headers[end-user]", "values": ["mallory"]}]}]))

    def reviews_denied() -> bool:
        found = answer(bookinfo, **{"end-user": "mallory"})
        return bool(found["status"] == 200 and found["page"]["reviews"]["status"] == 403)

    wait_until(reviews_denied, "reviews refusing mallory")
    page = answer(bookinfo, **{"end-user": "mallory"})["page"]
    assert page["reviews"]["error"] == DENIED and page["details"]["status"] == 200
    assert answer(bookinfo, **{"end-user": "jason"})["page"]["reviews"]["status"] == 200


def test_w5_gateway_policy_by_remote_ip_blocks(bookinfo: Mesh) -> None:
    """The gateway matches the client address it sees (the test process, over the bridge);
    an x-forwarded-for the client writes is not trusted."""
    baseline(bookinfo)
    client = str(bookinfo.network.gateway)
    gateway = {"selector": {"matchLabels": {"istio": "ingressgateway"}}}
    use(bookinfo, authorization_policy(
        "only-from-elsewhere", "istio-system", **gateway,
        rules=[{"from": [{"source": {"remoteIpBlocks": ["192.0.2.0/24"]}}]}]))
    found = wait_for_status(bookinfo, 403)
    assert found["body"] == DENIED
    assert answer(bookinfo, **{"x-forwarded-for": "192.0.2.7"})["status"] == 403
    use(bookinfo, authorization_policy(
        "only-from-the-client", "istio-system", **gateway,
        rules=[{"from": [{"source": {"remoteIpBlocks": [f"{client}/32"]}}]}]))


    def allowed_by_the_policy() -> bool:
        # A 200 alone may come between the two policies (the first file is removed before
        # the second is written); the RBAC filter's own count says the second one let it in.
        return bool(answer(bookinfo)["status"] == 200 and bookinfo.pods[GATEWAY_POD].stat(
            "http.outbound_0.0.0.0_8080;.rbac.allowed") > 0)

    wait_until(allowed_by_the_policy, "the gateway's RBAC allowing the client's address")


def _jwt_step() -> list[dict[str, Any]]:
    """RequestAuthentication and a policy requiring a request principal, on productpage."""
    selector = {"matchLabels": {"app": "productpage"}}
    return [
        {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
         "metadata": {"name": "jwt", "namespace": "default"},
         "spec": {"selector": selector, "jwtRules": [{"issuer": IDP.issuer,
                                                      "jwksUri": JWKS_URI}]}},
        authorization_policy("require-jwt", selector=selector, rules=[
            {"from": [{"source": {"requestPrincipals": [f"{IDP.issuer}/*"]}}]}]),
    ]


def test_w5_request_authentication_no_token_403_bad_token_401_valid_token_200(
        bookinfo: Mesh) -> None:
    baseline(bookinfo)
    use(bookinfo, *_jwt_step())
    found = wait_for_status(bookinfo, 403)
    assert found["body"] == DENIED
    valid = f"Bearer {IDP.token('reviewer')}"
    page = wait_for_status(bookinfo, 200, authorization=valid)["page"]
    assert page["reviews"]["status"] == 200
    assert "fetch" in bookinfo.pods["jwks"].app_log()  # the sidecar fetched the keys
    forged = answer(bookinfo, authorization=f"Bearer {IDP.forged('reviewer')}")
    assert forged["status"] == 401, forged
    expired = answer(bookinfo, authorization=f"Bearer {IDP.token('reviewer', lifetime=-600)}")
    assert expired["status"] == 401, expired
