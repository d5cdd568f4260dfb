"""Plumbing for the lab: real `ip`, `nft` and `unshare` runs, and process bookkeeping.

Nothing here knows the fleet design; `auditor_lab.fleet` decides what to build. Processes are
identified by pid *and* start time (from /proc), so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from auditor_lab.errors import LabError
from auditor_lab.spec import BRIDGE, CDN_ADDRESS, INTERCEPT_ADDRESS, NETWORK, PREFIX

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PREFIXLEN = NETWORK.prefixlen


def tool(name: str) -> str | None:
    """Absolute path of a system tool (sbin included even when PATH lacks it), or None."""
    path = os.environ.get("PATH", "") + ":" + _SYSTEM_PATH
    return shutil.which(name, path=path)


def run(
    args: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a tool; raise LabError naming the command and its stderr when it fails."""
    try:
        proc = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(args)}: timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(args)} failed: {'; '.join(err[-3:]) or proc.returncode}")
    return proc


def ip_batch(lines: Iterable[str], *, namespace: str | None = None, force: bool = False) -> None:
    """Many `ip` commands in one process (`ip -batch -`), optionally inside a namespace."""
    args = ["ip"]
    if namespace:
        args += ["-n", namespace]
    if force:
        args.append("-force")
    text = "".join(f"{line}\n" for line in lines)
    if text:
        run([*args, "-batch", "-"], stdin=text, check=not force)


def create_bridge() -> None:
    """The lab bridge with the CDN/proxy address and the intercepting endpoint's address."""
    ip_batch(
        [
            f"link add {BRIDGE} type bridge",
            f"addr add {CDN_ADDRESS}/{_PREFIXLEN} dev {BRIDGE}",
            f"addr add {INTERCEPT_ADDRESS}/{_PREFIXLEN} dev {BRIDGE}",
            f"link set {BRIDGE} up",
        ]
    )


def create_namespaces(pairs: Sequence[tuple[str, str]]) -> None:
    """For each (namespace, link): the namespace, and a veth whose peer is `eth0` inside it
    and whose root end `link` is a port of the bridge. One `ip` process for all of them."""
    lines: list[str] = []
    for namespace, link in pairs:
        lines += [
            f"netns add {namespace}",
            f"link add {link} type veth peer name eth0 netns {namespace}",
            f"link set {link} master {BRIDGE} up",
        ]
    ip_batch(lines)


def configure_namespace(namespace: str, address: str) -> None:
    ip_batch(
        [
            f"addr add {address}/{_PREFIXLEN} dev eth0",
            "link set eth0 up",
            "link set lo up",
        ],
        namespace=namespace,
    )


def load_nft(namespace: str, ruleset: str) -> None:
    """Load an nftables ruleset with `nft` run inside the namespace."""
    run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], stdin=ruleset)


def start_in_namespace(
    namespace: str,
    hostname: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached inside the namespace, in its own UTS namespace named `hostname`,
    with stdout and stderr appended to `log`.

    `ip netns exec`, `unshare` and `sh` each exec the next, so the process's pid is the pid
    of `argv[0]` itself. The process sees the namespace's /etc/netns files as /etc. Its
    environment is a plain PATH plus `env`: nothing of the caller's (a proxy setting, say)
    leaks into a lab host."""
    script = 'printf %s "$0" > /proc/sys/kernel/hostname && exec "$@"'
    args = ["ip", "netns", "exec", namespace, "unshare", "--uts", "sh", "-c", script, hostname]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*args, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env={"PATH": _SYSTEM_PATH, "LANG": "C.UTF-8", **(env or {})},
        )
    return proc


def lab_namespaces() -> list[str]:
    """Named network namespaces whose name starts with the lab prefix."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(f"{PREFIX}-"))
    except FileNotFoundError:
        return []


def lab_links() -> list[str]:
    """Root-namespace network interfaces whose name starts with the lab prefix."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def lab_etc_dirs() -> list[Path]:
    try:
        return sorted(p for p in ETC_NETNS.iterdir() if p.name.startswith(f"{PREFIX}-"))
    except FileNotFoundError:
        return []


def root_nft_tables() -> list[tuple[str, str]]:
    """(family, name) of root-namespace nft tables whose name starts with the lab prefix."""
    if tool("nft") is None:
        return []
    out = run(["nft", "list", "tables"], check=False).stdout
    tables = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(PREFIX):
            tables.append((parts[1], parts[2]))
    return tables


def delete_namespaces(names: Sequence[str]) -> None:
    ip_batch([f"netns del {n}" for n in names], force=True)


def delete_links(names: Sequence[str]) -> None:
    ip_batch([f"link del {n}" for n in names], force=True)


def delete_nft_table(family: str, name: str) -> None:
    run(["nft", "delete", "table", family, name], check=False)


# --- processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A process the lab started or found: pid, start time (clock ticks after boot), role."""

    pid: int
    start: int
    role: str


def start_time(pid: int) -> int | None:
    """The process's start time from /proc/PID/stat, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(proc: Proc) -> bool:
    return start_time(proc.pid) == proc.start


def identify(pid: int, role: str) -> Proc | None:
    start = start_time(pid)
    return None if start is None else Proc(pid, start, role)


def terminate(procs: Sequence[Proc], grace: float = 3.0) -> list[Proc]:
    """SIGTERM each live process, SIGKILL what is left after `grace`; return those signalled.

    A process whose start time no longer matches (its pid was recycled) is left alone."""
    signalled = [p for p in procs if alive(p)]
    for p in signalled:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(signalled)
        if not any(alive(p) for p in signalled):
            break
        time.sleep(0.02)
    for p in signalled:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in signalled):
        _reap(signalled)
        time.sleep(0.02)
    _reap(signalled)
    return signalled


def _reap(procs: Sequence[Proc]) -> None:
    # Processes started by this very process (a test session) must be waited for, or they
    # linger as zombies; for anyone else's children waitpid fails harmlessly.
    for p in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(p.pid, os.WNOHANG)


def _pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def namespace_members(namespaces: Sequence[str]) -> list[Proc]:
    """Every process whose network namespace is one of these named namespaces."""
    wanted: dict[tuple[int, int], str] = {}
    for name in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_DIR / name)
            wanted[(st.st_dev, st.st_ino)] = name
    found: list[Proc] = []
    if not wanted:
        return found
    for pid in _pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        member = wanted.get((st.st_dev, st.st_ino))
        if member is not None and (proc := identify(pid, f"process in {member}")) is not None:
            found.append(proc)
    return found


def lab_listeners() -> list[Proc]:
    """Root-namespace processes with a TCP socket listening on a lab address (the services
    process, found without its pid file)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f, None)
        for line in f:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A":
                continue
            # /proc/net/tcp prints IPv4 addresses as host-order (little-endian) hex.
            if IPv4Address(bytes.fromhex(local.split(":")[0])[::-1]) in NETWORK:
                inodes.add(f"socket:[{inode}]")
    return _socket_owners(inodes) if inodes else []


def _socket_owners(inodes: set[str]) -> list[Proc]:
    found: list[Proc] = []
    own_net = os.stat("/proc/self/ns/net")
    for pid in _pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) != (own_net.st_dev, own_net.st_ino):
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in inodes:
                if (proc := identify(pid, "lab listener")) is not None:
                    found.append(proc)
                break
    return found


def package_roots() -> str:
    """PYTHONPATH that imports this very product and lab, wherever the caller imported them
    from, in a child process started in another namespace."""
    import auditor
    import auditor_lab

    roots = dict.fromkeys(
        str(Path(m.__file__ or "").resolve().parent.parent) for m in (auditor, auditor_lab)
    )
    return os.pathsep.join(roots)
