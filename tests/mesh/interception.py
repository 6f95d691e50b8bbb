"""Traffic capture as istio-init installs it (REDIRECT mode, tools/istio-iptables), as one
`iptables-restore` input per pod, plus the harness's own guard.

- Outbound TCP from the application goes to 15001; the proxy's own traffic (uid/gid 1337)
  and loopback traffic the application sends to itself are left alone.
- Inbound TCP goes to 15006, except the sidecar's status and stats ports, and the admin
  port the harness exposes on the pod address (Istio keeps it on localhost).
- `127.0.0.6` is where the sidecar's inbound connections come from: they reach the
  application unchanged.
- The guard (harness only, not istio-init): nothing but loopback and the run's own subnet
  ever leaves the pod, so no test can reach another address by mistake.
"""

from __future__ import annotations

PROXY_UID = 1337
PROXY_GID = 1337
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
INBOUND_SOURCE = "127.0.0.6"
ADMIN_PORT = 15000
STATUS_PORT = 15021
# Ports inbound capture skips: istio-init's (tunnel 15008, agent 15020, status 15021,
# stats 15090) plus the admin port the harness reads from the root namespace.
INBOUND_EXCLUDED_PORTS = (15008, 15020, STATUS_PORT, 15090, ADMIN_PORT)


def istio_init_rules() -> str:
    inbound_exclusions = "\n".join(f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN"
                                   for port in INBOUND_EXCLUDED_PORTS)
    return f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
{inbound_exclusions}
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_CAPTURE_PORT}
-A ISTIO_OUTPUT -s {INBOUND_SOURCE}/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner {PROXY_UID} -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {PROXY_UID} -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner {PROXY_GID} -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {PROXY_GID} -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner {PROXY_GID} -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_CAPTURE_PORT}
COMMIT
"""


def guard_rules(subnet: str) -> str:
    """filter OUTPUT runs after nat OUTPUT, so a redirected connection already has its new
    destination (127.0.0.1); its output device is still the one routed first (eth0)."""
    return f"""*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -d 127.0.0.0/8 -j ACCEPT
-A OUTPUT -d {subnet} -j ACCEPT
-A OUTPUT -j REJECT
COMMIT
"""
