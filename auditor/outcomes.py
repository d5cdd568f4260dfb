"""The outcome taxonomy: the names every report uses, and a remediation hint for each.

Two levels, never mixed. A `HostOutcome` says the host was not audited and says nothing
about the allow-list; an `Outcome` is the allow-list verdict for one URL on an audited host.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """Target-level verdict for one URL seen from one audited host."""

    REACHABLE = "reachable"
    DNS_FAILURE = "dns_failure"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS_FAILURE = "tls_failure"
    PROXY_DENIED = "proxy_denied"
    HTTP_ERROR = "http_error"
    ERROR = "error"


class HostOutcome(StrEnum):
    """Why a host was not audited."""

    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    SESSION_TIMEOUT = "session_timeout"
    PROBE_UNAVAILABLE = "probe_unavailable"
    NOT_AUDITED = "not_audited"
    ERROR = "error"
    # Not audited by design: the host's connection (network_cli, docker, ...) has no
    # transport here. Neither blocked nor a failure of the audit; it never changes the
    # exit status.
    SKIPPED = "skipped"


_TARGET_HINTS: dict[Outcome, str] = {
    Outcome.REACHABLE: "",
    Outcome.DNS_FAILURE: "make {host} resolvable from this host (DNS server, search domain or "
    "split-horizon zone)",
    Outcome.REFUSED: "allow TCP {port} to {host} on the egress firewall "
    "(an active reject was seen)",
    Outcome.TIMEOUT: "allow TCP {port} to {host} on the egress firewall or route "
    "(packets are silently dropped)",
    Outcome.TLS_FAILURE: "exempt {host} from TLS inspection, "
    "or trust the issuer shown on this host",
    Outcome.PROXY_DENIED: "allow {host} on the proxy (CONNECT to port {port}) or give this host "
    "proxy credentials",
    Outcome.HTTP_ERROR: "the server answered with an unexpected status; check the URL or the "
    "vendor's service status",
    Outcome.ERROR: "unexpected probe failure; see the detail",
}

_HOST_HINTS: dict[HostOutcome, str] = {
    HostOutcome.UNREACHABLE: "open the management port (SSH 22 / WinRM 5985-5986) from the "
    "auditor to this host, or fix its address",
    HostOutcome.AUTH_FAILED: "authorise the auditor's key or account on this host",
    HostOutcome.HOST_KEY_UNKNOWN: "record this host's key in known_hosts "
    "(or run once with --accept-new-host-keys)",
    HostOutcome.HOST_KEY_CHANGED: "verify the host's new key out of band, then update known_hosts",
    HostOutcome.SESSION_TIMEOUT: "the host accepted the connection but did not finish in time; "
    "check its load or raise --timeout",
    HostOutcome.PROBE_UNAVAILABLE: "install curl (or wget / python3) on Linux, or enable "
    "PowerShell Invoke-WebRequest on Windows",
    HostOutcome.NOT_AUDITED: "the run ended before this host was audited; run again",
    HostOutcome.ERROR: "unexpected error; see the detail",
    HostOutcome.SKIPPED: "this connection type is not audited (network device, container, "
    "API); check its egress another way, or give it an ssh, winrm or local connection",
}


# The request failed at the proxy itself (not listening, refused, name, TLS to it): the
# device to fix is the proxy or the path from the host to it, not the host's egress to the URL.
_AT_PROXY_HINTS: dict[Outcome, str] = {
    Outcome.DNS_FAILURE: "make the proxy's name ({proxy}) resolvable from this host, or fix "
    "the proxy setting (for the agent: its configuration file or registry)",
    Outcome.REFUSED: "the proxy {proxy} refused the connection: start it (is it listening on "
    "that port?) or fix the proxy setting",
    Outcome.TIMEOUT: "the proxy {proxy} did not answer: allow TCP from this host to the proxy "
    "on the firewall between them, or fix the proxy setting",
    Outcome.TLS_FAILURE: "TLS to the proxy {proxy} failed: add the proxy's CA to the trusted "
    "bundle (for the agent: /etc/qualys/cloud-agent/cert/ca-bundle.crt) or fix its certificate",
}
# Through a working proxy, a failure to reach the URL is the proxy's upstream: its egress
# firewall, its resolver, or its TLS inspection, not this host's.
_VIA_PROXY_HINTS: dict[Outcome, str] = {
    Outcome.DNS_FAILURE: "the proxy {proxy} could not resolve {host}: fix the proxy's DNS",
    Outcome.REFUSED: "the proxy {proxy} could not reach {host}: allow TCP {port} to {host} on "
    "the proxy's egress firewall",
    Outcome.TIMEOUT: "the proxy {proxy} could not reach {host} in time: allow TCP {port} to "
    "{host} on the proxy's egress firewall or route",
    Outcome.TLS_FAILURE: "exempt {host} from TLS inspection on the proxy {proxy}, or trust the "
    "issuer shown (for the agent: its CA bundle)",
}


def target_hint(
    outcome: Outcome, host: str, port: int, proxy: str = "", at_proxy: bool = False
) -> str:
    """One-line remediation for a target-level outcome, naming the URL's host and port, and
    aimed at the proxy when the request went through `proxy` (masked) and failed there
    (`at_proxy`) or beyond it."""
    if proxy:
        hints = _AT_PROXY_HINTS if at_proxy else _VIA_PROXY_HINTS
        if outcome in hints:
            return hints[outcome].format(host=host, port=port, proxy=proxy)
    return _TARGET_HINTS[outcome].format(host=host, port=port)


def host_hint(outcome: HostOutcome) -> str:
    """One-line remediation for a host that could not be audited."""
    return _HOST_HINTS[outcome]
