"""The domain: hosts, targets, observations and per-host results, as frozen dataclasses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from auditor.outcomes import HostOutcome, Outcome


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


class Connection(StrEnum):
    """How the auditor reaches a host."""

    SSH = "ssh"
    WINRM = "winrm"
    LOCAL = "local"
    # The host's connection plugin has no transport here (network devices, containers):
    # the host is skipped, never handed to a transport.
    NONE = "none"


class Platform(StrEnum):
    """Which probe runs on the host: POSIX sh + curl, or PowerShell Invoke-WebRequest."""

    LINUX = "linux"
    WINDOWS = "windows"


# Ansible connection plugin names we accept, mapped onto our transports. psrp speaks
# PowerShell remoting over the same WinRM listener, so the WinRM transport can audit it;
# paramiko is another SSH client, so the host is audited over SSH.
_CONNECTIONS: dict[str, Connection] = {
    **{
        f"{prefix}{name}": connection
        for prefix in ("", "ansible.builtin.", "ansible.legacy.")
        for name, connection in (
            ("ssh", Connection.SSH),
            ("paramiko", Connection.SSH),
            ("paramiko_ssh", Connection.SSH),
            ("winrm", Connection.WINRM),
            ("psrp", Connection.WINRM),
            ("local", Connection.LOCAL),
        )
    },
    "smart": Connection.SSH,
}

# Connection plugins of Ansible and its common collections that reach something the probe
# cannot run on (a network OS, a container, a jail, an API). Hosts using them are skipped
# quietly; any other name is skipped too, with a warning, since it may be a typo.
_UNAUDITED_PLUGINS: dict[str, tuple[str, ...]] = {
    "ansible.netcommon": ("network_cli", "netconf", "httpapi", "libssh", "persistent", "grpc"),
    "community.docker": ("docker", "docker_api", "nsenter"),
    "containers.podman": ("podman", "buildah"),
    "community.general": (
        "chroot",
        "funcd",
        "incus",
        "iocage",
        "jail",
        "lxc",
        "lxd",
        "qubes",
        "saltstack",
        "wsl",
        "zone",
    ),
    "community.libvirt": ("libvirt_lxc", "libvirt_qemu"),
    "kubernetes.core": ("kubectl",),
    "community.kubernetes": ("kubectl",),
    "community.okd": ("oc",),
    "redhat.openshift": ("oc",),
    "community.aws": ("aws_ssm",),
    "amazon.aws": ("aws_ssm",),
    "community.vmware": ("vmware_tools",),
    "vmware.vmware": ("vmware_tools",),
    "community.proxmox": ("proxmox_pct_remote",),
    "cisco.nxos": ("nxapi",),
}
UNAUDITED_PLUGINS: frozenset[str] = frozenset(
    name
    for collection, names in _UNAUDITED_PLUGINS.items()
    for short in names
    for name in (short, f"{collection}.{short}")
)
"""Connection plugin names (short and fully qualified) known not to be auditable here."""


def connection_plugin(hostvars: Mapping[str, Any]) -> str:
    """The host's Ansible connection plugin name, as the auditor compares it."""
    return str(hostvars.get("ansible_connection", "ssh")).strip().lower()


class HostVars(Mapping[str, Any]):
    """A host's resolved variables, read-only and compact: the variable names (and where
    each is) are shared by every host with the same names, so a host holds one tuple of
    values. A fleet's hosts mostly have the same names (their groups' variables and a few
    of their own): at 100,000 hosts this is a fraction of a dict per host."""

    __slots__ = ("_index", "_values")

    _shared: ClassVar[dict[tuple[str, ...], dict[str, int]]] = {}
    # Bounded: an inventory whose every host has its own names gains nothing from sharing.
    _SHARED_MAX: ClassVar[int] = 4096

    def __init__(self, items: Mapping[str, Any]) -> None:
        names = tuple(items)
        index = HostVars._shared.get(names)
        if index is None:
            index = {name: i for i, name in enumerate(names)}
            if len(HostVars._shared) < HostVars._SHARED_MAX:
                HostVars._shared[names] = index
        self._index = index
        self._values: Sequence[Any] = tuple(items.values())

    def __getitem__(self, key: str) -> Any:
        return self._values[self._index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __repr__(self) -> str:
        return f"HostVars({dict(self)!r})"


@dataclass(frozen=True, slots=True)
class Host:
    """One inventory host with its resolved connection settings.

    `vars` holds every resolved variable (Ansible precedence applied) and may hold secrets,
    so it is never serialised into results or reports; only the named fields are.
    """

    name: str
    address: str
    connection: Connection
    platform: Platform
    port: int | None = None
    user: str | None = None
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False, hash=False)
    skip: str = ""
    """Why the auditor will not audit this host (its connection has no transport here);
    empty for a host it audits. A skipped host has `connection` NONE."""

    @classmethod
    def from_vars(cls, name: str, groups: tuple[str, ...], hostvars: Mapping[str, Any]) -> Host:
        """Build a host from Ansible variables; raises ValueError on a bad port.

        A connection plugin the auditor has no transport for makes a skipped host
        (`skip` says why), not an error: one network device must not refuse a fleet.
        """
        raw_conn = connection_plugin(hostvars)
        connection = _CONNECTIONS.get(raw_conn, Connection.NONE)
        # The name is the user's text: keep the detail one short line.
        shown = raw_conn if len(raw_conn) <= 60 else raw_conn[:59] + "…"
        skip = "" if connection is not Connection.NONE else f"connection {shown} is not audited"
        port = hostvars.get("ansible_port", hostvars.get("ansible_ssh_port"))
        if port is not None and port != "":
            try:
                port_num: int | None = int(str(port))
            except ValueError:
                raise ValueError(f"host {name}: ansible_port={port!r} is not a number") from None
            if port_num is None or not 0 < port_num < 65536:
                raise ValueError(f"host {name}: ansible_port={port!r} is out of range")
        else:
            port_num = None
        user = hostvars.get("ansible_user", hostvars.get("ansible_ssh_user"))
        address = str(hostvars.get("ansible_host", hostvars.get("ansible_ssh_host", name)))
        return cls(
            name=name,
            address=address,
            connection=connection,
            platform=_platform(connection, hostvars),
            port=port_num,
            user=None if user is None else str(user),
            groups=groups,
            vars=HostVars(hostvars),
            skip=skip,
        )


def _platform(connection: Connection, hostvars: Mapping[str, Any]) -> Platform:
    hint = (
        str(hostvars.get("ansible_os_family", hostvars.get("ansible_system", ""))).strip().lower()
    )
    shell = str(hostvars.get("ansible_shell_type", "")).strip().lower()
    if hint == "windows" or shell in ("powershell", "cmd"):
        return Platform.WINDOWS
    if hint:
        return Platform.LINUX
    return Platform.WINDOWS if connection is Connection.WINRM else Platform.LINUX


@dataclass(frozen=True)
class Target:
    """One URL to check, with the statuses that count as reachable."""

    url: str
    name: str
    category: str = "custom"
    expected_status: tuple[int, ...] = (200,)
    platform: str | None = None
    verified: bool = True
    source: str = ""

    @property
    def hostname(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        if parts.port:
            return parts.port
        return 443 if parts.scheme == "https" else 80


@dataclass(frozen=True)
class Observation:
    """The verdict for one target on one audited host, with the evidence behind it."""

    url: str
    outcome: Outcome
    detail: str = ""
    http_status: int | None = None
    remote_ip: str = ""
    tool: str = ""
    tls_issuer: str = ""
    proxy: str = ""
    exit_code: int | None = None
    at_proxy: bool = False
    """The request failed at the proxy itself (`proxy`), not beyond it: the remediation is
    aimed at the proxy or the path to it."""
    time_dns: float | None = None
    time_connect: float | None = None
    time_tls: float | None = None
    time_total: float | None = None


# --- The Qualys agent on a host (verdict rules and fact sources: auditor.agent) ---------


class AgentVerdict(StrEnum):
    """Will this host's agent download from the CDN?"""

    CDN_READY = "cdn_ready"
    """Eligible version, and every CDN URL is reachable along the agent's own path."""
    CDN_BLOCKED = "cdn_blocked"
    """Eligible version, but a CDN URL is not reachable: it silently falls back."""
    TOO_OLD = "too_old"
    """Installed, but older than the first CDN version: upgrade first."""
    NO_AGENT = "no_agent"
    UNKNOWN = "unknown"
    """Could not tell; the verdict's reason says why."""


class ProbePath(StrEnum):
    """Which way the probe's requests went on the host."""

    AGENT_PROXY = "agent_proxy"
    """Through the agent's first configured proxy, as the agent goes."""
    AGENT_DIRECT = "agent_direct"
    """The agent has no proxy: straight out, without the login session's proxy variables
    (the agent runs as a service and does not see them; inferred, unverified)."""
    SESSION = "session"
    """As the login session would go (its own proxy variables, if any): `--direct`, or
    a host without an agent."""


@dataclass(frozen=True)
class AgentFacts:
    """What a probe found about the agent on one host. Every proxy text is masked
    (`user:***@`) by the parser that built it; nothing here is a secret."""

    installed: bool | None = None
    """None: the probe could not tell (no package manager, unreadable registry)."""
    version: str = ""
    running: bool | None = None
    source: str = ""
    """Where installation and version were read (dpkg, rpm, registry, service)."""
    config: str = ""
    """The file or registry key the proxy settings were read from ("" if none)."""
    proxy_key: str = ""
    """The setting the proxy list came from (qualys_https_proxy, https_proxy, ...)."""
    proxies: tuple[str, ...] = ()
    """The agent's proxies in the order it tries them, masked."""
    credentials_encrypted: bool = False
    """The proxy credentials look encrypted by the vendor's utility: the auditor cannot
    use them (never tries to decrypt), so a proxy's 407 says nothing about the agent."""
    ca_bundle: bool = False
    """The agent's proxy CA bundle exists (the probe trusted it too)."""
    path: ProbePath = ProbePath.SESSION
    notes: tuple[str, ...] = ()
    """Why something could not be told, or was read with doubts (bounded, masked)."""

    @property
    def proxy(self) -> str:
        """The proxy the agent tries first (masked), "" for none."""
        return self.proxies[0] if self.proxies else ""


@dataclass(frozen=True)
class AuditedHost:
    """A host the probe ran on: one observation per target, in target order."""

    host: Host
    observations: tuple[Observation, ...]
    duration: float = 0.0
    facts: Mapping[str, str] = field(default_factory=_empty, compare=False)
    runner: str = ""
    agent: AgentFacts | None = None
    """What the probe found about the Qualys agent (masked); None when it did not ask."""
    warnings: tuple[str, ...] = ()
    """Trust weakened for this host on the user's say-so (e.g. TLS validation off)."""

    @property
    def audited(self) -> bool:
        return True

    @property
    def skipped(self) -> bool:
        return False


@dataclass(frozen=True)
class UnauditedHost:
    """A host that could not be audited; it says nothing about the allow-list."""

    host: Host
    outcome: HostOutcome
    detail: str = ""
    duration: float = 0.0
    runner: str = ""
    warnings: tuple[str, ...] = ()
    """Trust weakened for this host on the user's say-so (e.g. TLS validation off)."""

    @property
    def audited(self) -> bool:
        return False

    @property
    def skipped(self) -> bool:
        """True for a host the auditor does not audit by design (see `Host.skip`)."""
        return self.outcome is HostOutcome.SKIPPED


HostResult = AuditedHost | UnauditedHost


# A probe's records are a few hundred bytes per target; anything far beyond this is a
# hostile or broken host, and keeping it would let one host exhaust the auditor's memory.
MAX_OUTPUT_BYTES = 1 << 20


@dataclass(frozen=True)
class ProbeJob:
    """What to run on a host.

    `script` is, on every platform, the whole probe program as the host's interpreter runs
    it: fixed probe source with its data (the URLs, the settings) carried as inert data, never
    spliced into code. POSIX sh source ends in a quoted here-document of data lines;
    PowerShell source holds one base64 literal.

    `command` starts the interpreter that reads `script` on its standard input (POSIX:
    `/bin/sh -s`); it is empty when the transport has its own way of handing the script
    over (WinRM passes PowerShell source to powershell.exe as -EncodedCommand).
    """

    script: str
    command: str = ""

    @property
    def stdin(self) -> bytes:
        """What the transport writes to `command`'s standard input: the script, if piped."""
        return self.script.encode() if self.command else b""


@dataclass(frozen=True)
class RawOutput:
    """What came back from one probe session, cut at MAX_OUTPUT_BYTES."""

    stdout: bytes
    stderr: bytes
    exit_status: int | None
    truncated: bool = False


@dataclass(frozen=True)
class RunInfo:
    """What a report says about the run itself. Holds no secrets."""

    run_id: str
    started: str
    finished: str = ""
    duration: float = 0.0
    inventory: str = ""
    targets: tuple[Target, ...] = ()
    tool_version: str = ""
    runners: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    interrupted: bool = False


class Results(Protocol):
    """A run's host results, one per inventory host, that can be iterated again and again.

    A tuple is one (small runs, tests); at fleet scale it is a source read lazily from the
    results file or the history (`auditor.results.ResultsFile`), so no more than one host's
    result is in memory at a time. Each iteration yields every host once, in the same order.
    """

    def __iter__(self) -> Iterator[HostResult]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class AuditRun:
    """A finished (or interrupted) run: metadata plus exactly one result per inventory host.

    `totals` holds the run's aggregate counters (an `auditor.aggregate.Tally`) when whoever
    made the run kept them while the results went by, so that reporters need not count again;
    None means "count them from `results`"."""

    info: RunInfo
    results: Results
    totals: object = field(default=None, compare=False, repr=False)
