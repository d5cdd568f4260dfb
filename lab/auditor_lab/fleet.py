"""`auditor-lab up | down | status`: build the lab from the design table, and take it away.

`lab_up` records everything it is about to make in DIR/state.json *before* making it, so
`lab_down` can undo a crashed `up`; `lab_down` also sweeps anything named with the lab prefix
(namespaces, links, /etc/netns entries, root nft tables, /dev/shm scratch folders) and every
process inside a lab namespace or listening on a lab address, so it works even without the
state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor_lab import agent, netns, pki, render
from auditor_lab.errors import LabError
from auditor_lab.netns import Proc
from auditor_lab.spec import (
    BRIDGE,
    CATALOG_NAMES,
    CDN_ADDRESS,
    DENY_PROXY_PORT,
    DENY_PROXY_URL,
    HTTP_PORT,
    HTTPS_PORT,
    INSPECT_PROXY_PORT,
    INSPECT_PROXY_URL,
    INTERCEPT_ADDRESS,
    INTERCEPT_CA_NAME,
    INTERCEPT_CA_ORG,
    LAB_CA_NAME,
    LAB_WINRM_USER,
    PREFIX,
    PROBE_URL,
    PROXY_PORT,
    PROXY_URL,
    HostKind,
    HostSpec,
    KnownHost,
    fleet,
)

Log = Callable[[str], None]

STATE_FILE = "state.json"
WINRM_PASSWORD_FILE = "winrm_password"  # noqa: S105 - a file name, not a secret
SSH_PASSWORD_FILE = "ssh_password"  # noqa: S105 - a file name, not a secret
POINTER = Path("/run/auditor-lab/current")
"""Names the directory of the lab that is up, so `lab_down()` needs no argument."""
SHM = Path("/dev/shm")
SSHD_PRIVSEP = Path("/run/sshd")
"""sshd refuses to start without its privilege separation directory, which only the
service manager creates; on a machine where sshd never ran as a service it is missing."""

_MARKER = render.LAB_MARKER
# Everything `up` writes in the lab directory; `down` removes exactly these (and only from a
# directory whose state file carries the lab's marker).
_ENTRIES = (
    STATE_FILE,
    f".{STATE_FILE}.tmp",  # left behind when up is killed while it rewrites the state
    "lab.json",
    "lab.ini",
    "known_hosts",
    "id_ed25519",
    "id_ed25519.pub",
    "authorized_keys",
    "pki",
    "hosts",
    "etc-ssl",
    "nocurl-bin",
    "session-home",
    "services.json",
    "services.log",
    "services.pid",
    "services.ready",
    WINRM_PASSWORD_FILE,
    SSH_PASSWORD_FILE,
)
_HIDDEN_CLIENTS = ("curl", "wget", "python3")
_READY_TIMEOUT = 30.0
_WORKERS = 16


def _quiet(_message: str) -> None:
    return None


# --- public data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabServices:
    """Where the root-namespace services listen."""

    cdn_https: str = f"{CDN_ADDRESS}:{HTTPS_PORT}"
    cdn_http: str = f"{CDN_ADDRESS}:{HTTP_PORT}"
    proxy: str = PROXY_URL
    deny_proxy: str = DENY_PROXY_URL
    intercept: str = f"{INTERCEPT_ADDRESS}:{HTTPS_PORT}"
    inspect_proxy: str = INSPECT_PROXY_URL

    def as_dict(self) -> dict[str, str]:
        return {
            "cdn_https": self.cdn_https,
            "cdn_http": self.cdn_http,
            "proxy": self.proxy,
            "deny_proxy": self.deny_proxy,
            "intercept": self.intercept,
            "inspect_proxy": self.inspect_proxy,
        }


@dataclass(frozen=True)
class LabInfo:
    """A lab that is up: its files, its hosts (with expected outcomes) and its services."""

    directory: Path
    inventory: Path
    known_hosts: Path
    key: Path
    lab_json: Path
    ca_cert: Path
    intercept_ca_cert: Path
    services_log: Path
    hosts: tuple[HostSpec, ...]
    services: LabServices = field(default_factory=LabServices)
    url: str = PROBE_URL
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    winrm_password: Path | None = None
    """DIR/winrm_password (mode 0600): the password of `winrm_user` on the Windows hosts."""
    winrm_user: str = LAB_WINRM_USER
    ssh_password: Path | None = None
    """DIR/ssh_password (mode 0600): root's password on the `password_login` hosts."""

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    service: str
    namespace: bool
    process: bool
    port_open: bool

    @property
    def healthy(self) -> bool:
        """As designed: namespace present; service running and listening, or nothing open."""
        if self.service == "none":
            return self.namespace and not self.port_open
        return self.namespace and self.process and self.port_open


@dataclass(frozen=True)
class LabStatus:
    directory: Path
    up: bool
    bridge: bool
    services_process: bool
    listeners: dict[str, bool]
    hosts: tuple[HostStatus, ...]

    @property
    def healthy(self) -> bool:
        return (
            self.up
            and self.bridge
            and self.services_process
            and all(self.listeners.values())
            and all(h.healthy for h in self.hosts)
        )


# --- what runs in a namespace ----------------------------------------------------------------


@dataclass(frozen=True)
class HostContext:
    """What a service starter gets: the host, the lab directory and the host's own folder."""

    host: HostSpec
    directory: Path
    host_dir: Path


ServiceStarter = Callable[[HostContext], "subprocess.Popen[bytes] | None"]
"""Starts a host's management service in its namespace (via `netns.start_in_namespace`) and
returns the process, or None when nothing is to run."""


def _start_sshd(ctx: HostContext) -> subprocess.Popen[bytes] | None:
    sshd = netns.tool("sshd")
    assert sshd is not None  # preflight checked
    argv = [
        sshd,
        "-D",
        "-f",
        str(ctx.host_dir / "sshd_config"),
        "-E",
        str(ctx.host_dir / "sshd.log"),
    ]
    return netns.start_in_namespace(
        ctx.host.namespace,
        ctx.host.name,
        agent.sshd_argv(ctx.host, ctx.host_dir, argv),
        ctx.host_dir / "sshd.log",
    )


def _start_nothing(ctx: HostContext) -> subprocess.Popen[bytes] | None:
    return None


_STARTERS: dict[str, ServiceStarter] = {"sshd": _start_sshd, "none": _start_nothing}


def _start_recorded(
    state: _State, directory: Path, host: HostSpec
) -> subprocess.Popen[bytes] | None:
    """Start the host's management service and record its PID in the lab's state."""
    proc = _STARTERS[host.service](HostContext(host, directory, directory / "hosts" / host.name))
    if proc is not None:
        found = netns.identify(proc.pid, f"{host.service}:{host.name}")
        if found is not None:
            state.add_process(found)
    return proc


def restart_service(directory: Path, host: HostSpec) -> None:
    """Start a lab host's service again (after a test killed it), recorded in place of the
    old one so that `down` and status checks find it."""
    state = _State.load(directory)
    if state is None:
        raise LabError(f"no lab in {directory}")
    _start_recorded(state, directory, host)


def register_service(name: str, starter: ServiceStarter) -> None:
    """Make `HostSpec.service == name` start `starter` (e.g. a WS-Management endpoint)."""
    _STARTERS[name] = starter


# --- preflight and paths ---------------------------------------------------------------------


def preflight() -> list[str]:
    """Why the lab cannot be built on this machine (empty when it can)."""
    if not sys.platform.startswith("linux"):
        return ["the lab needs Linux (network namespaces)"]
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (it creates network namespaces and a bridge)")
    missing = [t for t in ("ip", "nft", "sshd", "unshare") if netns.tool(t) is None]
    if missing:
        problems.append(
            f"missing tools: {', '.join(missing)} (packages iproute2, nftables, "
            "openssh-server, util-linux; `make sysdeps` installs them)"
        )
    return problems


def _lab_dir(directory: Path) -> Path:
    directory = directory.expanduser().resolve()
    bad = set(str(directory)) & set("\"'%\\\n\r\t")
    if bad:
        raise LabError(f"lab directory {directory}: characters {sorted(bad)} are not supported")
    return directory


def _is_lab_dir(directory: Path) -> bool:
    if _State.load(directory) is not None:
        return True
    try:
        desc = json.loads((directory / "lab.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(desc, dict) and desc.get("marker") == _MARKER


def _write_pointer(directory: Path) -> None:
    POINTER.parent.mkdir(parents=True, exist_ok=True)
    POINTER.write_text(f"{directory}\n")


def _read_pointer() -> Path | None:
    try:
        text = POINTER.read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


# --- state -----------------------------------------------------------------------------------


class _State:
    """DIR/state.json, rewritten (atomically) each time `up` is about to make something."""

    def __init__(self, directory: Path, data: dict[str, Any] | None = None) -> None:
        self.path = directory / STATE_FILE
        self.data: dict[str, Any] = data or {
            "marker": _MARKER,
            "directory": str(directory),
            "complete": False,
            "bridge": "",
            "namespaces": [],
            "links": [],
            "etc_netns": [],
            "scratch": [],
            "processes": [],
        }
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path) -> _State | None:
        try:
            data = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("marker") != _MARKER:
            return None
        return cls(directory, data)

    def flush(self) -> None:
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def record(self, key: str, values: Sequence[str]) -> None:
        with self._lock:
            self.data[key] = list(self.data[key]) + list(values)
            self.flush()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
            self.flush()

    def add_process(self, proc: Proc) -> None:
        """Record `proc`, in place of any earlier process in the same role."""
        with self._lock:
            kept = [p for p in self.data["processes"] if p["role"] != proc.role]
            kept.append({"pid": proc.pid, "start": proc.start, "role": proc.role})
            self.data["processes"] = kept
            self.flush()

    def processes(self) -> list[Proc]:
        return [
            Proc(int(p["pid"]), int(p["start"]), str(p["role"])) for p in self.data["processes"]
        ]

    def strings(self, key: str) -> list[str]:
        return [str(v) for v in self.data.get(key, [])]


# --- up --------------------------------------------------------------------------------------


def lab_up(directory: Path, extra_hosts: int = 0, log: Log | None = None) -> LabInfo:
    """Build the lab in `directory`: the design hosts plus `extra_hosts` scale hosts.

    A lab that is already up (here or elsewhere) is taken down first. Raises LabError with a
    clear message when the machine cannot host the lab or a step fails, after removing
    whatever this call made."""
    say = log or _quiet
    problems = preflight()
    if problems:
        raise LabError("cannot build the lab: " + "; ".join(problems))
    try:
        hosts = fleet(extra_hosts)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    unknown = sorted({h.service for h in hosts} - set(_STARTERS))
    if unknown:
        raise LabError(f"no starter registered for host service(s): {', '.join(unknown)}")
    directory = _lab_dir(directory)
    if directory.exists() and not _is_lab_dir(directory):
        clash = [n for n in _ENTRIES if (directory / n).exists()]
        if clash:
            raise LabError(
                f"{directory} already holds {', '.join(clash)}, which no lab made; "
                "choose an empty or new directory"
            )
    earlier = lab_down(directory)
    if earlier:
        say(f"removed an earlier lab ({len(earlier)} items)")
    try:
        return _build(directory, hosts, extra_hosts, say)
    except BaseException as exc:
        say("lab up failed; removing what it made")
        with contextlib.suppress(Exception):
            lab_down(directory)
        if isinstance(exc, LabError) or not isinstance(exc, Exception):
            raise
        raise LabError(f"lab up failed: {type(exc).__name__}: {exc}") from exc


class _Clock:
    def __init__(self, say: Log) -> None:
        self.say = say
        self.start = self.last = time.monotonic()
        self.timings: dict[str, float] = {}

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.timings[what] = round(now - self.last, 3)
        self.say(f"{what}: {now - self.last:.2f}s")
        self.last = now

    def total(self) -> None:
        self.timings["total"] = round(time.monotonic() - self.start, 3)


def _build(directory: Path, hosts: list[HostSpec], extra_hosts: int, say: Log) -> LabInfo:
    clock = _Clock(say)
    directory.mkdir(parents=True, exist_ok=True)
    state = _State(directory)
    state.flush()
    _write_pointer(directory)

    key_path = directory / "id_ed25519"
    lab_key = pki.ssh_key()
    lab_key.write(key_path, "auditor-lab")
    (directory / "authorized_keys").write_text(f"{lab_key.public} auditor-lab\n")
    pki_dir = directory / "pki"
    pki_dir.mkdir()
    lab_ca = pki.make_authority(LAB_CA_NAME, "Fleet Auditor Lab")
    cdn_key, cdn_cert = pki.issue_server_cert(lab_ca, CATALOG_NAMES, (CDN_ADDRESS,))
    contoso = pki.make_authority(INTERCEPT_CA_NAME, INTERCEPT_CA_ORG)
    icp_key, icp_cert = pki.issue_server_cert(contoso, CATALOG_NAMES, (INTERCEPT_ADDRESS,))
    (pki_dir / "lab-ca.pem").write_bytes(pki.cert_pem(lab_ca.cert))
    (pki_dir / "intercept-ca.pem").write_bytes(pki.cert_pem(contoso.cert))
    (pki_dir / "cdn.pem").write_bytes(pki.cert_pem(cdn_cert))
    pki.write_private(pki_dir / "cdn.key", pki.key_pem(cdn_key))
    (pki_dir / "intercept.pem").write_bytes(pki.cert_pem(icp_cert))
    pki.write_private(pki_dir / "intercept.key", pki.key_pem(icp_key))
    _trust_store(directory / "etc-ssl", pki.cert_pem(lab_ca.cert))
    (directory / "session-home").mkdir()
    if any(h.hide_http_clients for h in hosts):
        _nocurl_bin(directory / "nocurl-bin", state)
    # Every Linux host has a host key in known_hosts, even one whose sshd is not started.
    host_keys = {h.name: pki.ssh_key() for h in hosts if h.kind is HostKind.LINUX}
    _host_files(directory, hosts, host_keys)
    _windows_files(directory, hosts, lab_ca)
    shadow = _ssh_password(directory, hosts)
    _write_descriptions(directory, hosts, host_keys, extra_hosts)
    clock.lap("keys, certificates and files")

    if any(h.service == "sshd" for h in hosts) and not SSHD_PRIVSEP.exists():
        state.set("made_privsep", True)
        SSHD_PRIVSEP.mkdir(mode=0o755)
    agent.make_etc_qualys(hosts)
    state.set("bridge", BRIDGE)
    netns.create_bridge()
    services = _start_services(directory, hosts, state)
    links = {h.name: f"{PREFIX}v{i}" for i, h in enumerate(hosts)}
    state.record("namespaces", [h.namespace for h in hosts])
    state.record("links", list(links.values()))
    state.record("etc_netns", [str(netns.ETC_NETNS / h.namespace) for h in hosts])
    for h in hosts:
        _etc_netns(directory, h, shadow if h.password_login else None)
    netns.create_namespaces([(h.namespace, links[h.name]) for h in hosts])
    clock.lap(f"bridge and {len(hosts)} namespaces")

    started: dict[str, subprocess.Popen[bytes]] = {}
    lock = threading.Lock()

    def bring_up(host: HostSpec) -> None:
        netns.configure_namespace(host.namespace, host.address)
        if host.nft_rules:
            netns.load_nft(host.namespace, render.nft_ruleset(host))
        proc = _start_recorded(state, directory, host)
        if proc is not None:
            with lock:
                started[host.name] = proc

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for future in [pool.submit(bring_up, h) for h in hosts]:
            future.result()
    clock.lap("addresses, nft rules and services started")

    _wait_ready(directory, hosts, started, services)
    clock.lap("all ports answering")
    state.set("complete", True)
    clock.total()
    return LabInfo(
        directory=directory,
        inventory=directory / "lab.ini",
        known_hosts=directory / "known_hosts",
        key=key_path,
        lab_json=directory / "lab.json",
        ca_cert=pki_dir / "lab-ca.pem",
        intercept_ca_cert=pki_dir / "intercept-ca.pem",
        services_log=directory / "services.log",
        hosts=tuple(hosts),
        timings=clock.timings,
        winrm_password=_winrm_password_path(directory, hosts),
        ssh_password=_ssh_password_path(directory, hosts),
    )


def _trust_store(target: Path, lab_ca_pem: bytes) -> None:
    """A copy of /etc/ssl (symlinks kept, private keys left out) with the lab CA appended to
    the bundle curl, wget and Python read; namespaces see it as their /etc/ssl."""
    source = Path("/etc/ssl")
    if source.is_dir():
        shutil.copytree(
            source,
            target,
            symlinks=True,
            ignore=lambda d, names: names if Path(d).name == "private" else [],
        )
    (target / "certs").mkdir(parents=True, exist_ok=True)
    bundle = target / "certs" / "ca-certificates.crt"
    with open(bundle, "ab") as f:
        f.write(b"\n# Auditor Lab Root CA (added by auditor-lab up)\n" + lab_ca_pem)
    (target / "certs" / "auditor-lab-ca.pem").write_bytes(lab_ca_pem)


def _nocurl_bin(target: Path, state: _State) -> None:
    """Symlinks to every command in /usr/bin and /bin except the HTTP clients a probe uses.

    A thousand-odd links cost a second or more on a busy disk, so they go to a tmpfs
    (/dev/shm, swept by `down` through the lab prefix) when there is one, and `target`
    links there."""
    folder = target
    if _is_tmpfs(SHM):
        folder = SHM / f"{PREFIX}-nocurl-{os.getpid()}-{time.monotonic_ns()}"
        state.record("scratch", [str(folder)])
        folder.mkdir()
        target.symlink_to(folder)
    else:
        folder.mkdir()
    for source in (Path("/usr/bin"), Path("/bin")):
        with contextlib.suppress(OSError):
            for entry in os.scandir(source):
                name = entry.name
                if any(name.startswith(c) for c in _HIDDEN_CLIENTS):
                    continue
                with contextlib.suppress(FileExistsError):
                    (folder / name).symlink_to(entry.path)


def _is_tmpfs(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(m.split()[1:3] == [str(path), "tmpfs"] for m in mounts if len(m.split()) > 2)


def _session_env(directory: Path, host: HostSpec) -> list[tuple[str, str]]:
    # HOME points at an empty folder so the machine's own root dotfiles (which may put other
    # tools on PATH, and cost time on every login) do not leak into lab hosts.
    env = [("HOME", str(directory / "session-home")), *host.session_env]
    if host.hide_http_clients:
        env.append(("PATH", str(directory / "nocurl-bin")))
    return env


def _host_files(directory: Path, hosts: list[HostSpec], keys: dict[str, pki.SshKey]) -> None:
    other_key = pki.ssh_key()
    for host in hosts:
        host_dir = directory / "hosts" / host.name
        host_dir.mkdir(parents=True)
        key = keys.get(host.name)
        if key is None:
            continue
        key.write(host_dir / "ssh_host_ed25519_key", f"root@{host.name}")
        if host.authorized:
            authorized = directory / "authorized_keys"
        else:
            authorized = host_dir / "authorized_keys"
            authorized.write_text(f"{other_key.public} not-the-lab-key\n")
        (host_dir / "sshd_config").write_text(
            render.sshd_config(host, host_dir, authorized, _session_env(directory, host))
        )


def _winrm_password_path(directory: Path, hosts: Sequence[HostSpec]) -> Path | None:
    if any(h.kind is HostKind.WINDOWS for h in hosts):
        return directory / WINRM_PASSWORD_FILE
    return None


def _windows_files(directory: Path, hosts: list[HostSpec], lab_ca: pki.Authority) -> None:
    """The Windows hosts' shared secret and certificates: a fresh password for the lab's
    WinRM user (DIR/winrm_password, 0600; each endpoint's own config gets a copy when it
    starts), and for an HTTPS endpoint a server certificate from the lab CA for its name
    and address."""
    path = _winrm_password_path(directory, hosts)
    if path is None:
        return
    pki.write_private(path, secrets.token_urlsafe(18).encode("ascii"))
    for host in hosts:
        if host.kind is HostKind.WINDOWS and host.winrm_https:
            host_dir = directory / "hosts" / host.name
            key, cert = pki.issue_server_cert(lab_ca, (host.name,), (host.address,))
            (host_dir / "winrm.pem").write_bytes(pki.cert_pem(cert))
            pki.write_private(host_dir / "winrm.key", pki.key_pem(key))


def _ssh_password_path(directory: Path, hosts: Sequence[HostSpec]) -> Path | None:
    if any(h.password_login for h in hosts):
        return directory / SSH_PASSWORD_FILE
    return None


def _ssh_password(directory: Path, hosts: Sequence[HostSpec]) -> str | None:
    """A fresh root password for the `password_login` hosts, written to DIR/ssh_password
    (0600); returns its crypt(3) hash for their shadow files, or None when there are none."""
    path = _ssh_password_path(directory, hosts)
    if path is None:
        return None
    password = secrets.token_urlsafe(18)
    pki.write_private(path, password.encode("ascii"))
    openssl = netns.tool("openssl")
    if openssl is None:
        raise LabError("openssl is needed to hash the lab's SSH password (package openssl)")
    # On stdin: a password never goes into a process's argv.
    done = subprocess.run(
        [openssl, "passwd", "-6", "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith("$6$"):
        raise LabError(f"openssl passwd failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _etc_netns(directory: Path, host: HostSpec, shadow: str | None = None) -> None:
    etc = netns.ETC_NETNS / host.namespace
    etc.mkdir(parents=True, exist_ok=True)
    if shadow is not None:
        # `ip netns exec` mounts this over /etc/shadow for the host's sshd alone.
        path = etc / "shadow"
        path.write_text(render.etc_shadow(shadow))
        path.chmod(0o600)
    agent.write_agent_files(
        host, directory / "hosts" / host.name, directory / "pki" / "intercept-ca.pem"
    )
    (etc / "hosts").write_text(render.etc_hosts(host))
    (etc / "resolv.conf").write_text(render.RESOLV_CONF)
    ssl = etc / "ssl"
    if not ssl.is_symlink():
        ssl.symlink_to(directory / "etc-ssl")


def _write_descriptions(
    directory: Path, hosts: list[HostSpec], keys: dict[str, pki.SshKey], extra_hosts: int
) -> None:
    wrong = pki.ssh_key()
    entries = [
        (h.address, (wrong if h.known_host is KnownHost.WRONG else keys[h.name]).public)
        for h in hosts
        if h.name in keys
    ]
    (directory / "known_hosts").write_text(render.known_hosts(entries))
    key = str(directory / "id_ed25519")
    header = [
        "The auditor lab's fleet, written by `auditor-lab up`; expected outcomes for",
        f"{PROBE_URL} are in lab.json next to this file.",
    ]
    ca_cert = str(directory / "pki" / "lab-ca.pem")
    (directory / "lab.ini").write_text(render.inventory(hosts, key, header, ca_cert))
    paths = {
        "directory": str(directory),
        "inventory": str(directory / "lab.ini"),
        "known_hosts": str(directory / "known_hosts"),
        "key": key,
        "ca_cert": ca_cert,
        "intercept_ca_cert": str(directory / "pki" / "intercept-ca.pem"),
        "services_log": str(directory / "services.log"),
    }
    password = _winrm_password_path(directory, hosts)
    if password is not None:
        paths["winrm_password"] = str(password)
        paths["winrm_user"] = LAB_WINRM_USER
    ssh_password = _ssh_password_path(directory, hosts)
    if ssh_password is not None:
        paths["ssh_password"] = str(ssh_password)
    (directory / "lab.json").write_text(
        render.lab_json(hosts, paths, LabServices().as_dict(), extra_hosts)
    )


def _start_services(
    directory: Path, hosts: list[HostSpec], state: _State
) -> subprocess.Popen[bytes]:
    pki_dir = directory / "pki"
    config = {
        "log": str(directory / "services.log"),
        "pid_file": str(directory / "services.pid"),
        "ready_file": str(directory / "services.ready"),
        "http503_sources": [h.address for h in hosts if h.cdn_status == 503],
        "listeners": [
            {
                "name": "cdn-https",
                "kind": "http",
                "address": CDN_ADDRESS,
                "port": HTTPS_PORT,
                "cert": str(pki_dir / "cdn.pem"),
                "key": str(pki_dir / "cdn.key"),
                "honour_503_list": True,
            },
            {
                "name": "cdn-http",
                "kind": "http",
                "address": CDN_ADDRESS,
                "port": HTTP_PORT,
                "honour_503_list": True,
            },
            {
                "name": "intercept",
                "kind": "http",
                "address": INTERCEPT_ADDRESS,
                "port": HTTPS_PORT,
                "cert": str(pki_dir / "intercept.pem"),
                "key": str(pki_dir / "intercept.key"),
            },
            {
                "name": "proxy",
                "kind": "connect-proxy",
                "address": CDN_ADDRESS,
                "port": PROXY_PORT,
                "upstream": f"{CDN_ADDRESS}:{HTTPS_PORT}",
            },
            {
                "name": "deny-proxy",
                "kind": "deny-proxy",
                "address": CDN_ADDRESS,
                "port": DENY_PROXY_PORT,
            },
            {
                # A TLS-inspecting proxy: every tunnel ends at the intercepting endpoint.
                "name": "inspect-proxy",
                "kind": "connect-proxy",
                "address": CDN_ADDRESS,
                "port": INSPECT_PROXY_PORT,
                "upstream": f"{INTERCEPT_ADDRESS}:{HTTPS_PORT}",
            },
        ],
    }
    config_path = directory / "services.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    # Run this very package, wherever the caller imported it from.
    package_root = netns.package_roots()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(directory / "services.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditor_lab.services", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=directory,
        )
    found = netns.identify(proc.pid, "services")
    if found is not None:
        state.add_process(found)
    return proc


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(
    directory: Path,
    hosts: list[HostSpec],
    started: dict[str, subprocess.Popen[bytes]],
    services: subprocess.Popen[bytes],
) -> None:
    """Wait until the services process is ready and every started service accepts TCP."""
    deadline = time.monotonic() + _READY_TIMEOUT
    ready = directory / "services.ready"
    while not ready.exists():
        if services.poll() is not None:
            raise LabError(
                f"the lab services exited ({services.returncode}): "
                f"{_tail(directory / 'services.log')}"
            )
        if time.monotonic() > deadline:
            raise LabError(f"the lab services did not start: {_tail(directory / 'services.log')}")
        time.sleep(0.02)
    waiting = [h for h in hosts if h.name in started]
    closed = asyncio.run(_wait_ports(waiting, deadline))
    if closed:
        problems = []
        for h in closed[:5]:
            proc = started[h.name]
            log = directory / "hosts" / h.name / f"{h.service}.log"
            if proc.poll() is not None:
                problems.append(f"{h.name}: {h.service} exited ({proc.returncode}): {_tail(log)}")
            else:
                problems.append(f"{h.name}: port {h.port} on {h.address} not open")
        more = f" (and {len(closed) - 5} more)" if len(closed) > 5 else ""
        raise LabError("lab hosts did not come up: " + "; ".join(problems) + more)


async def _port_open(address: str, port: int, timeout: float) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_ports(hosts: list[HostSpec], deadline: float) -> list[HostSpec]:
    """The hosts whose port is still closed at the deadline."""
    limit = asyncio.Semaphore(64)

    async def wait_one(host: HostSpec) -> bool:
        while True:
            async with limit:
                if await _port_open(host.address, host.port, 1.0):
                    return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)

    results = await asyncio.gather(*(wait_one(h) for h in hosts))
    return [h for h, ok in zip(hosts, results, strict=True) if not ok]


# --- down ------------------------------------------------------------------------------------


def lab_down(directory: Path | None = None, log: Log | None = None) -> list[str]:
    """Remove everything a lab made: processes (recorded, inside lab namespaces, or listening
    on lab addresses), namespaces, links, the bridge, root nft tables and /etc/netns entries
    named with the lab prefix, and the lab's files in `directory` (and in the directory of the
    lab that is up). Idempotent; returns what it removed."""
    say = log or _quiet
    if not sys.platform.startswith("linux"):
        return []
    if os.geteuid() != 0:
        raise LabError("lab down needs root (it removes network namespaces and a bridge)")
    dirs: list[Path] = []
    if directory is not None:
        dirs.append(directory.expanduser().resolve())
    pointed = _read_pointer()
    if pointed is not None and pointed not in dirs:
        dirs.append(pointed)
    states = [s for d in dirs if (s := _State.load(d)) is not None]
    removed: list[str] = []

    namespaces = sorted(
        set(netns.lab_namespaces())
        | {n for s in states for n in s.strings("namespaces") if (netns.NETNS_DIR / n).exists()}
    )
    procs: dict[int, Proc] = {}
    for proc in [
        *(p for s in states for p in s.processes()),
        *netns.namespace_members(namespaces),
        *netns.lab_listeners(),
    ]:
        procs.setdefault(proc.pid, proc)
    for proc in netns.terminate(list(procs.values())):
        removed.append(f"process {proc.pid} ({proc.role})")

    links_before = set(netns.lab_links())
    if namespaces:
        netns.delete_namespaces(namespaces)
        removed += [f"namespace {n}" for n in namespaces]
    # A veth goes with its namespace; delete any that remain, then the bridge.
    leftover = [n for n in netns.lab_links() if n != BRIDGE]
    if leftover:
        netns.delete_links(leftover)
    if BRIDGE in netns.lab_links():
        netns.delete_links([BRIDGE])
    links_after = set(netns.lab_links())
    removed += [f"link {n}" for n in sorted(links_before - links_after)]

    for family, table in netns.root_nft_tables():
        netns.delete_nft_table(family, table)
        removed.append(f"nft table {family} {table}")

    etc_dirs = {Path(p) for s in states for p in s.strings("etc_netns")} | set(netns.lab_etc_dirs())
    for path in sorted(etc_dirs):
        if path.parent == netns.ETC_NETNS and (path.exists() or path.is_symlink()):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    with contextlib.suppress(OSError):
        netns.ETC_NETNS.rmdir()  # only if empty

    scratch = {Path(p) for s in states for p in s.strings("scratch")}
    scratch |= set(SHM.glob(f"{PREFIX}-*"))
    for path in sorted(scratch):
        if path.parent == SHM and path.name.startswith(f"{PREFIX}-") and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))

    for d in dirs:
        if not _is_lab_dir(d):
            continue
        # The files that mark the folder as the lab's go last, so an interrupted down can be
        # run again.
        for name in sorted(_ENTRIES, key=lambda n: n in (STATE_FILE, "lab.json")):
            path = d / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(str(path))
        with contextlib.suppress(OSError):
            d.rmdir()  # only if the lab's files were all it held
    if any(s.data.get("made_privsep") for s in states):
        with contextlib.suppress(OSError):
            SSHD_PRIVSEP.rmdir()  # only if empty: an sshd started since may use it
            removed.append(str(SSHD_PRIVSEP))
    removed += agent.remove_etc_qualys()
    with contextlib.suppress(OSError):
        POINTER.unlink()
    with contextlib.suppress(OSError):
        POINTER.parent.rmdir()  # only if empty
    if removed:
        say(f"removed {len(removed)} items")
    return removed


# --- status ----------------------------------------------------------------------------------


def lab_status(directory: Path) -> LabStatus:
    """Which of the lab's hosts and services are up, from lab.json, the state file and real
    TCP connections to each listener."""
    directory = directory.expanduser().resolve()
    state = _State.load(directory)
    try:
        desc: dict[str, Any] = json.loads((directory / "lab.json").read_text())
    except (OSError, ValueError):
        desc = {}
    if state is None or not desc:
        return LabStatus(directory, False, False, False, {}, ())
    alive = {p.role: netns.alive(p) for p in state.processes()}
    present = set(netns.lab_namespaces())
    hosts = desc.get("hosts", {})
    listeners = {
        "cdn-https": (CDN_ADDRESS, HTTPS_PORT),
        "cdn-http": (CDN_ADDRESS, HTTP_PORT),
        "intercept": (INTERCEPT_ADDRESS, HTTPS_PORT),
        "proxy": (CDN_ADDRESS, PROXY_PORT),
        "deny-proxy": (CDN_ADDRESS, DENY_PROXY_PORT),
        "inspect-proxy": (CDN_ADDRESS, INSPECT_PROXY_PORT),
    }
    targets = [(h["address"], int(h["port"])) for h in hosts.values()] + list(listeners.values())
    opened = asyncio.run(_probe_ports(targets))
    host_rows = tuple(
        HostStatus(
            name=name,
            address=h["address"],
            service=h["service"],
            namespace=h["namespace"] in present,
            process=alive.get(f"{h['service']}:{name}", False),
            port_open=opened[(h["address"], int(h["port"]))],
        )
        for name, h in hosts.items()
    )
    return LabStatus(
        directory=directory,
        up=bool(state.data.get("complete")),
        bridge=BRIDGE in netns.lab_links(),
        services_process=alive.get("services", False),
        listeners={name: opened[addr] for name, addr in listeners.items()},
        hosts=host_rows,
    )


async def _probe_ports(targets: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    limit = asyncio.Semaphore(64)

    async def one(address: str, port: int) -> bool:
        async with limit:
            return await _port_open(address, port, 1.0)

    results = await asyncio.gather(*(one(a, p) for a, p in targets))
    return dict(zip(targets, results, strict=True))
