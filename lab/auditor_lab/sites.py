"""A multi-site layer over a running lab: sites whose SSH answers only their own runners.

On top of the lab's hosts (`auditor_lab.fleet`), this adds:

- a broker namespace running a real `redis-server` that requires a password (the password
  is written to a 0600 file and to redis's 0600 config, never to a command line);
- one namespace per site runner, on the lab bridge;
- in every host of a site, an nft table that resets SSH connections from anywhere but that
  site's runner namespaces, so a host audited from the wrong place cannot pass unnoticed;
- an inventory naming each host's site with `auditor_site`.

Everything it makes is named with the lab prefix, so `auditor-lab down` removes what a
crashed test left behind; `sites_down` removes it all and keeps the lab's own hosts as they
were.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from auditor_lab.errors import LabError
from auditor_lab.fleet import LabInfo
from auditor_lab.netns import (
    Proc,
    alive,
    configure_namespace,
    create_namespaces,
    delete_links,
    delete_namespaces,
    identify,
    lab_namespaces,
    load_nft,
    run,
    start_in_namespace,
    terminate,
    tool,
)
from auditor_lab.render import _host_line, _kind_vars
from auditor_lab.spec import PREFIX, SSH_PORT, HostKind

BROKER_NAMESPACE = f"{PREFIX}-broker"
BROKER_ADDRESS = "10.213.200.1"
BROKER_PORT = 6379
_RUNNER_NET = "10.213.200"
_RUNNER_FIRST = 10
SITE_TABLE = f"{PREFIX}_sites"
"""The nft table (in each site host's namespace) that keeps SSH for the site's runners."""
READY_WAIT = 60.0


@dataclass(frozen=True)
class SiteLab:
    """The multi-site layer that is up: where the broker is and who may reach which host."""

    directory: Path
    inventory: Path
    broker_url: str
    password_file: Path
    broker: Proc
    sites: Mapping[str, tuple[str, ...]]
    """Site -> the lab host names in it."""
    runners: Mapping[str, tuple[str, ...]]
    """Site -> its runner namespaces (possibly none: a site nobody serves)."""
    runner_addresses: Mapping[str, str]
    host_namespaces: tuple[str, ...]
    known_hosts: Path
    key: Path

    def password(self) -> str:
        return self.password_file.read_text().strip()


def _runner_namespace(site: str, index: int) -> str:
    return f"{PREFIX}-r-{site[:6]}-{index}"


def _links(namespaces: Sequence[str]) -> dict[str, str]:
    """The root end of each namespace's veth: short (15 characters at most), and apart from
    the names the fleet gives its hosts' links."""
    return {ns: f"{PREFIX}st{i}" for i, ns in enumerate(namespaces)}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def sites_up(
    lab: LabInfo,
    directory: Path,
    sites: Mapping[str, Sequence[str]],
    runners: Mapping[str, int],
) -> SiteLab:
    """Build the layer: `sites` maps a site to lab host names (Linux hosts), `runners` a
    site to how many runner namespaces it gets (0 or absent: none)."""
    if tool("redis-server") is None:
        raise LabError("redis-server: not found (make sysdeps installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    runner_ns: dict[str, tuple[str, ...]] = {
        site: tuple(_runner_namespace(site, i + 1) for i in range(runners.get(site, 0)))
        for site in sites
    }
    addresses: dict[str, str] = {}
    for i, ns in enumerate(n for names in runner_ns.values() for n in names):
        addresses[ns] = f"{_RUNNER_NET}.{_RUNNER_FIRST + i}"
    namespaces = [BROKER_NAMESPACE, *addresses]
    host_namespaces: list[str] = []
    try:
        create_namespaces(list(_links(namespaces).items()))
        configure_namespace(BROKER_NAMESPACE, BROKER_ADDRESS)
        for ns, address in addresses.items():
            configure_namespace(ns, address)
        for site, names in sites.items():
            allowed = [addresses[ns] for ns in runner_ns[site]] or ["127.0.0.127"]
            for name in names:
                spec = lab.host(name)
                if spec.kind not in (HostKind.LINUX, HostKind.WINDOWS):
                    raise LabError(f"{name}: only Linux and Windows lab hosts can be in a site")
                # The management port of the host's kind: SSH, or WS-Management.
                port = SSH_PORT if spec.kind is HostKind.LINUX else spec.port
                load_nft(spec.namespace, _site_rules(allowed, port))
                host_namespaces.append(spec.namespace)
        # Addresses of an earlier layer are reused with new interfaces: a neighbour entry
        # remembered from it points at a MAC that no longer exists (connections to the
        # broker then time out until the entry ages out). Forget them everywhere they live.
        _flush_neighbours(host_namespaces)
        password = secrets.token_urlsafe(24)
        password_file = directory / "broker_password"
        _write_private(password_file, password + "\n")
        broker = _start_broker(directory, password)
        inventory = directory / "sites.ini"
        inventory.write_text(_inventory(lab, sites))
    except BaseException:
        _remove(host_namespaces, namespaces)
        raise
    site_lab = SiteLab(
        directory=directory,
        inventory=inventory,
        broker_url=f"redis://{BROKER_ADDRESS}:{BROKER_PORT}/0",
        password_file=password_file,
        broker=broker,
        sites={site: tuple(names) for site, names in sites.items()},
        runners=runner_ns,
        runner_addresses=addresses,
        host_namespaces=tuple(host_namespaces),
        known_hosts=lab.known_hosts,
        key=lab.key,
    )
    (directory / "sites.json").write_text(
        json.dumps(
            {
                "broker_url": site_lab.broker_url,
                "broker_pid": broker.pid,
                "broker_start": broker.start,
                "inventory": str(inventory),
                "password_file": str(password_file),
                "sites": site_lab.sites,
                "runners": site_lab.runners,
                "host_namespaces": host_namespaces,
            },
            indent=2,
        )
    )
    return site_lab


def _flush_neighbours(namespaces: Sequence[str]) -> None:
    subnet = f"{_RUNNER_NET}.0/24"
    run(["ip", "neigh", "flush", "to", subnet], check=False)
    for ns in namespaces:
        run(["ip", "-n", ns, "neigh", "flush", "to", subnet], check=False)


def _site_rules(allowed: Sequence[str], port: int = SSH_PORT) -> str:
    # The site's segment firewall: the management port (SSH or WinRM) from the site's
    # runners only; anyone else is reset (a reset rather than a drop keeps a wrong-place
    # attempt quick to see in a test).
    return (
        f"table inet {SITE_TABLE} {{\n"
        "  chain in {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    tcp dport {port} ip saddr != {{ {', '.join(allowed)} }} reject with tcp reset\n"
        "  }\n"
        "}\n"
    )


def _inventory(lab: LabInfo, sites: Mapping[str, Sequence[str]]) -> str:
    out = ["# The lab's hosts by site: each site's SSH and WinRM answer only its own runners."]
    kinds: dict[HostKind, list[str]] = {}
    for site, names in sites.items():
        out += ["", f"[{site}]"]
        for name in names:
            spec = lab.host(name)
            kinds.setdefault(spec.kind, []).append(name)
            # The lab's own host line: a Windows host's own WinRM settings (HTTPS, pwsh).
            out.append(_host_line(spec, str(lab.ca_cert)))
        out += ["", f"[{site}:vars]", f"auditor_site={site}"]
    for kind, names in kinds.items():
        out += ["", f"[{kind}]", *names]
        variables = _kind_vars(kind, str(lab.key))
        out += ["", f"[{kind}:vars]", *(f"{k}={v}" for k, v in variables.items())]
    return "\n".join(out) + "\n"


def _start_broker(directory: Path, password: str) -> Proc:
    """redis-server in the broker namespace, password in its 0600 config file only; returns
    once it accepts connections."""
    conf = directory / "redis.conf"
    _write_private(
        conf,
        "\n".join(
            [
                f"bind {BROKER_ADDRESS}",
                f"port {BROKER_PORT}",
                f"requirepass {password}",
                'save ""',
                "appendonly no",
                f"dir {directory}",
                "daemonize no",
                "loglevel notice",
                "",
            ]
        ),
    )
    log = directory / "redis.log"
    server = tool("redis-server") or "redis-server"
    proc = start_in_namespace(BROKER_NAMESPACE, "broker", [server, str(conf)], log)
    found = identify(proc.pid, "redis-server")
    if found is None:
        raise LabError(f"redis-server exited at once: {_tail(log)}")
    _wait_for_line(log, "Ready to accept connections", proc)
    return found


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise LabError(f"redis-server stopped: {_tail(log)}")
        time.sleep(0.05)
    raise LabError(f"redis-server not ready after {READY_WAIT:.0f} s: {_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:])
    except OSError:
        return "(no log)"


def start_runner(
    site_lab: SiteLab,
    site: str,
    index: int,
    name: str,
    *extra: str,
    concurrency: int = 2,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`auditor worker` for `site` in the site's runner namespace number `index` (from 1),
    in its own session (its pid is its process group). The broker password reaches it in
    the environment, never on its command line; `env` adds variables (a test's)."""
    namespace = site_lab.runners[site][index - 1]
    auditor = Path(sys.executable).with_name("auditor")
    argv = [
        str(auditor),
        "worker",
        "--broker",
        site_lab.broker_url,
        "--site",
        site,
        "--name",
        name,
        "--concurrency",
        str(concurrency),
        "--known-hosts",
        str(site_lab.known_hosts),
        *extra,
    ]
    environment = {
        **(env or {}),
        "AUDITOR_BROKER_PASSWORD": site_lab.password(),
        "HOME": str(site_lab.directory),
    }
    log = site_lab.directory / f"runner-{name}.log"
    return start_in_namespace(namespace, name, argv, log, environment)


DEMO_RUNNERS = {"site_a": 2, "site_b": 1, "site_c": 1}
"""`auditor-lab up --sites`: the design fleet's Linux sites, two runners in site_a, one in
each other site."""


def demo_layout(lab: LabInfo) -> dict[str, tuple[str, ...]]:
    """The lab's own Linux sites (site_a, site_b, site_c) with their hosts."""
    sites: dict[str, list[str]] = {}
    for spec in lab.hosts:
        if spec.kind is HostKind.LINUX and spec.site in DEMO_RUNNERS:
            sites.setdefault(spec.site, []).append(spec.name)
    return {site: tuple(names) for site, names in sites.items()}


def demo_up(lab: LabInfo, directory: Path) -> tuple[SiteLab, list[str]]:
    """The multi-site demo: the layer over the lab's Linux sites and its runners, started
    detached (`auditor-lab down` stops them with their namespaces). Returns the layer and
    the runner names."""
    site_lab = sites_up(lab, directory, demo_layout(lab), DEMO_RUNNERS)
    names: list[str] = []
    extra = ["--password-file", str(lab.ssh_password)] if lab.ssh_password else []
    for site, namespaces in site_lab.runners.items():
        for index in range(1, len(namespaces) + 1):
            name = f"{site.replace('_', '-')}-{index}"
            start_runner(site_lab, site, index, name, *extra)
            names.append(name)
    return site_lab, names


def pause_broker(site_lab: SiteLab) -> None:
    """Stop the broker process (SIGSTOP): connections hang as if the network broke."""
    if alive(site_lab.broker):
        os.kill(site_lab.broker.pid, signal.SIGSTOP)


def resume_broker(site_lab: SiteLab) -> None:
    if alive(site_lab.broker):
        os.kill(site_lab.broker.pid, signal.SIGCONT)


def sites_down(site_lab: SiteLab) -> None:
    """Stop the broker and every runner, remove the namespaces and the hosts' site rules."""
    resume_broker(site_lab)
    terminate([site_lab.broker])
    namespaces = [BROKER_NAMESPACE, *site_lab.runner_addresses]
    _remove(list(site_lab.host_namespaces), namespaces)


def _remove(host_namespaces: Sequence[str], namespaces: Sequence[str]) -> None:
    from auditor_lab.netns import namespace_members

    present = set(lab_namespaces())
    ours = [ns for ns in namespaces if ns in present]
    terminate(namespace_members(ours))
    for ns in host_namespaces:
        if ns in present:
            run(
                ["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", SITE_TABLE],
                check=False,
            )
    delete_namespaces(ours)
    present_links = set(os.listdir("/sys/class/net"))
    delete_links([link for link in _links(namespaces).values() if link in present_links])


__all__ = [
    "BROKER_ADDRESS",
    "SiteLab",
    "pause_broker",
    "resume_broker",
    "sites_down",
    "sites_up",
    "start_runner",
]
