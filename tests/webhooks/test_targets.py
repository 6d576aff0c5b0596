"""The SSRF guard: https only, every resolved address public, at apply time and at send time."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from sqlmodel import Session

from tests.webhooks.conftest import SECRET, apply_text, with_webhook
from zapvet.errors import OrgFileError
from zapvet.org import parse_spec
from zapvet.webhooks.targets import TargetRefused, check_config, forbidden, resolve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.9", "a private address"),
        ("192.168.0.10", "a private address"),
        ("169.254.169.254", "a link-local address"),  # the cloud metadata service
        ("fe80::1", "a link-local address"),
        ("fd00::5", "a private address"),
        ("100.64.0.1", "a reserved address"),  # carrier-grade NAT
        ("0.0.0.0", "a private address"),
        ("224.0.0.1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "a private address"),
        ("2002:0a00:0001::1", "a private address"),  # 6to4 around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 of 169.254.169.254
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_addresses_a_webhook_may_not_reach(address: str, reason: str | None) -> None:
    assert forbidden(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", 'only "https://"'),
        ("ftp://hooks.example.com/x", 'starts with "https://"'),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]:8443/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://localhost/hook", "localhost resolves to 127.0.0.1"),
        ("https://user:pass@hooks.example.com/x", "credentials"),
        ("https://does-not-exist.invalid/hook", "does not resolve"),
    ],
)
async def test_sends_refuse_these_targets(url: str, says: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        await resolve(url, allow_private=False)
    assert says in str(refused.value)


async def test_a_public_address_passes_and_the_send_is_pinned_to_it() -> None:
    target = await resolve("https://93.184.215.14:8443/zapvet?x=1", allow_private=False)
    assert target.pinned_url() == "https://93.184.215.14:8443/zapvet?x=1"
    local = await resolve("http://localhost:9999/hook", allow_private=True)
    assert local.host == "localhost"
    assert local.pinned_url() in ("http://127.0.0.1:9999/hook", "http://[::1]:9999/hook")


def test_the_organization_file_refuses_what_it_can_see_without_resolving() -> None:
    for url, says in [
        ("http://hooks.example.com/x", 'only "https://"'),
        ("https://10.0.0.7/hook", "a private address"),
    ]:
        with pytest.raises(OrgFileError) as refused:
            parse_spec(with_webhook(url, private=False))
        assert "webhooks[2].url" in str(refused.value) and says in str(refused.value)
    with pytest.raises(OrgFileError) as unknown:
        parse_spec(with_webhook("https://hooks.example.com/x", ["appointment.booked"]))
    assert "unknown event 'appointment.booked'" in str(unknown.value)
    with pytest.raises(OrgFileError) as short:
        parse_spec(with_webhook("https://hooks.example.com/x", secret="curto"))
    assert "webhooks[2].secret" in str(short.value)


def test_apply_resolves_the_host_refuses_private_and_warns_when_unresolved(
    session: Session,
) -> None:
    with pytest.raises(OrgFileError) as refused:
        apply_text(session, with_webhook("https://localhost:8443/hook", private=False))
    assert "webhooks[2].url" in str(refused.value)
    assert "localhost resolves to 127.0.0.1, a loopback address" in str(refused.value)
    session.rollback()
    assert check_config("https://does-not-exist.invalid/x", allow_private=False) == (
        "does-not-exist.invalid does not resolve now; deliveries retry until it does"
    )
    # allowed explicitly, for development: plain http to loopback
    org = apply_text(session, with_webhook("http://127.0.0.1:9/hook", private=True))
    assert org.id is not None
    assert SECRET not in repr(org)


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DNS is the world outside: a resolver that answers a public and a private address
    # (a rebinding setup, or a split-horizon name) for hooks.example.com.
    answers = {
        "hooks.example.com": ["93.184.215.14", "10.0.0.8"],
        "good.example.com": ["93.184.215.14", "2606:4700:4700::1111"],
    }

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [(0, 1, 6, "", (address, port)) for address in answers[host]]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    with pytest.raises(TargetRefused) as refused:
        await resolve("https://hooks.example.com/x", allow_private=False)
    assert "hooks.example.com resolves to 10.0.0.8, a private address" in str(refused.value)
    good = await resolve("https://good.example.com/x", allow_private=False)
    assert [str(a) for a in good.addresses] == ["93.184.215.14", "2606:4700:4700::1111"]
    assert good.pinned_url() == "https://93.184.215.14/x"
