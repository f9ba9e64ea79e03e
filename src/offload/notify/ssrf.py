"""The SSRF guard: webhook targets must be public addresses unless allow-listed.

A webhook URL is chosen by a caller, and the dispatcher that requests it sits inside the
deployment's network. Without a guard a caller could make it reach the cloud metadata service
(169.254.169.254), a database on localhost or any private service. So a target is refused when
any address its host resolves to is private, loopback, link-local, unspecified, multicast,
reserved or otherwise not globally routable, in IPv4, IPv6 or an IPv4 address embedded in
IPv6 (mapped, 6to4, Teredo, NAT64) — unless ``OFFLOAD_WEBHOOK_ALLOWED_HOSTS`` names the host,
the address or a range holding it.

The check runs at registration (a clear error for the caller) and again before every attempt
against a fresh resolution, and the request is sent to the address just checked, so a name that
resolves differently the second time (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import NotifyTargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
RESOLVE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class AllowList:
    """``OFFLOAD_WEBHOOK_ALLOWED_HOSTS``: host names, addresses and CIDR ranges.

    >>> AllowList.parse("hooks.internal, 10.1.0.0/16, ::1").allows("hooks.internal", [])
    True
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if "/" in entry or not _looks_like_host(entry):
                    raise ValueError(
                        f"OFFLOAD_WEBHOOK_ALLOWED_HOSTS: {raw.strip()!r} is not a host name, "
                        "an address or a CIDR range"
                    ) from None
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, addresses: list[IPAddress]) -> bool:
        """True when the host name is listed, or every address is inside a listed range."""
        if host in self.hosts:
            return True
        return bool(addresses) and all(
            any(ip in net for net in self.networks if ip.version == net.version) for ip in addresses
        )

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks if ip.version == net.version)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    """Lower case, no brackets, no trailing dot: what the allow-list and TLS see."""
    port: int
    addresses: tuple[IPAddress, ...]
    """Every checked address, in resolver order: tried one after the other."""


def _looks_like_host(text: str) -> bool:
    return all(part and (part.replace("-", "").replace("_", "").isalnum()) for part in
               text.rstrip(".").split("."))  # fmt: skip


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def non_public_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, …), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = non_public_kind(embedded)
            return f"{inner} (embedded in IPv6)" if inner else None
    for kind, test in [
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("non-public", not ip.is_global),
    ]:
        if test:
            return kind
    return None


def parse_target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL, or :class:`NotifyTargetRefused`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise NotifyTargetRefused(f"webhook URL is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise NotifyTargetRefused("webhook URL must start with https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise NotifyTargetRefused("webhook URL may not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise NotifyTargetRefused("webhook URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an address literal is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else "does not resolve"
        raise NotifyTargetRefused(f"webhook host {host!r} {reason}") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise NotifyTargetRefused(f"webhook host {host!r} does not resolve")
    return found


async def check_url(url: str, allow: AllowList) -> Target:
    """Resolve and check a webhook URL; return where to connect, or raise
    :class:`~offload.errors.NotifyTargetRefused` with a reason a caller can act on."""
    scheme, host, port = parse_target(url)
    addresses = await resolve(host, port)
    if not allow.allows(host, []):
        for ip in addresses:
            kind = non_public_kind(ip)
            if kind is not None and not allow.allows_address(ip):
                shown = str(ip) if len(addresses) == 1 and _literal(host) else f"{host} ({ip})"
                raise NotifyTargetRefused(
                    f"webhook target refused by the SSRF guard: {shown} is not a public address "
                    f"({kind}); an operator can allow it with OFFLOAD_WEBHOOK_ALLOWED_HOSTS"
                )
    return Target(url, scheme, host, port, tuple(addresses))
