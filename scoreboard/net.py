"""The client's address: REMOTE_ADDR, unless the peer is a trusted proxy."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def resolve_client_ip(remote_addr: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str | None:
    """Walk X-Forwarded-For right to left past trusted hops; the first untrusted hop is the client.

    A client cannot buy a fresh identity by sending its own X-Forwarded-For: only hops appended by
    trusted proxies are skipped, and the untrusted peer's own value ends the walk.
    """
    peer = _parse(remote_addr or "")
    if peer is None:
        return None
    networks = _networks(tuple(trusted))
    if not networks or not any(peer in n for n in networks):
        return str(peer)
    client = peer
    for hop in reversed([h for h in (forwarded_for or "").split(",") if h.strip()]):
        address = _parse(hop)
        if address is None:
            break
        client = address
        if not any(address in n for n in networks):
            break
    return str(client)


# What resolve_client_ip answered for the (peer, X-Forwarded-For, trusted proxies) seen last: the
# same few peers and headers come back on every request, and parsing addresses with ``ipaddress`` was
# about 1% of a score update's instructions (twice per update: the per-IP limit, the update's context).
# Bounded, so a client sending a fresh X-Forwarded-For on every request only turns the cache over.
_resolved = functools.lru_cache(maxsize=4096)(resolve_client_ip)


def client_ip(meta: Mapping[str, Any]) -> str | None:
    trusted = settings.TRUSTED_PROXIES
    return _resolved(
        meta.get("REMOTE_ADDR"),
        meta.get("HTTP_X_FORWARDED_FOR"),
        trusted if type(trusted) is tuple else tuple(trusted),
    )
