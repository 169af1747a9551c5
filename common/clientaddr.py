"""The client's address, for rate limits, lock-outs and connection caps.

Behind nginx every request's peer is the proxy, so the peer alone would put
every customer under one limit. ``X-Forwarded-For`` is a list each proxy
appends the address it saw to; only the hops we run can be believed, so it is
read only when the peer is one of HEARO_TRUSTED_PROXIES, from the right, and
the first address that is not a trusted proxy is the client. A client that
forges the header only adds entries to the left of what our proxy appended.
"""

import ipaddress
from collections.abc import Iterable

from django.conf import settings

UNKNOWN = "unknown"  # no peer at all (a Unix socket)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return address is not None and any(address in network for network in settings.HEARO_TRUSTED_PROXIES)


def client_ip(peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
    """Return the client's address: the peer, or the rightmost untrusted X-Forwarded-For hop behind it."""
    if not peer:
        return UNKNOWN
    if not _trusted(_parse(peer)):
        return peer  # a client talking to us directly: its header proves nothing
    client = peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # garbage: the last hop we could believe is the answer
        client = str(address)
        if not _trusted(address):
            break
    return client


def request_client_address(request) -> str:
    """Return the client address of a Django request."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_ip(request.META.get("REMOTE_ADDR"), [forwarded] if forwarded else [])


def scope_client_address(scope: dict) -> str:
    """Return the client address of an ASGI (WebSocket) scope."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = [v.decode("latin1") for k, v in scope.get("headers", []) if k.lower() == b"x-forwarded-for"]
    return client_ip(peer, forwarded)
