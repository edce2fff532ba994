"""Webhook targets without server-side request forgery (issue 21).

A webhook URL is checked when it is stored and again when it is called:

* **stored** (`check_url`): scheme http or https, no credentials in the URL, a host; every
  address the host resolves to must be a public (global) one — loopback, link-local
  (169.254.0.0/16, the cloud metadata service), private, shared, reserved and multicast
  addresses are refused unless an operator allow-lists them
  (`ECOWATT_ALARM_WEBHOOK_ALLOWED_NETWORKS`: CIDRs, or host names);
* **called** (`guarded_client`): the name is resolved again at connection time, every
  address is checked, and the connection goes to the checked address itself (the TLS name
  stays the host's): a name that resolved to a public address when stored and to an internal
  one now (DNS rebinding) is refused, and nothing is sent.

Exceptions: `WebhookRefused` (a `ValueError`), with the reason in its message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["WebhookPolicy", "WebhookRefused", "check_url", "guarded_client"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookRefused(ValueError):
    """The webhook URL or its address is not allowed."""


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class WebhookPolicy:
    """Which addresses webhooks may reach: public ones, and what the operator allows."""

    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    resolve: Resolver = field(default=_resolve)

    @classmethod
    def from_setting(cls, entries: Iterable[str], resolve: Resolver | None = None) -> WebhookPolicy:
        """`ECOWATT_ALARM_WEBHOOK_ALLOWED_NETWORKS`: CIDRs (or single addresses) and names."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower())
        return cls(tuple(networks), frozenset(hosts), resolve or _resolve)

    def check_address(self, host: str, address: str) -> None:
        """Refuse a non-public address the operator has not allowed."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if host.lower() in self.allowed_hosts or any(ip in n for n in self.allowed_networks):
            return
        if not ip.is_global or ip.is_multicast:
            kind = next(
                (
                    name
                    for name, test in (
                        ("loopback", ip.is_loopback),
                        ("link-local", ip.is_link_local),
                        ("private", ip.is_private),
                        ("multicast", ip.is_multicast),
                        ("reserved", ip.is_reserved),
                    )
                    if test
                ),
                "not public",
            )
            raise WebhookRefused(
                f"webhook host {host} resolves to {ip} ({kind}); allow it with "
                "ECOWATT_ALARM_WEBHOOK_ALLOWED_NETWORKS"
            )

    async def addresses(self, host: str, port: int) -> list[str]:
        """The host's addresses, every one of them allowed."""
        try:
            addresses = await self.resolve(host, port)
        except OSError as exc:
            raise WebhookRefused(f"webhook host {host} does not resolve: {exc}") from None
        if not addresses:
            raise WebhookRefused(f"webhook host {host} has no address")
        for address in addresses:
            self.check_address(host, address)
        return addresses


async def check_url(url: str, policy: WebhookPolicy) -> None:
    """A webhook URL that may be stored (else `WebhookRefused` with the reason)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused(f"webhook scheme {parts.scheme or '(none)'!r}: only http or https")
    if parts.username or parts.password:
        raise WebhookRefused("webhook URLs carry no credentials (use the signature secret)")
    if not parts.hostname:
        raise WebhookRefused("webhook URL without a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("webhook URL with an invalid port") from None
    await policy.addresses(parts.hostname, port)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to checked addresses: resolve, check every one, connect to the first."""

    def __init__(self, policy: WebhookPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.addresses(host, port)
        return await self.inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise WebhookRefused("webhooks do not go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: WebhookPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx builds its pool without a way to pass a network backend: this one is the
        # default pool with the guarded backend (httpx is pinned in uv.lock).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(policy),
        )


def guarded_client(policy: WebhookPolicy, timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client that reaches only addresses `policy` allows, checked per connection
    (no proxies from the environment, no redirects followed)."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy), timeout=timeout_s, follow_redirects=False
    )
