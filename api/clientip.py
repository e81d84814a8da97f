"""Who the client is, for rate limits and connection caps — pure.

Proxy headers are believed only from the proxies the operator names (`api.forwarded_allow_ips`).
Then the client is the right-most `X-Forwarded-For` address that is not one of those proxies:
everything left of it was written by the client and proves nothing. uvicorn's own proxy handling
is switched off (it trusts loopback by default), so the HTTP API and the feed use this one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """Parses IPs/CIDRs (validated by the settings) into networks."""
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in specs)


def is_trusted(host: str, trusted: tuple[Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return any(addr in net for net in trusted)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return True


def without_port(hop: str) -> str:
    """An X-Forwarded-For hop without the source port some proxies write ("203.0.113.7:54321",
    "[2001:db8::1]:54321"): the client chooses its port, and with it kept every connection was a new
    client with a budget of its own (review s21 hx). A bare IPv6 address keeps its colons."""
    if hop.startswith("["):
        end = hop.find("]")
        return hop[1:end] if end > 0 else hop
    host, sep, port = hop.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host
    return hop


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy and says otherwise."""
    ip = peer or "unknown"
    if not trusted or forwarded_for is None or not is_trusted(ip, trusted):
        return ip
    for hop in reversed(forwarded_for.split(",")):
        hop = without_port(hop.strip())
        if not hop:
            continue
        if not is_trusted(hop, trusted):
            return hop[:64]
        ip = hop
    return ip  # every hop was a trusted proxy: the left-most of them


# An IPv6 client counts per /64 and, on top, its /48 gets this many times the per-client budget
# (rate limits, open connections): one holder of a /48 (65,536 /64s) cannot multiply its budget by
# rotating through its /64s.
NETWORK_FACTOR = 16


def count_in(open_: dict[str, int], peer: str, per_ip: int) -> tuple[str, ...] | None:
    """Counts one more open connection of `peer` in `open_` (its address key and, for IPv6, its /48
    with NETWORK_FACTOR x per_ip); None, counting nothing, when either is full. Returns the keys to
    give back to count_out when the connection closes."""
    key, net = client_keys(peer)
    if open_.get(key, 0) >= per_ip or (net is not None and open_.get(net, 0) >= per_ip * NETWORK_FACTOR):
        return None
    keys = (key,) if net is None else (key, net)
    for k in keys:
        open_[k] = open_.get(k, 0) + 1
    return keys


def count_out(open_: dict[str, int], keys: tuple[str, ...]) -> None:
    for k in keys:
        left = open_.get(k, 1) - 1
        if left > 0:
            open_[k] = left
        else:
            open_.pop(k, None)


def client_keys(ip: str) -> tuple[str, str | None]:
    """(the key caps and limits count a client by, its network key), from one parse of `ip`: its
    address, or for IPv6 its /64 (the least a host is given: a per-address key would let one host
    rotate through 2^64 of them) and its /48 (what a site or an ISP's customer is usually given:
    65,536 /64s, so per-/64 budgets alone multiply by that much); no network key for IPv4."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return ip[:64], None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped), None
        host, site = ipaddress.IPv6Network((addr, 64), strict=False), ipaddress.IPv6Network((addr, 48), strict=False)
        return str(host), str(site)
    return str(addr), None


def address_key(ip: str) -> str:
    """client_keys' first: the address, or an IPv6 client's /64."""
    return client_keys(ip)[0]
