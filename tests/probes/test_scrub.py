"""Secrets taken from a proxy setting, and removed from host output in every encoding."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.errors import HostLevelError
from auditor.models import RawOutput, Target
from auditor.outcomes import Outcome
from auditor.probes import Scrubber, escape_controls, proxy_secrets
from auditor.probes.posix import parse_posix

NONCE = "0123456789abcdef"
TARGET = Target(url="https://cask.qg3.apps.qualys.com/status", name="US3 CDN")


@pytest.mark.parametrize(
    "setting",
    [
        "http://auditor:Pw0rd/x9 z@proxy:3128",
        "auditor:Pw0rd/x9 z@proxy:3128",
        "http:/auditor:Pw0rd/x9 z@proxy:3128",
        "http:\\\\auditor:Pw0rd/x9 z@proxy:3128",
        "HTTP://auditor:Pw0rd%2Fx9%20z@proxy:3128",
    ],
)
def test_the_password_is_found_in_every_shape_of_setting(setting: str) -> None:
    assert "Pw0rd/x9 z" in proxy_secrets(setting)
    assert "auditor" not in proxy_secrets(setting)


def test_a_setting_without_credentials_holds_no_secret() -> None:
    assert proxy_secrets("http://proxy.corp:3128/") == frozenset()
    assert proxy_secrets("") == frozenset()


def test_a_user_without_password_is_taken_as_a_token() -> None:
    assert "t0ken-abc" in proxy_secrets("http://t0ken-abc@proxy:3128")


@pytest.mark.parametrize(
    "printed",
    [
        "Pw0rd/x9 z",
        "Pw0rd%2Fx9%20z",
        "Pw0rd%2fx9+z",
        "%50w0rd/x9%20z",
        "Pw0rd%2Fx9+z",
        "ftp://auditor/Pw0rd@proxy:3128",  # what wget makes of a scheme-less setting
        "Basic " + base64.b64encode(b"auditor:Pw0rd/x9 z").decode(),
    ],
)
def test_every_printed_form_of_the_password_is_masked(printed: str) -> None:
    scrub = Scrubber.for_settings(["http://auditor:Pw0rd%2Fx9%20z@proxy:3128"])
    masked = scrub(f"error near {printed} here")
    assert "Pw0rd" not in masked and "x9" not in masked and "UHcwcm" not in masked, masked
    assert masked.startswith("error near ") and masked.endswith(" here")
    assert "***" in masked


def test_text_without_the_secret_is_left_alone() -> None:
    scrub = Scrubber.for_settings(["http://auditor:Pw0rd@proxy:3128"])
    text = "CONNECT tunnel failed, response 403 (héllo %41 + world)"
    assert scrub(text) == text


def test_control_characters_are_escaped_not_dropped() -> None:
    assert escape_controls("Evil\x01CA\x1b[31m\u202e\n") == "Evil\\x01CA\\x1b[31m\\u202e\\x0a"


def test_the_posix_parser_masks_the_hosts_proxy_password_everywhere() -> None:
    setting = "http://auditor:Pw0rd/x9@proxy.corp:3128"
    err = "Unsupported proxy syntax in 'http://auditor:Pw0rd%2fx9@proxy.corp:3128' (Pw0rd)"
    out = (
        f"AUD1 {NONCE}\tP\thttps_proxy\t{setting}\n"
        f"AUD1 {NONCE}\tH\tPw0rd-host\tos\tcurl\tcurl 7.88.1\n"
        f"AUD1 {NONCE}\tT\t0\tcurl\t5\t000\t000\t\t\t\t\t\t{setting}\t\t{err}\n"
        f"AUD1 {NONCE}\tD\t1\n"
    )
    result = parse_posix(RawOutput(out.encode(), b"", 0), [TARGET], NONCE)
    shown = repr(result)
    assert "Pw0rd" not in shown and "x9" not in shown
    (obs,) = result.observations
    assert obs.outcome is Outcome.DNS_FAILURE
    assert obs.proxy == "http://***@proxy.corp:3128"
    assert result.facts["proxy_settings"] == "https_proxy=http://***@proxy.corp:3128"


def test_the_posix_parser_shows_a_hex_issuer_with_its_controls_escaped() -> None:
    issuer = b"CN=Evil\x01CA\x1b[31m; O=Contoso".hex()
    out = (
        f"AUD1 {NONCE}\tT\t0\tcurl\t60\t000\t000\t\t\t\t\t\t\t{issuer}\tSSL certificate problem\n"
        f"AUD1 {NONCE}\tD\t1\n"
    )
    (obs,) = parse_posix(RawOutput(out.encode(), b"", 0), [TARGET], NONCE).observations
    assert obs.outcome is Outcome.TLS_FAILURE
    assert obs.tls_issuer == "CN=Evil\\x01CA\\x1b[31m; O=Contoso"
    assert obs.detail.endswith("(issuer: CN=Evil\\x01CA\\x1b[31m; O=Contoso)")


_SECRET_CHARS = st.characters(codec="utf-8", exclude_characters="*", exclude_categories=("Cs",))


@given(
    password=st.text(_SECRET_CHARS, min_size=4, max_size=24),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    form=st.sampled_from(["raw", "upper", "lower", "plus"]),
)
def test_a_password_never_survives_scrubbing_in_any_encoding(
    password: str, before: str, after: str, form: str
) -> None:
    setting = f"http://user:{quote(password, safe='')}@proxy:3128"
    encoded = {
        "raw": password,
        "upper": quote(password, safe=""),
        "lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(password, safe="")),
        "plus": quote_plus(password, safe=""),
    }[form]
    masked = Scrubber.for_settings([setting])(before + encoded + after)
    assert password not in masked
    assert encoded not in masked


@given(stdout=st.binary(max_size=2000), setting=st.text(max_size=80))
def test_the_posix_parser_survives_any_output_with_any_proxy_setting(
    stdout: bytes, setting: str
) -> None:
    head = f"AUD1 {NONCE}\tP\thttps_proxy\t{setting}\n".encode(errors="surrogateescape")
    try:
        parse_posix(RawOutput(head + stdout, b"", 0), [TARGET], NONCE)
    except HostLevelError:
        pass
