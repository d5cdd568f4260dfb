"""`make bench-sites`: a site run through the broker against a local run, on the same lab.

    python -m bench.sites                 # 200 scale hosts, 2 runners
    BENCH_HOSTS=50 BENCH_RUNNERS=1 ...    # smaller

Both runs audit the lab's `scale` hosts for one URL with the same total concurrency. The
local run goes first (the site layer then closes the hosts' SSH to all but the runners).
Figures, from the OS:

- wall time of each run;
- coordinator CPU: the whole `audit --broker` process tree; it never opens an SSH session,
  so all of it is the cost of going through the broker (per host: the coordinator's broker
  overhead);
- runner CPU per host: what the runner processes used during the run, per host (compare
  with the local run's client CPU per host: the difference is the runners' broker overhead);
- redis-server CPU per host.

Writes bench/sites-results.json and prints a table. Needs root (the lab) and holds the lab
lock while the lab is up; the lab is always taken down again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import Measurement, ProcCpu, run_measured
from bench.run import BENCH_DIR, URL, audit_argv, lab_lock, say, venv_bin

RESULTS = BENCH_DIR / "sites-results.json"


def _ready(log: Path, name: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while f"runner {name} of site scale ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"runner {name} did not start: {log.read_text()[-500:]}")
        time.sleep(0.05)


def _row(label: str, m: Measurement, hosts: int, extra: str = "") -> str:
    return (
        f"{label:34} wall {m.wall:7.2f} s   cpu {m.cpu:7.2f} s   "
        f"{1000 * m.cpu / hosts:6.2f} ms/host  {extra}"
    )


def main() -> int:
    from auditor_lab import lab_down, lab_up, preflight
    from auditor_lab.sites import sites_down, sites_up, start_runner

    hosts = int(os.environ.get("BENCH_HOSTS", "200"))
    runners = int(os.environ.get("BENCH_RUNNERS", "2"))
    forks = int(os.environ.get("BENCH_FORKS", "50"))
    problems = preflight()
    if problems:
        say("bench: the lab cannot run here: " + "; ".join(problems))
        return 2
    work = Path(tempfile.mkdtemp(prefix="auditor-bench-sites-"))
    results: dict[str, Any] = {"hosts": hosts, "runners": runners, "forks": forks, "url": URL}
    try:
        with lab_lock():
            lab_dir = work / "lab"
            say(f"lab up: {hosts} scale hosts")
            lab = lab_up(lab_dir, extra_hosts=hosts)
            try:
                names = [h.name for h in lab.hosts if h.site == "scale"]
                local = run_measured(
                    "local",
                    audit_argv(
                        lab.inventory, lab.known_hosts, [URL], work / "local", forks, "scale"
                    ),
                )
                if local.returncode != 0:
                    raise RuntimeError(f"local run exited {local.returncode}: {local.stderr}")
                local_one = run_measured(
                    "local-1",
                    audit_argv(
                        lab.inventory, lab.known_hosts, [URL], work / "local-1", forks, names[0]
                    ),
                )
                say(_row("local audit (client)", local, hosts))
                site_lab = sites_up(lab, work / "sites", {"scale": names}, {"scale": runners})
                try:
                    procs = []
                    for index in range(1, runners + 1):
                        name = f"scale-{index}"
                        proc = start_runner(
                            site_lab, "scale", index, name, concurrency=max(1, forks // runners)
                        )
                        _ready(site_lab.directory / f"runner-{name}.log", name, proc)
                        procs.append(proc)
                    runner_cpu = ProcCpu([p.pid for p in procs])
                    broker_cpu = ProcCpu([site_lab.broker.pid])
                    argv = [
                        venv_bin("audit"),
                        "-i",
                        str(site_lab.inventory),
                        "--broker",
                        site_lab.broker_url,
                        "--url",
                        URL,
                        "-o",
                        str(work / "sites-out"),
                        "--force",
                        "-q",
                    ]
                    env = dict(os.environ, AUDITOR_BROKER_PASSWORD=site_lab.password())
                    dist = run_measured("sites", argv, env=env, server=runner_cpu, cdn=broker_cpu)
                    if dist.returncode != 0:
                        raise RuntimeError(f"site run exited {dist.returncode}: {dist.stderr}")
                    outcomes = _outcomes(work / "sites-out" / "results.jsonl")
                    one = [*argv[:-4], "--limit", names[0], *argv[-4:]]
                    one[one.index(str(work / "sites-out"))] = str(work / "sites-1")
                    dist_one = run_measured("sites-1", one, env=env)
                finally:
                    sites_down(site_lab)
            finally:
                lab_down(lab_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runner_ms = 1000 * dist.extra["server_cpu"] / hosts
    broker_ms = 1000 * dist.extra["cdn_cpu"] / hosts
    results.update(
        {
            "local": local.as_dict(hosts),
            "sites": dist.as_dict(hosts),
            "sites_outcomes": outcomes,
            "wall_ratio": round(dist.wall / local.wall, 3),
            "coordinator_cpu_ms_per_host": round(dist.per_host_ms(hosts), 2),
            # Startup (imports, inventory, connecting) measured by a one-host run, taken off.
            "coordinator_marginal_cpu_ms_per_host": round(
                1000 * (dist.cpu - dist_one.cpu) / (hosts - 1), 2
            ),
            "local_marginal_cpu_ms_per_host": round(
                1000 * (local.cpu - local_one.cpu) / (hosts - 1), 2
            ),
            "runner_cpu_ms_per_host": round(runner_ms, 2),
            "redis_cpu_ms_per_host": round(broker_ms, 2),
            "runner_overhead_ms_per_host": round(runner_ms - local.per_host_ms(hosts), 2),
        }
    )
    say(_row("site run (coordinator)", dist, hosts, f"{dist.wall / local.wall:.2f}x local wall"))
    say(f"{'runners':34} {runner_ms:6.2f} ms/host   redis-server {broker_ms:6.2f} ms/host")
    say(
        f"{'marginal CPU per host':34} coordinator "
        f"{results['coordinator_marginal_cpu_ms_per_host']:.2f} ms   local client "
        f"{results['local_marginal_cpu_ms_per_host']:.2f} ms"
    )
    say(f"outcomes through the broker: {outcomes}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    say(f"results: {RESULTS}")
    return 0


def _outcomes(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "host":
            key = record["host_outcome"] or record["observations"][0]["outcome"]
            counts[key] = counts.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
