"""The SSRF guard: non-public targets are refused with a reason, unless allow-listed."""

from __future__ import annotations

import ipaddress

import pytest

from offload.errors import NotifyTargetRefused
from offload.notify.ssrf import AllowList, check_url, non_public_kind, parse_target
from offload.notify.webhook import pinned_request

NONE = AllowList()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.1.2.3:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://172.16.3.4/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::]/hook", "unspecified"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fd12:3456::1]/hook", "private"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback (embedded in IPv6)"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local (embedded in IPv6)"),
        ("http://[2002:a00:1::]/hook", "private (embedded in IPv6)"),
        ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local (embedded in IPv6)"),
        ("http://2130706433/hook", "loopback"),
    ],
)
async def test_non_public_targets_are_refused_with_the_reason(url: str, kind: str) -> None:
    with pytest.raises(NotifyTargetRefused) as refused:
        await check_url(url, NONE)
    message = str(refused.value)
    assert f"({kind})" in message and "OFFLOAD_WEBHOOK_ALLOWED_HOSTS" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "https://"),
        ("file:///etc/passwd", "https://"),
        ("http://user:pw@example.com/x", "credentials"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/x", "not valid"),
        ("http://no-such-host.invalid/x", "does not resolve"),
    ],
)
async def test_malformed_or_unresolvable_targets_are_refused(url: str, reason: str) -> None:
    with pytest.raises(NotifyTargetRefused, match=reason):
        await check_url(url, NONE)


async def test_public_addresses_pass() -> None:
    target = await check_url("https://93.184.215.14:8443/hooks?x=1", NONE)
    assert target.port == 8443 and [str(a) for a in target.addresses] == ["93.184.215.14"]
    assert non_public_kind(ipaddress.ip_address("2606:4700::1111")) is None
    assert non_public_kind(ipaddress.ip_address("::ffff:8.8.8.8")) is None


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9000/hook"),
        ("10.0.0.0/8, 192.168.0.0/16", "http://10.1.2.3/hook"),
        ("localhost", "http://localhost:9000/hook"),
        ("LOCALHOST.", "http://localhost/hook"),
        ("::1", "http://[::1]/hook"),
        ("fd00::/8", "http://[fd12::1]/hook"),
    ],
)
async def test_the_allow_list_lets_named_hosts_addresses_and_ranges_through(
    allowed: str, url: str
) -> None:
    await check_url(url, AllowList.parse(allowed))


async def test_an_allow_list_entry_covers_only_itself() -> None:
    with pytest.raises(NotifyTargetRefused, match="private"):
        await check_url("http://10.0.0.2/hook", AllowList.parse("10.0.0.1, hooks.internal"))


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not a host", "a/b", "exa mple.com"])
def test_a_malformed_allow_list_is_an_error_at_start_up(bad: str) -> None:
    with pytest.raises(ValueError, match="OFFLOAD_WEBHOOK_ALLOWED_HOSTS"):
        AllowList.parse(bad)


async def test_the_request_goes_to_the_checked_address_under_the_real_name() -> None:
    target = await check_url("https://127.0.0.1:8443/in?a=1", AllowList.parse("127.0.0.1"))
    target = target.__class__(target.url.replace("127.0.0.1", "hooks.example"), "https",
                              "hooks.example", 8443, target.addresses)  # fmt: skip
    request = pinned_request(target, target.addresses[0], b"{}", {"webhook-id": "msg_1"}, 5.0)
    assert str(request.url) == "https://127.0.0.1:8443/in?a=1"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert parse_target("HTTPS://Hooks.Example./x") == ("https", "hooks.example", 443)
