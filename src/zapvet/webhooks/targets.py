"""Where a webhook may go: `https://` to public addresses only (SSRF guard).

A URL's host is resolved and every address it resolves to is checked: a name with one
private, loopback, link-local, multicast or reserved address among its public ones is
refused, since a client may connect to any of them. The check runs when `org apply` reads
the file and again at every send, and a send connects to the addresses it checked (the
host is kept for TLS and `Host`), so a DNS answer that changes in between cannot redirect
it. `allow_private_targets = true` lifts both rules, for development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from zapvet.errors import TargetRefused as TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL and the addresses its host resolved to (the first is connected to)."""

    url: str
    host: str
    addresses: tuple[IPAddress, ...]

    def pinned_url(self) -> str:
        """`url` with its host replaced by the first checked address."""
        parts = urlsplit(self.url)
        address = self.addresses[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        netloc = shown if parts.port is None else f"{shown}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def forbidden(address: IPAddress) -> str | None:
    """Why `address` may not receive webhooks (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return forbidden(mapped)
        if address in _NAT64:
            return forbidden(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse(url: str, *, allow_private: bool) -> tuple[str, int]:
    """The host and port of a webhook `url`.

    Raises:
        TargetRefused: not an http(s) URL, or plain http without `allow_private`.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused('a webhook URL starts with "https://" and names a host')
    if parts.scheme == "http" and not allow_private:
        raise TargetRefused(
            'only "https://" URLs receive webhooks (plain http needs allow_private_targets '
            "= true, for development)"
        )
    if parts.username or parts.password:
        raise TargetRefused("put credentials in the secret, not in the URL")
    if parts.fragment:
        raise TargetRefused("a webhook URL has no #fragment")
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname, port or default


def check_addresses(host: str, addresses: list[IPAddress], *, allow_private: bool) -> None:
    """Raises TargetRefused when any of `host`'s addresses is not public."""
    if allow_private:
        return
    for address in addresses:
        reason = forbidden(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} resolves to {address},"
            raise TargetRefused(
                f"{shown} {reason}: webhooks go to public addresses only "
                "(allow_private_targets = true lifts this, for development)"
            )


def literal(host: str) -> IPAddress | None:
    """`host` as an IP address, if it is one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _addresses(infos: list[tuple[object, ...]]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        assert isinstance(sockaddr, tuple)
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Check `url` and every address its host resolves to, as a send does.

    Raises:
        TargetRefused: the URL or one of its addresses may not receive webhooks, or the host
            does not resolve.
    """
    host, port = parse(url, allow_private=allow_private)
    given = literal(host)
    if given is not None:
        addresses = [given]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise TargetRefused(f"{host} does not resolve ({exc.strerror or exc})") from None
        addresses = _addresses(list(infos))
        if not addresses:
            raise TargetRefused(f"{host} resolves to no address")
    check_addresses(host, addresses, allow_private=allow_private)
    return Target(url=url, host=host, addresses=tuple(addresses))


def check_config(url: str, *, allow_private: bool) -> str | None:
    """The check `org apply` makes: raises TargetRefused for a refused URL or address;
    returns a warning when the host does not resolve yet (it is checked again at each send).
    """
    host, port = parse(url, allow_private=allow_private)
    given = literal(host)
    if given is not None:
        check_addresses(host, [given], allow_private=allow_private)
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return f"{host} does not resolve now; deliveries retry until it does"
    check_addresses(host, _addresses(list(infos)), allow_private=allow_private)
    return None
