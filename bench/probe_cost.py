"""What the probe costs the audited host: `python -m bench.probe_cost` (root; the lab).

    python -m bench.probe_cost                # lone host + the 200-host lab
    BENCH_QUICK=1 python -m bench.probe_cost  # fewer sessions, a 50-host lab
    BENCH_SESSIONS, BENCH_HOSTS, BENCH_FORKS  # override the sizes

Figures, each against the issue's target:
- a lone lab host, sessions one after another (the host has the cores to itself): wall time
  and host CPU of one probe session with 1 URL and with 5 URLs, and their ratios;
- the host CPU of one probe session with 1 URL, next to a bare session (`/bin/sh -s` that
  exits at once: sshd's own share, which no probe change can lower);
- the lab (BENCH_HOSTS hosts, `audit` with --forks BENCH_FORKS): wall time and host CPU per
  host with 1 URL and with 5 URLs.
Each probe figure is measured for both ways the probe runs curl: every URL in one process
(curl 7.75 and later) and one process per URL (older curls).

Host CPU is what the kernel accounts to the lab hosts' sshd listeners and everything they
start: every connection's sshd processes, the login shell, the probe's sh, curl and any
other tool, orphans included. The listeners are moved into a cpuacct cgroup of their own
(cgroup v1), whose cpuacct.usage counts every task in it; without one, the listeners' own
and reaped children's times from /proc are used, and the table says so. The CDN's and the
client's CPU are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import ProcCpu
from bench.run import (
    BENCH_DIR,
    URL,
    URLS_5,
    lab_lock,
    lab_pids,
    say,
)

CPUACCT = Path("/sys/fs/cgroup/cpuacct")
RESULTS = BENCH_DIR / "probe-cost-results.json"
TARGETS = {
    "lone_wall_5_over_1": 1.2,
    "lone_cpu_5_over_1": 1.5,
    "lab_wall_5_over_1": 1.5,
    "host_cpu_ms_1_url": 30.0,
}


@dataclass(frozen=True)
class Config:
    quick: bool
    sessions: int
    hosts: int
    forks: int


def config_from_env(env: dict[str, str] | os._Environ[str]) -> Config:
    quick = env.get("BENCH_QUICK", "") not in ("", "0")
    return Config(
        quick=quick,
        sessions=int(env.get("BENCH_SESSIONS", 10 if quick else 30)),
        hosts=int(env.get("BENCH_HOSTS", 50 if quick else 200)),
        forks=int(env.get("BENCH_FORKS", 50)),
    )


class HostCpu:
    """CPU seconds of processes and everything they start (see the module docstring)."""

    def __init__(self, name: str, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.group: Path | None = CPUACCT / name
        try:
            self.group.mkdir(exist_ok=True)
            for pid in self.pids:
                (self.group / "cgroup.procs").write_text(str(pid))
            self.how = "cgroup cpuacct (every task the hosts' sshd started)"
        except OSError:
            self.close()
            self.group = None
            self.how = "/proc listeners + reaped children (orphans not counted)"
        self._proc = ProcCpu(self.pids)

    def total(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        return self._proc.total()

    def close(self) -> None:
        if self.group is None or not self.group.exists():
            return
        for pid in (self.group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (CPUACCT / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.group.rmdir()


@contextlib.contextmanager
def host_cpu(name: str, pids: Sequence[int]) -> Iterator[HostCpu]:
    meter = HostCpu(name, pids)
    try:
        yield meter
    finally:
        meter.close()


def job(urls: Sequence[str], per_url: bool) -> tuple[str, bytes, str]:
    """The auditor's own probe job (command, stdin) and the marker of its target records."""
    from auditor.models import Target
    from auditor.probes import ProbeSettings
    from auditor.probes.posix import build_posix_job

    settings = ProbeSettings(per_url=per_url)
    built = build_posix_job([Target(url=u, name=u) for u in urls], settings)
    return built.command, built.stdin, f"AUD1 {settings.nonce}\tT\t"


async def _sessions(
    lab: Any, address: str, command: str, stdin: bytes, count: int
) -> tuple[list[float], list[bytes]]:
    import asyncssh

    options = asyncssh.SSHClientConnectionOptions(
        username="root",
        client_keys=[asyncssh.read_private_key(lab.key)],
        known_hosts=asyncssh.read_known_hosts(str(lab.known_hosts)),
    )
    walls: list[float] = []
    outputs: list[bytes] = []
    for _ in range(count):
        start = time.perf_counter()
        async with asyncssh.connect(address, options=options) as conn:
            result = await conn.run(command, input=stdin, encoding=None, check=False)
        walls.append(time.perf_counter() - start)
        outputs.append(result.stdout if isinstance(result.stdout, bytes) else b"")
    return walls, outputs


def lone_host(lab: Any, cfg: Config) -> dict[str, Any]:
    """Sessions one at a time on one host, each kind measured on its own."""
    host = next(h for h in lab.hosts if h.site == "scale")
    sshd = [p for p in lab_pids(lab.directory)[0] if _role_of(lab, p) == f"sshd:{host.name}"]
    kinds: list[tuple[str, str, bytes, str, int]] = [("bare", "/bin/sh -s", b"exit 0\n", "", 0)]
    for per_url in (False, True):
        path = "per_url" if per_url else "one_process"
        for n, urls in ((1, (URL,)), (5, URLS_5)):
            command, stdin, marker = job(urls, per_url)
            kinds.append((f"{path}_{n}", command, stdin, marker, n))
    figures: dict[str, Any] = {"host": host.name}
    with host_cpu(f"auditor-bench-lone-{os.getpid()}", sshd) as meter:
        figures["counted"] = meter.how
        for name, command, stdin, marker, n in kinds:
            asyncio.run(_sessions(lab, host.address, command, stdin, 2))  # warm-up
            time.sleep(0.3)
            before = meter.total()
            walls, outputs = asyncio.run(_sessions(lab, host.address, command, stdin, cfg.sessions))
            time.sleep(0.5)  # the last session's processes end and are accounted
            cpu = meter.total() - before
            ok = all(out.count(marker.encode()) == n for out in outputs) if n else True
            figures[name] = {
                "wall_ms": round(1000 * statistics.median(walls), 1),
                "host_cpu_ms": round(1000 * cpu / cfg.sessions, 1),
                "sessions": cfg.sessions,
                "ok": ok,
            }
            say(
                f"  lone host {name:14} wall {figures[name]['wall_ms']:7.1f} ms  "
                f"host CPU {figures[name]['host_cpu_ms']:6.1f} ms/session  "
                f"{'ok' if ok else 'RECORDS MISSING'}"
            )
    return figures


def _role_of(lab: Any, pid: int) -> str:
    state = json.loads((lab.directory / "state.json").read_text())
    for proc in state.get("processes", []):
        if int(proc["pid"]) == pid:
            return str(proc["role"])
    return ""


def whole_lab(lab: Any, cfg: Config) -> dict[str, Any]:
    """Every scale host at once (BENCH_FORKS at a time), through the auditor's own SSH
    transport and probe, 1 URL then 5 URLs, each curl path."""
    from auditor.errors import HostLevelError
    from auditor.models import Connection, Host, Platform, Target
    from auditor.probes import ProbeSettings
    from auditor.probes.posix import build_posix_job, parse_posix
    from auditor.transports.base import SettingsSource
    from auditor.transports.options import SSHSettings
    from auditor.transports.ssh import SSHTransport

    specs = [h for h in lab.hosts if h.site == "scale"]
    hosts = [
        Host(name=h.name, address=h.address, connection=Connection.SSH, platform=Platform.LINUX)
        for h in specs
    ]
    sshd, _ = lab_pids(lab.directory)
    figures: dict[str, Any] = {"hosts": len(hosts), "forks": cfg.forks}

    def run(urls: Sequence[str], per_url: bool) -> tuple[float, list[int]]:
        targets = [Target(url=u, name=u) for u in urls]
        settings = ProbeSettings(per_url=per_url)
        built = build_posix_job(targets, settings)
        transport = SSHTransport(
            SSHSettings(user="root", keys=(lab.key,), known_hosts=lab.known_hosts)
        )
        transport.prepare(hosts, SettingsSource())
        limit = asyncio.Semaphore(cfg.forks)

        async def one(host: Any) -> list[str]:
            async with limit:
                try:
                    raw = await transport.run_job(host, built, 60)
                except HostLevelError:  # a host not audited: none of its URLs reachable
                    return []
            result = parse_posix(raw, targets, settings.nonce)
            return [o.outcome.value for o in result.observations]

        async def main() -> list[list[str]]:
            try:
                return list(await asyncio.gather(*(one(h) for h in hosts)))
            finally:
                await transport.close()

        start = time.perf_counter()
        outcomes = asyncio.run(main())
        wall = time.perf_counter() - start
        reachable = [
            sum(1 for o in outcomes if len(o) > i and o[i] == "reachable") for i in range(len(urls))
        ]
        return wall, reachable

    with host_cpu(f"auditor-bench-lab-{os.getpid()}", sshd) as meter:
        figures["counted"] = meter.how
        for per_url in (False, True):
            path = "per_url" if per_url else "one_process"
            for n, urls in ((1, (URL,)), (5, URLS_5)):
                before = meter.total()
                wall, reachable = run(urls, per_url)
                time.sleep(0.5)
                cpu = meter.total() - before
                figures[f"{path}_{n}"] = {
                    "wall_s": round(wall, 2),
                    "host_cpu_ms_per_host": round(1000 * cpu / len(hosts), 1),
                    "reachable_per_url": reachable,
                    "ok": reachable == [len(hosts)] * n,
                }
                say(
                    f"  lab {path:11} {n} URL(s): wall {wall:6.2f} s  host CPU "
                    f"{1000 * cpu / len(hosts):6.1f} ms/host  reachable {reachable}"
                )
    return figures


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, key: str, measured: float | None, before: float | None) -> None:
        goal = TARGETS[key]
        rows.append(
            {
                "target": name,
                "goal": f"<= {goal:g}",
                "measured": measured,
                "per_url_path": before,
                "met": measured is not None and measured <= goal,
            }
        )

    lone = results.get("lone_host")
    if lone:

        def lr(path: str, field: str) -> float | None:
            return _ratio(lone[f"{path}_5"][field], lone[f"{path}_1"][field])

        add(
            "lone host: 5 URLs / 1 URL, wall",
            "lone_wall_5_over_1",
            lr("one_process", "wall_ms"),
            lr("per_url", "wall_ms"),
        )
        add(
            "lone host: 5 URLs / 1 URL, host CPU",
            "lone_cpu_5_over_1",
            lr("one_process", "host_cpu_ms"),
            lr("per_url", "host_cpu_ms"),
        )
        add(
            "host CPU per probe session, 1 URL (ms)",
            "host_cpu_ms_1_url",
            lone["one_process_1"]["host_cpu_ms"],
            lone["per_url_1"]["host_cpu_ms"],
        )
    lab = results.get("lab")
    if lab:
        add(
            f"{lab['hosts']}-host lab: 5 URLs / 1 URL, wall",
            "lab_wall_5_over_1",
            _ratio(lab["one_process_5"]["wall_s"], lab["one_process_1"]["wall_s"]),
            _ratio(lab["per_url_5"]["wall_s"], lab["per_url_1"]["wall_s"]),
        )
    return rows


def render(results: dict[str, Any]) -> str:
    lines = ["", "Probe cost on the audited host"]
    lone = results.get("lone_host")
    if lone:
        lines.append(
            f"Lone host {lone['host']}, {lone['bare']['sessions']} sessions one after another; "
            f"host CPU counted by {lone['counted']}:"
        )
        lines.append(f"  {'session':24} {'wall ms':>9} {'host CPU ms':>12}")
        for key, label in (
            ("bare", "bare (sh exits at once)"),
            ("one_process_1", "1 URL, one process"),
            ("one_process_5", "5 URLs, one process"),
            ("per_url_1", "1 URL, per URL"),
            ("per_url_5", "5 URLs, per URL"),
        ):
            f = lone[key]
            lines.append(f"  {label:24} {f['wall_ms']:9.1f} {f['host_cpu_ms']:12.1f}")
    lab = results.get("lab")
    if lab:
        lines.append(
            f"Lab: {lab['hosts']} hosts at once ({lab['forks']} at a time), the auditor's SSH "
            f"transport; host CPU by {lab['counted']}:"
        )
        for key in ("one_process_1", "one_process_5", "per_url_1", "per_url_5"):
            f = lab[key]
            lines.append(
                f"  {key:14} wall {f['wall_s']:6.2f} s, host CPU {f['host_cpu_ms_per_host']:6.1f} "
                f"ms/host, reachable per URL {f['reachable_per_url']}"
            )
    lines.append("Targets (issue 16; 'per URL' is the same probe forced to one curl per URL):")
    for row in results.get("targets", []):
        mark = "PASS" if row["met"] else "MISS"
        before = f" (per URL: {row['per_url_path']})" if row["per_url_path"] is not None else ""
        lines.append(
            f"  [{mark}] {row['target']:42} goal {row['goal']:8} measured {row['measured']}{before}"
        )
    return "\n".join(lines)


def main() -> int:
    from auditor_lab import lab_down, lab_up, preflight

    cfg = config_from_env(os.environ)
    problems = preflight()
    if problems:
        say("probe_cost: the lab cannot run here: " + "; ".join(problems))
        return 2
    results: dict[str, Any] = {"quick": cfg.quick, "config": cfg.__dict__}
    with tempfile.TemporaryDirectory(prefix="auditor-probe-cost-") as tmp:
        work = Path(tmp)
        with lab_lock():
            lab_dir = work / "lab"
            say(f"lab up: {cfg.hosts} extra hosts")
            try:
                lab = lab_up(lab_dir, extra_hosts=cfg.hosts)
                results["lone_host"] = lone_host(lab, cfg)
                results["lab"] = whole_lab(lab, cfg)
            finally:
                lab_down(lab_dir)
                say("lab down")
    results["targets"] = evaluate(results)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    say(render(results))
    say(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
