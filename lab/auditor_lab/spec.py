"""The lab's design: its private network plan, the vendor names it serves, and its hosts.

Everything the lab builds is derived from this table, so a new condition is one new row.
The lab lives on 10.213.0.0/16, which exists only inside this machine: a bridge in the root
namespace carries the lab services, and each host is a network namespace behind a veth.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from enum import StrEnum

from auditor.outcomes import HostOutcome, Outcome

PREFIX = "audlab"
"""Every namespace, link and nft table the lab makes starts with this (how `down` finds them)."""

BRIDGE = "audlab0"
NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
CDN_ADDRESS = "10.213.0.1"
"""The bridge's own address: the CDN (80, 443) and both proxies (3128, 3129) listen here."""
INTERCEPT_ADDRESS = "10.213.0.2"
"""A second bridge address: the TLS-intercepting endpoint (443)."""
HTTPS_PORT = 443
HTTP_PORT = 80
PROXY_PORT = 3128
DENY_PROXY_PORT = 3129
INSPECT_PROXY_PORT = 3131
"""A TLS-inspecting proxy: its CONNECT tunnels end at the intercepting endpoint, so every
name it is asked for presents a certificate from the inspection CA."""
SSH_PORT = 22
INTERNAL_SSH_PORT = 2222
"""The bastion's sshd also listens on its own loopback here: an address only a ProxyJump
through the bastion can reach, which proves a test's traffic really went through it."""
WSMAN_PORT = 5985
WSMAN_HTTPS_PORT = 5986
LAB_WINRM_USER = "labadmin"
"""The account every Windows lab host's WinRM endpoint knows; its password is made by
`lab up` and written only to DIR/winrm_password and the endpoints' own config files."""

PROXY_URL = f"http://{CDN_ADDRESS}:{PROXY_PORT}"
DENY_PROXY_URL = f"http://{CDN_ADDRESS}:{DENY_PROXY_PORT}"
INSPECT_PROXY_URL = f"http://{CDN_ADDRESS}:{INSPECT_PROXY_PORT}"

PROBE_URL = "https://cask.qg3.apps.qualys.com/status"
"""The URL every expected outcome in the design table refers to (the vendor's own check)."""

LAB_CA_NAME = "Auditor Lab Root CA"
INTERCEPT_CA_NAME = "Contoso SSL Inspection CA"
INTERCEPT_CA_ORG = "Contoso Ltd"

MAX_EXTRA_HOSTS = 5000

# Platform domains as in the catalog (auditor/targets.py); GOV1 has no agent URLs.
PLATFORM_DOMAINS: dict[str, str] = {
    "US1": "qg1.apps.qualys.com",
    "US2": "qg2.apps.qualys.com",
    "US3": "qg3.apps.qualys.com",
    "US4": "qg4.apps.qualys.com",
    "EU1": "qg1.apps.qualys.eu",
    "EU2": "qg2.apps.qualys.eu",
    "EU3": "qg3.apps.qualys.it",
    "IN1": "qg1.apps.qualys.in",
    "CA1": "qg1.apps.qualys.ca",
    "AE1": "qg1.apps.qualys.ae",
    "UK1": "qg1.apps.qualys.co.uk",
    "AU1": "qg1.apps.qualys.com.au",
    "KSA1": "qg1.apps.qualysksa.com",
}
GENERIC_CDN_NAME = "cdn.lab.test"

CATALOG_NAMES: tuple[str, ...] = (
    *(f"cask.{domain}" for domain in PLATFORM_DOMAINS.values()),
    *(f"qagpublic.{domain}" for domain in PLATFORM_DOMAINS.values()),
    GENERIC_CDN_NAME,
)
"""Every vendor host name the lab serves: in the CDN certificate and in the hosts files."""


class HostKind(StrEnum):
    """Which probe the auditor runs on the host (and which inventory parent group it is in)."""

    LINUX = "linux"
    WINDOWS = "windows"


class Resolution(StrEnum):
    """Where the host's own hosts file points the catalog names."""

    CDN = "cdn"
    INTERCEPT = "intercept"
    NONE = "none"


class KnownHost(StrEnum):
    """What the generated known_hosts records for the host."""

    CORRECT = "correct"
    WRONG = "wrong"


@dataclass(frozen=True)
class HostSpec:
    """One lab host: its place on the network, the condition made for it, and the outcome an
    audit of `PROBE_URL` must report for it (`outcome`, plus `detail`, a substring the
    outcome's detail must contain, and `proxy`, the proxy in effect, when not empty).

    `service` names what `lab up` starts in the namespace ("sshd", "wsman" for a Windows
    host's WS-Management endpoint, or "none" for a host whose management port is closed).
    For Windows hosts `winrm_auth` and `winrm_https` say how the auditor logs in (NTLM with
    message encryption over HTTP 5985, or Basic over HTTPS 5986), `wsman_behaviour` selects
    a WinRM-level fault of the endpoint (see `auditor_lab.wsman`), `authorized=False` gives
    the endpoint a password other than the lab's, and `proxy` is also the host's system
    proxy. A Linux host with `password_login` lets root log in with the lab's SSH password
    (its own /etc/shadow, in the namespace's /etc view). `powershell` is the PowerShell a
    Windows host's endpoint answers as: "5.1" (`auditor_lab.ps51`) or "7" (7.4+,
    `auditor_lab.ps7`).
    """

    name: str
    address: str
    site: str
    outcome: Outcome | HostOutcome
    detail: str = ""
    condition: str = ""
    proxy: str = ""
    kind: HostKind = HostKind.LINUX
    service: str = "sshd"
    resolution: Resolution = Resolution.CDN
    nft_rules: tuple[str, ...] = ()
    session_env: tuple[tuple[str, str], ...] = ()
    hide_http_clients: bool = False
    authorized: bool = True
    known_host: KnownHost = KnownHost.CORRECT
    tcp_forwarding: bool = False
    cdn_status: int | None = None
    winrm_auth: str = "ntlm"
    winrm_https: bool = False
    wsman_behaviour: str = "normal"
    password_login: bool = False
    powershell: str = "5.1"
    agent_version: str = ""
    """The Qualys agent package version the host's dpkg reports ("" for no agent)."""
    agent_conf: str = ""
    """The host's /etc/default/qualys-cloud-agent ("" for none)."""
    agent_verdict: str = ""
    """The agent verdict an audit of `PROBE_URL` must report ("" where not designed)."""
    agent_ca: bool = False
    """The host's agent proxy CA bundle (/etc/qualys/cloud-agent/cert/ca-bundle.crt) holds
    the inspection CA; nothing else on the host trusts it."""
    agent_winhttp: str = ""
    """A Windows host's WinHTTP proxy list, as `netsh winhttp set proxy` stores it ("" for
    direct): the agent's proxy when the Qualys registry names none."""

    @property
    def namespace(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def port(self) -> int:
        """The management port the auditor connects to."""
        if self.kind is HostKind.WINDOWS:
            return WSMAN_HTTPS_PORT if self.winrm_https else WSMAN_PORT
        return SSH_PORT

    @property
    def winrm_url(self) -> str:
        """The WS-Management endpoint URL of a Windows host (as the auditor spells it)."""
        scheme = "https" if self.winrm_https else "http"
        return f"{scheme}://{self.address}:{self.port}/wsman"

    @property
    def audited(self) -> bool:
        """True when the expected outcome is a target verdict (the host itself is audited)."""
        return isinstance(self.outcome, Outcome)


_BLOCK_CDN = f"ip daddr {CDN_ADDRESS} tcp dport {HTTPS_PORT}"


def design_hosts() -> list[HostSpec]:
    """The fixed Linux design fleet: one host per condition, grouped into three sites (the
    Windows ones are `windows_hosts`)."""
    rows = [
        HostSpec(
            "direct", "", "site_a", Outcome.REACHABLE, condition="nothing special: open egress"
        ),
        HostSpec(
            "jump",
            "",
            "site_a",
            Outcome.REACHABLE,
            condition="plain host that allows TCP forwarding (a ProxyJump bastion)",
            tcp_forwarding=True,
        ),
        HostSpec(
            "reject",
            "",
            "site_a",
            Outcome.REFUSED,
            condition="nft rejects TCP 443 to the CDN with a reset",
            nft_rules=(f"{_BLOCK_CDN} reject with tcp reset",),
        ),
        HostSpec(
            "blackhole",
            "",
            "site_a",
            Outcome.TIMEOUT,
            condition="nft silently drops TCP 443 to the CDN",
            nft_rules=(f"{_BLOCK_CDN} drop",),
        ),
        HostSpec(
            "nodns",
            "",
            "site_a",
            Outcome.DNS_FAILURE,
            condition="the hosts file lacks the vendor names and no nameserver answers",
            resolution=Resolution.NONE,
        ),
        HostSpec(
            "viaproxy",
            "",
            "site_b",
            Outcome.REACHABLE,
            condition="direct 80/443 to the CDN rejected; the session's https_proxy is the "
            "lab's CONNECT proxy",
            proxy=PROXY_URL,
            nft_rules=(f"ip daddr {CDN_ADDRESS} tcp dport {{ 80, 443 }} reject with tcp reset",),
            session_env=(("https_proxy", PROXY_URL), ("HTTPS_PROXY", PROXY_URL)),
        ),
        HostSpec(
            "proxydeny",
            "",
            "site_b",
            Outcome.PROXY_DENIED,
            detail="403",
            condition="the session's https_proxy answers 403 to every request",
            proxy=DENY_PROXY_URL,
            session_env=(("https_proxy", DENY_PROXY_URL), ("HTTPS_PROXY", DENY_PROXY_URL)),
        ),
        HostSpec(
            "intercept",
            "",
            "site_b",
            Outcome.TLS_FAILURE,
            detail=INTERCEPT_CA_NAME,
            condition="vendor names resolve to a TLS-intercepting endpoint whose CA is not trusted",
            resolution=Resolution.INTERCEPT,
        ),
        HostSpec(
            "http503",
            "",
            "site_b",
            Outcome.HTTP_ERROR,
            detail="503",
            condition="the CDN answers 503 to this host's address",
            cdn_status=503,
        ),
        HostSpec(
            "nocurl",
            "",
            "site_c",
            HostOutcome.PROBE_UNAVAILABLE,
            condition="the session's PATH holds no curl, wget or python3",
            hide_http_clients=True,
        ),
        HostSpec(
            "sshdown",
            "",
            "site_c",
            HostOutcome.UNREACHABLE,
            condition="the namespace exists but nothing listens on port 22",
            service="none",
        ),
        HostSpec(
            "noauth",
            "",
            "site_c",
            HostOutcome.AUTH_FAILED,
            condition="sshd does not authorise the lab key",
            authorized=False,
        ),
        HostSpec(
            "rekeyed",
            "",
            "site_c",
            HostOutcome.HOST_KEY_CHANGED,
            condition="known_hosts records a different ed25519 key for this address",
            known_host=KnownHost.WRONG,
        ),
        HostSpec(
            "pwauth",
            "",
            "site_c",
            Outcome.REACHABLE,
            condition="only password login: the lab key is not authorised, root's password is "
            "in DIR/ssh_password (give it as AUDITOR_SSH_PASSWORD)",
            authorized=False,
            password_login=True,
        ),
    ]
    return [replace(row, address=f"10.213.1.{10 + i}") for i, row in enumerate(rows)]


AGENT_FIRST_ADDRESS = 60
"""Hosts with the Qualys agent sit on 10.213.1.60 onwards."""
AGENT_PROXY_SECRET = "Lab-Agent-Pr0xy-Pass"  # noqa: S105 - planted, to prove it never leaks
"""The password in `agentcreds`'s proxy URL: it must appear in no output of the auditor."""
AGENT_ENCRYPTED = "a2V5LWZyb20tdGhlLXZlbmRvcnMtZW5jcnlwdGlvbi11dGlsaXR5"
"""A credential shaped like the vendor's utility's output (its real format is not public)."""
DEAD_PROXY_URL = f"http://{CDN_ADDRESS}:3130"
"""A proxy address where nothing listens."""
_NO_DIRECT = f"ip daddr {CDN_ADDRESS} tcp dport {{ 80, 443 }} reject with tcp reset"


def agent_hosts() -> list[HostSpec]:
    """Linux hosts with the Qualys Cloud Agent "installed" (`auditor_lab.agent`): versions
    below and above the first CDN version (6.4), the agent's own proxy (working where direct
    egress is refused, not listening, the first of two down, with credentials, with
    encrypted credentials). Every design host without these fields has no agent."""
    creds_proxy = f"http://labagent:{AGENT_PROXY_SECRET}@{CDN_ADDRESS}:{PROXY_PORT}"
    enc_proxy = f"http://{AGENT_ENCRYPTED}:{AGENT_ENCRYPTED}@{CDN_ADDRESS}:{DENY_PROXY_PORT}"
    rows = [
        HostSpec(
            "agentproxy",
            "",
            "site_agent",
            Outcome.REACHABLE,
            condition="agent 6.4 whose proxy is the lab's CONNECT proxy; direct egress refused",
            proxy=PROXY_URL,
            nft_rules=(_NO_DIRECT,),
            agent_version="6.4.0.57-1",
            agent_conf=f"https_proxy={PROXY_URL}\n",
            agent_verdict="cdn_ready",
        ),
        HostSpec(
            "agentold",
            "",
            "site_agent",
            Outcome.REACHABLE,
            condition="agent 6.3, older than the CDN: it always uses the platform",
            agent_version="6.3.1.20-1",
            agent_verdict="too_old",
        ),
        HostSpec(
            "agentdead",
            "",
            "site_agent",
            Outcome.REFUSED,
            detail="not usable",
            condition="agent 7.0 whose proxy does not listen (direct egress is open)",
            proxy=DEAD_PROXY_URL,
            agent_version="7.0.0.12-1",
            agent_conf=f'qualys_https_proxy="{DEAD_PROXY_URL}"\n',
            agent_verdict="cdn_blocked",
        ),
        HostSpec(
            "agentfailover",
            "",
            "site_agent",
            Outcome.REACHABLE,
            detail="proxy 2 of 2",
            condition="agent 6.5 with two proxies, the first down; direct egress refused",
            proxy=PROXY_URL,
            nft_rules=(_NO_DIRECT,),
            agent_version="6.5.0.3-1",
            agent_conf=f'qualys_https_proxy="{DEAD_PROXY_URL};{PROXY_URL}"\n',
            agent_verdict="cdn_ready",
        ),
        HostSpec(
            "agentcreds",
            "",
            "site_agent",
            Outcome.REACHABLE,
            condition="agent 6.4 whose proxy URL holds a user name and password",
            proxy=f"http://***@{CDN_ADDRESS}:{PROXY_PORT}",
            nft_rules=(_NO_DIRECT,),
            agent_version="6.4.1.9-1",
            agent_conf=f"# the agent's proxy\nexport https_proxy='{creds_proxy}'\n",
            agent_verdict="cdn_ready",
        ),
        HostSpec(
            "agentenc",
            "",
            "site_agent",
            Outcome.PROXY_DENIED,
            detail="403",
            condition="agent 6.4 whose proxy credentials are encrypted; the proxy answers 403",
            proxy=f"http://***@{CDN_ADDRESS}:{DENY_PROXY_PORT}",
            agent_version="6.4.0.1-1",
            agent_conf=f"https_proxy={enc_proxy}\n",
            agent_verdict="unknown",
        ),
        HostSpec(
            "agentinspect",
            "",
            "site_agent",
            Outcome.REACHABLE,
            condition="agent 6.4 whose proxy inspects TLS with a CA that only the agent's CA "
            "bundle holds; the login session uses that proxy too; direct egress refused",
            proxy=INSPECT_PROXY_URL,
            nft_rules=(_NO_DIRECT,),
            session_env=(("https_proxy", INSPECT_PROXY_URL), ("HTTPS_PROXY", INSPECT_PROXY_URL)),
            agent_version="6.4.2.7-1",
            agent_conf=f"https_proxy={INSPECT_PROXY_URL}\n",
            agent_verdict="cdn_ready",
            agent_ca=True,
        ),
    ]
    return [
        replace(row, address=f"10.213.1.{AGENT_FIRST_ADDRESS + i}") for i, row in enumerate(rows)
    ]


WINDOWS_AGENT_FIRST_ADDRESS = 90
"""Windows hosts with the Qualys agent sit on 10.213.1.90 onwards."""


def windows_agent_hosts() -> list[HostSpec]:
    """Windows hosts with the Qualys agent (`auditor_lab.winagent`): the agent's registry
    proxy working where direct egress is refused (5.1), an agent older than the first Windows
    CDN version, 5.7 (7), and an agent that follows a per-scheme WinHTTP proxy list (5.1).
    `agent_conf` is the agent's registry proxy value (the value name the lab writes is a
    stand-in: the real one is not public)."""
    rows = [
        HostSpec(
            "winagent",
            "",
            "win_agent",
            Outcome.REACHABLE,
            condition="agent 5.7 whose registry proxy is the lab's CONNECT proxy; direct "
            "egress refused",
            kind=HostKind.WINDOWS,
            service="wsman",
            nft_rules=(_NO_DIRECT,),
            agent_version="5.7.2.31",
            agent_conf=f"{CDN_ADDRESS}:{PROXY_PORT}",
            agent_verdict="cdn_ready",
        ),
        HostSpec(
            "winagent7old",
            "",
            "win_agent",
            Outcome.REACHABLE,
            condition="agent 5.6 (older than the CDN) on PowerShell 7",
            kind=HostKind.WINDOWS,
            service="wsman",
            powershell="7",
            agent_version="5.6.1.8",
            agent_verdict="too_old",
        ),
        HostSpec(
            "winagentwh",
            "",
            "win_agent",
            Outcome.REACHABLE,
            condition="agent 5.8 without a registry proxy; the WinHTTP proxy list names one "
            "proxy per scheme (http= a dead one, https= the lab's CONNECT proxy); direct "
            "egress refused",
            kind=HostKind.WINDOWS,
            service="wsman",
            nft_rules=(_NO_DIRECT,),
            agent_version="5.8.0.4",
            agent_winhttp=f"http={DEAD_PROXY_URL.removeprefix('http://')};"
            f"https={CDN_ADDRESS}:{PROXY_PORT}",
            agent_verdict="cdn_ready",
        ),
    ]
    return [
        replace(row, address=f"10.213.1.{WINDOWS_AGENT_FIRST_ADDRESS + i}")
        for i, row in enumerate(rows)
    ]


WINDOWS_FIRST_ADDRESS = 100
"""Windows hosts sit on 10.213.1.100 onwards, clear of the Linux design hosts."""


def windows_hosts() -> list[HostSpec]:
    """The Windows design hosts: a WS-Management endpoint (`auditor_lab.wsman`) in each
    namespace answers as Windows PowerShell 5.1 and makes the probe's HTTP requests from
    inside that namespace, so the conditions below are the same real ones the Linux hosts
    meet. Details are substrings of the 5.1 messages (`auditor_lab.ps51` cites each) and of
    the auditor's own WinRM outcome texts. The PowerShell 7 hosts (`powershell7_hosts`)
    follow them."""
    egress = "win_egress"
    winrm = "win_winrm"
    rows = [
        HostSpec(
            "win-direct",
            "",
            egress,
            Outcome.REACHABLE,
            detail="HTTP 200",
            condition="open egress; NTLM with message encryption over HTTP 5985",
            kind=HostKind.WINDOWS,
            service="wsman",
        ),
        HostSpec(
            "win-https",
            "",
            egress,
            Outcome.REACHABLE,
            detail="HTTP 200",
            condition="open egress; Basic auth over HTTPS 5986 (certificate from the lab CA)",
            kind=HostKind.WINDOWS,
            service="wsman",
            winrm_auth="basic",
            winrm_https=True,
        ),
        HostSpec(
            "win-reject",
            "",
            egress,
            Outcome.REFUSED,
            detail="actively refused it",
            condition="nft rejects TCP 443 to the CDN with a reset",
            kind=HostKind.WINDOWS,
            service="wsman",
            nft_rules=(f"{_BLOCK_CDN} reject with tcp reset",),
        ),
        HostSpec(
            "win-blackhole",
            "",
            egress,
            Outcome.TIMEOUT,
            detail="The operation has timed out.",
            condition="nft silently drops TCP 443 to the CDN",
            kind=HostKind.WINDOWS,
            service="wsman",
            nft_rules=(f"{_BLOCK_CDN} drop",),
        ),
        HostSpec(
            "win-nodns",
            "",
            egress,
            Outcome.DNS_FAILURE,
            detail="The remote name could not be resolved",
            condition="the hosts file lacks the vendor names and no nameserver answers",
            kind=HostKind.WINDOWS,
            service="wsman",
            resolution=Resolution.NONE,
        ),
        HostSpec(
            "win-proxydeny",
            "",
            egress,
            Outcome.PROXY_DENIED,
            detail="(403) Forbidden",
            condition="the system (WinINET) proxy answers 403 to every request",
            # As the probe reports it: [string] of the Uri that GetProxy returns.
            proxy=f"{DENY_PROXY_URL}/",
            kind=HostKind.WINDOWS,
            service="wsman",
        ),
        HostSpec(
            "win-intercept",
            "",
            egress,
            Outcome.TLS_FAILURE,
            detail=INTERCEPT_CA_NAME,
            condition="vendor names resolve to a TLS-intercepting endpoint whose CA is not trusted",
            kind=HostKind.WINDOWS,
            service="wsman",
            resolution=Resolution.INTERCEPT,
        ),
        HostSpec(
            "win-noauth",
            "",
            winrm,
            HostOutcome.AUTH_FAILED,
            detail="the specified credentials were rejected by the server",
            condition="the WinRM endpoint knows the lab user with another password (HTTP 401)",
            kind=HostKind.WINDOWS,
            service="wsman",
            authorized=False,
        ),
        HostSpec(
            "win-down",
            "",
            winrm,
            HostOutcome.UNREACHABLE,
            detail="Connection refused",
            condition="the namespace exists but nothing listens on port 5985 (WinRM stopped)",
            kind=HostKind.WINDOWS,
            service="none",
        ),
        HostSpec(
            "win-hang",
            "",
            winrm,
            HostOutcome.SESSION_TIMEOUT,
            detail="did not finish within",
            condition="the shell accepts the command and never completes it",
            kind=HostKind.WINDOWS,
            service="wsman",
            wsman_behaviour="hang",
        ),
        HostSpec(
            "win-quota",
            "",
            winrm,
            HostOutcome.ERROR,
            detail="maximum number of 30 concurrent shells",
            condition="creating a shell fails with the WS-Man quota fault (HTTP 500)",
            kind=HostKind.WINDOWS,
            service="wsman",
            wsman_behaviour="quota",
        ),
    ]
    return [
        replace(row, address=f"10.213.1.{WINDOWS_FIRST_ADDRESS + i}") for i, row in enumerate(rows)
    ] + powershell7_hosts()


POWERSHELL7_FIRST_ADDRESS = 140
"""The PowerShell 7 hosts sit on 10.213.1.140 onwards, clear of the 5.1 rows before them."""


def powershell7_hosts() -> list[HostSpec]:
    """Windows hosts whose endpoint answers as PowerShell 7.4+ (`auditor_lab.ps7`): one per
    exception shape 7 has for the same real conditions the 5.1 hosts meet. Details are
    substrings of PowerShell 7's messages (`auditor_lab.ps7` cites each)."""
    rows = [
        HostSpec(
            "win7-direct",
            "",
            "win_egress",
            Outcome.REACHABLE,
            detail="HTTP 200",
            condition="PowerShell 7; open egress",
        ),
        HostSpec(
            "win7-reject",
            "",
            "win_egress",
            Outcome.REFUSED,
            detail="actively refused it.",
            condition="PowerShell 7; nft rejects TCP 443 to the CDN with a reset",
            nft_rules=(f"{_BLOCK_CDN} reject with tcp reset",),
        ),
        HostSpec(
            "win7-blackhole",
            "",
            "win_egress",
            Outcome.TIMEOUT,
            detail="HttpClient.Timeout",
            condition="PowerShell 7; nft silently drops TCP 443 to the CDN",
            nft_rules=(f"{_BLOCK_CDN} drop",),
        ),
        HostSpec(
            "win7-nodns",
            "",
            "win_egress",
            Outcome.DNS_FAILURE,
            detail="No such host is known.",
            condition="PowerShell 7; the hosts file lacks the vendor names and no nameserver "
            "answers",
            resolution=Resolution.NONE,
        ),
        HostSpec(
            "win7-proxydeny",
            "",
            "win_egress",
            Outcome.PROXY_DENIED,
            detail="The proxy tunnel request",
            condition="PowerShell 7; the system proxy answers 403 to every request",
            proxy=f"{DENY_PROXY_URL}/",
        ),
        HostSpec(
            "win7-intercept",
            "",
            "win_egress",
            Outcome.TLS_FAILURE,
            detail=INTERCEPT_CA_NAME,
            condition="PowerShell 7; vendor names resolve to a TLS-intercepting endpoint whose "
            "CA is not trusted",
            resolution=Resolution.INTERCEPT,
        ),
        HostSpec(
            "win7-http503",
            "",
            "win_egress",
            Outcome.HTTP_ERROR,
            detail="503 (Service Unavailable)",
            condition="PowerShell 7; the CDN answers 503 to this host's address",
            cdn_status=503,
        ),
    ]
    return [
        replace(
            row,
            address=f"10.213.1.{POWERSHELL7_FIRST_ADDRESS + i}",
            kind=HostKind.WINDOWS,
            service="wsman",
            powershell="7",
        )
        for i, row in enumerate(rows)
    ]


def scale_hosts(count: int) -> list[HostSpec]:
    """`count` plain reachable hosts, scale-0001..., on 10.213.2.1 onwards (250 per /24)."""
    if not 0 <= count <= MAX_EXTRA_HOSTS:
        raise ValueError(f"extra hosts must be between 0 and {MAX_EXTRA_HOSTS}, not {count}")
    return [
        HostSpec(
            f"scale-{i:04d}",
            f"10.213.{2 + (i - 1) // 250}.{1 + (i - 1) % 250}",
            "scale",
            Outcome.REACHABLE,
            condition="plain host (scale)",
        )
        for i in range(1, count + 1)
    ]


def fleet(extra_hosts: int = 0) -> list[HostSpec]:
    """The Linux and Windows design hosts followed by `extra_hosts` scale hosts."""
    return (
        design_hosts()
        + agent_hosts()
        + windows_hosts()
        + windows_agent_hosts()
        + scale_hosts(extra_hosts)
    )
