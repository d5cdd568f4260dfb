"""Measuring a command from the outside: wall time, the OS's CPU and RSS figures for the
process tree, a sampled peak of the tree's proportional memory, and CPU burnt elsewhere.

Client CPU comes from `os.wait4` on the child: user + system time of the process and of
every descendant it waited for (ansible's forks and their `ssh` processes, the auditor's
event loop). The lab's sshd processes are *not* descendants of the client, so their cost is
read separately (`ProcCpu`) from the listeners' own and reaped-children counters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Measurement:
    """One run of one command."""

    label: str
    wall: float
    user: float
    system: float
    maxrss_mb: float
    """ru_maxrss of the tree: the largest single process (the OS's own figure)."""
    tree_pss_mb: float
    """Sampled peak of the summed PSS of every process in the tree (shared pages split)."""
    tree_procs: int
    """Most processes seen in the tree at once."""
    returncode: int
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    tree_rss_mb: float = 0.0
    """Sampled peak of the summed RSS of every process in the tree (the whole tree's
    resident memory, shared pages counted in each process: the conservative figure)."""

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def per_host_ms(self, hosts: int) -> float:
        return 1000.0 * self.cpu / max(hosts, 1)

    def as_dict(self, hosts: int | None = None) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stdout")
        data.pop("stderr")
        data["cpu"] = round(self.cpu, 3)
        for key in ("wall", "user", "system", "maxrss_mb", "tree_pss_mb", "tree_rss_mb"):
            data[key] = round(data[key], 3)
        if hosts:
            data["cpu_ms_per_host"] = round(self.per_host_ms(hosts), 2)
        return data


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of nothing")
    return float(statistics.median(values))


def summarize(runs: Sequence[Measurement], hosts: int) -> dict[str, float]:
    """Medians over repeated runs (each figure's median on its own)."""
    return {
        "wall": round(median([r.wall for r in runs]), 3),
        "cpu": round(median([r.cpu for r in runs]), 3),
        "cpu_ms_per_host": round(median([r.per_host_ms(hosts) for r in runs]), 2),
        "maxrss_mb": round(median([r.maxrss_mb for r in runs]), 1),
        "tree_pss_mb": round(median([r.tree_pss_mb for r in runs]), 1),
        "server_cpu_ms_per_host": round(
            median([r.extra.get("server_cpu", 0.0) * 1000 / max(hosts, 1) for r in runs]), 2
        ),
        "cdn_cpu_ms_per_host": round(
            median([r.extra.get("cdn_cpu", 0.0) * 1000 / max(hosts, 1) for r in runs]), 2
        ),
        "machine_busy_pct": round(median([r.extra.get("machine_busy_pct", 0.0) for r in runs]), 1),
        "runs": len(runs),
    }


# --- /proc -----------------------------------------------------------------------------------


def parse_stat(text: str) -> tuple[int, int, int, int, int, int]:
    """(ppid, utime, stime, cutime, cstime, starttime) from a /proc/PID/stat line.

    The command name is in parentheses and may itself hold spaces or parentheses, so the
    fields are counted from the last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, starttime 22.
    return (
        int(rest[1]),
        int(rest[11]),
        int(rest[12]),
        int(rest[13]),
        int(rest[14]),
        int(rest[19]),
    )


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from the ppid of every /proc entry)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = _read(f"/proc/{name}/stat")
        if text is None:
            continue
        with contextlib.suppress(ValueError, IndexError):
            children.setdefault(parse_stat(text)[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


PAGE_KB = (os.sysconf("SC_PAGE_SIZE") // 1024) if hasattr(os, "sysconf") else 4


def rss_kb(pid: int) -> int:
    """Resident memory of one process (from /proc/PID/statm), in kB."""
    text = _read(f"/proc/{pid}/statm")
    if not text:
        return 0
    try:
        return int(text.split()[1]) * PAGE_KB
    except (IndexError, ValueError):
        return 0


def ends_with_end_record(path: Path) -> bool:
    """Whether a results file's last line is its end record (the audit phase is over)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read()
    except OSError:
        return False
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    return bool(lines) and lines[-1].startswith(b'{"type":"end"')


def pss_kb(pid: int) -> int:
    text = _read(f"/proc/{pid}/smaps_rollup")
    if not text:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed PSS and RSS of a process tree until stopped; keeps the peaks, and
    (given a results file to watch) when the file got its end record, so the memory of the
    audit phase and of the report phase can be told apart."""

    def __init__(self, pid: int, interval: float = 0.5, watch: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.watch = watch
        self.peak_kb = 0
        self.peak_rss_kb = 0
        self.peak_procs = 0
        self.timeline: list[tuple[float, int]] = []
        """(seconds since start, summed PSS in kB) at every sample."""
        self.rss_timeline: list[tuple[float, int]] = []
        """(seconds since start, summed RSS in kB) at every sample."""
        self.audit_ended: float | None = None
        """Seconds since start at the first sample that saw the end record."""
        self.audit_started: float | None = None
        """Seconds since start at the first sample that saw the results file: the inventory
        is loaded and the transports are prepared, hosts are being audited."""
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._halt.is_set():
            pids = descendants(self.pid)
            total = sum(pss_kb(p) for p in pids)
            rss = sum(rss_kb(p) for p in pids)
            now = round(time.perf_counter() - start, 2)
            self.timeline.append((now, total))
            self.rss_timeline.append((now, rss))
            self.peak_kb = max(self.peak_kb, total)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_procs = max(self.peak_procs, len(pids))
            if self.watch is not None and self.audit_started is None and self.watch.exists():
                self.audit_started = now
            if (
                self.watch is not None
                and self.audit_ended is None
                and ends_with_end_record(self.watch)
            ):
                self.audit_ended = now
            self._halt.wait(self.interval)

    def phase_peaks_mb(self) -> dict[str, float | None]:
        """Peak tree RSS before the end record (audit) and from it on (reports)."""
        if self.audit_ended is None:
            return {"audit": None, "report": None, "audit_ended_s": None}
        cut = self.audit_ended
        audit = [kb for t, kb in self.rss_timeline if t < cut]
        report = [kb for t, kb in self.rss_timeline if t >= cut]
        begun = self.audit_started
        at_start = next((kb for t, kb in self.rss_timeline if begun is not None and t >= begun), 0)
        return {
            "audit": round(max(audit) / 1024, 1) if audit else None,
            "report": round(max(report) / 1024, 1) if report else None,
            "audit_ended_s": cut,
            "audit_started_s": begun,
            "at_audit_start": round(at_start / 1024, 1),
            # What the audit phase adds to what loading the inventory and preparing the
            # transports left resident: the memory that streaming results keeps flat.
            "audit_growth": round((max(audit) - at_start) / 1024, 1) if audit else None,
        }

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    text = _read("/proc/stat") or "cpu 0 0 0 0"
    fields = [int(x) for x in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class ProcCpu:
    """CPU seconds of chosen processes *and of the children they reaped* (sshd listeners:
    every connection's privsep process, shell and curl is reaped into cutime/cstime)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)

    def total(self) -> float:
        ticks = 0
        for pid in self.pids:
            text = _read(f"/proc/{pid}/stat")
            if text is None:
                continue
            _, ut, st, cut, cst, _ = parse_stat(text)
            ticks += ut + st + cut + cst
        return ticks / CLK_TCK


def _thin(timeline: Sequence[tuple[float, int]], points: int) -> list[tuple[float, float]]:
    """At most `points` (seconds, MB) samples, evenly spread, always keeping the peak."""
    if not timeline:
        return []
    step = max(1, len(timeline) // points)
    chosen = set(range(0, len(timeline), step)) | {
        max(range(len(timeline)), key=lambda i: timeline[i][1])
    }
    return [(timeline[i][0], round(timeline[i][1] / 1024, 1)) for i in sorted(chosen)]


# --- running ---------------------------------------------------------------------------------


def run_measured(
    label: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 900.0,
    server: ProcCpu | None = None,
    cdn: ProcCpu | None = None,
    sample: bool = True,
    watch: Path | None = None,
    interval: float = 0.5,
) -> Measurement:
    """Run `argv` to completion and measure it (see the module docstring)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before = server.total() if server else 0.0
        cdn_before = cdn.total() if cdn else 0.0
        busy0, total0 = machine_ticks()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: a timeout kills the whole tree
        )
        sampler = TreeSampler(proc.pid, interval, watch) if sample else None
        if sampler:
            sampler.start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: never leave the child's tree behind
            kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            raise
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        busy1, total1 = machine_ticks()
        if sampler:
            sampler.stop()
        if server:
            time.sleep(0.3)  # let the last sshd sessions be reaped into the listeners' counters
        server_cpu = (server.total() - server_before) if server else 0.0
        cdn_cpu = (cdn.total() - cdn_before) if cdn else 0.0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if timed_out.is_set():
        raise RuntimeError(f"{label}: killed after {timeout:.0f} s")
    return Measurement(
        label=label,
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024.0,
        tree_pss_mb=(sampler.peak_kb / 1024.0) if sampler else 0.0,
        tree_procs=sampler.peak_procs if sampler else 0,
        tree_rss_mb=(sampler.peak_rss_kb / 1024.0) if sampler else 0.0,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        extra={
            "pss_timeline_mb": _thin(sampler.timeline if sampler else [], 40),
            "rss_timeline_mb": _thin(sampler.rss_timeline if sampler else [], 40),
            "phase_rss_mb": sampler.phase_peaks_mb() if sampler else {},
            "server_cpu": round(server_cpu, 3),
            "cdn_cpu": round(cdn_cpu, 3),
            "machine_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1),
        },
    )
