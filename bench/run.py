"""`make bench`: the auditor against its floor (bare asyncssh) and Ansible on the lab.

    python -m bench.run            # full run (200-host lab, 20,000-host scale scenario)
    BENCH_QUICK=1 python -m bench.run   # a smaller run (50 hosts, 2,000-host scale, 1 repeat)
    BENCH_PROFILE=1 ...            # also profile the auditor and the floor (bench/profile.txt)
    BENCH_KEEP=1 ...               # keep the work folder (reports of every run)
    BENCH_PARTS=compare ...        # only some parts (compare, scale, fleet, browser);
                                   # BENCH_HOSTS, BENCH_FORKS, BENCH_REPEATS, BENCH_SCALE_TOTAL
                                   # and BENCH_FLEET_SIZES (e.g. 10000,50000,100000) override
                                   # the sizes. python -m bench.browser: the browser part alone
    BENCH_BASELINE_SRC=DIR ...     # the audits import the auditor from DIR (an older
                                   # checkout), for before/after figures on the same machine

The fleet part (issue 16): 95 % refusing and 5 % black-holed SSH hosts, 3 URLs, forks 2000,
--timeout 5, at each of BENCH_FLEET_SIZES hosts: the peak RSS of the whole process tree
(audit phase and report phase apart), against a plain asyncio TCP-connect floor on the same
addresses, with the same concurrency and timeout, in the same run.

Writes bench/results.json (bench/results-quick.json for a quick run) and prints a table.
Needs root (the lab). Holds the machine-wide lab lock while a lab is up, and always takes
the lab (and the bench's nft table) down again.

Which figure is which: on this machine the lab's sshd processes share the CPU cores with
the client, so *wall time is server-bound* (it mostly measures OpenSSH's server side). The
*client CPU per host* (user + system of the client process tree, from the OS) is the figure
that predicts a real fleet, whose servers are other machines.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import browser, scale
from bench.measure import Measurement, ProcCpu, median, run_measured, summarize

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LAB_LOCK = Path("/run/auditor-lab/tests.lock")
URL = "https://cask.qg3.apps.qualys.com/status"
URLS_5 = (
    URL,
    "https://cask.qg1.apps.qualys.com/status",
    "https://qagpublic.qg3.apps.qualys.com/status",
    "https://cask.qg1.apps.qualys.eu/status",
    "https://cdn.lab.test/status",
)
URLS_3 = URLS_5[:3]
SMALL_HOSTS = 10
"""Hosts in the fixed-cost runs: CPU(all) - CPU(small) splits startup from per-host cost."""
PROBE_CONNECT_TIMEOUT = 5.0  # the auditor's defaults, used for the floor's job and ansible's curl
PROBE_MAX_TIME = 10.0
SERVER_BOUND_NOTE = (
    "wall time is SERVER-BOUND here: the lab's sshd (key exchange, auth, shell, curl) runs on "
    "the same cores as the client, so it mostly measures OpenSSH's server side"
)
CLIENT_NOTE = (
    "client CPU per host (user+sys of the client process tree, from os.wait4) is the figure "
    "that PREDICTS A REAL FLEET, whose SSH servers are other machines"
)


@dataclass(frozen=True)
class Config:
    quick: bool
    lab_hosts: int
    forks: int
    repeats: int
    scale_total: int
    scale_forks: int
    scale_connect_timeout: float
    help_runs: int
    profile: bool
    keep: bool
    parts: tuple[str, ...] = ("compare", "scale", "fleet", "browser")
    fleet_sizes: tuple[int, ...] = (10_000, 50_000, 100_000)

    @property
    def results_path(self) -> Path:
        return BENCH_DIR / ("results-quick.json" if self.quick else "results.json")


def config_from_env(env: dict[str, str] | os._Environ[str]) -> Config:
    quick = env.get("BENCH_QUICK", "") not in ("", "0")
    return Config(
        quick=quick,
        lab_hosts=int(env.get("BENCH_HOSTS", 50 if quick else 200)),
        forks=int(env.get("BENCH_FORKS", 50)),
        repeats=int(env.get("BENCH_REPEATS", 1 if quick else 3)),
        scale_total=int(env.get("BENCH_SCALE_TOTAL", 2000 if quick else 20000)),
        scale_forks=1000,
        scale_connect_timeout=5.0,
        help_runs=5 if quick else 9,
        profile=env.get("BENCH_PROFILE", "") not in ("", "0"),
        keep=env.get("BENCH_KEEP", "") not in ("", "0"),
        parts=tuple(
            p.strip()
            for p in env.get("BENCH_PARTS", "compare,scale,fleet,browser").split(",")
            if p.strip()
        ),
        fleet_sizes=tuple(
            int(n)
            for n in env.get(
                "BENCH_FLEET_SIZES", "1000,5000,10000" if quick else "10000,50000,100000"
            ).split(",")
            if n.strip()
        ),
    )


FLEET_FORKS = 2000
FLEET_TIMEOUT = 5.0
FLEET_REFUSE_SHARE = 0.95
FLEET_WALL_RATIO = 1.3
FLEET_RSS_MB = 300.0
SCALE_RSS_MB = 150.0
HTML_MB = 40.0
BROWSER_BIG_SECONDS = 3.0
SLOPE_MB_PER_10K = 2.0
"""What "near zero" means for the audit phase's memory between 50,000 and 100,000 hosts."""


def say(text: str) -> None:
    print(text, flush=True)


# --- machine and versions ----------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "system": platform.system(),
    }


def versions() -> dict[str, str]:
    import auditor

    ssh = _first_line(["ssh", "-V"])
    curl = _first_line(["curl", "--version"])
    return {
        "python": platform.python_version(),
        "auditor": auditor.__version__,
        "asyncssh": _dist_version("asyncssh"),
        "cryptography": _dist_version("cryptography"),
        "ansible-core": _dist_version("ansible-core"),
        "openssh": ssh.split(",")[0],
        "curl": curl.split()[1] if len(curl.split()) > 1 else curl,
        "nft": _first_line(["nft", "--version"]),
    }


# --- commands ----------------------------------------------------------------------------------


def venv_bin(name: str) -> str:
    """A console script next to this interpreter (the venv's), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def base_env(home: Path) -> dict[str, str]:
    """The same small environment for every contender: an empty HOME (no ~/.ssh/config,
    no dotfiles), a plain PATH with the venv first, C.UTF-8."""
    path = os.pathsep.join(
        [
            str(Path(sys.executable).parent),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    )
    env = {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    baseline = os.environ.get("BENCH_BASELINE_SRC", "")
    if baseline:
        # Before/after on the same machine: the contenders import the auditor from another
        # checkout (e.g. `git archive COMMIT | tar -x -C DIR`), the bench stays this one.
        env["PYTHONPATH"] = baseline
    return env


def audit_argv(
    inventory: Path,
    known_hosts: Path,
    urls: Sequence[str],
    out: Path,
    forks: int,
    limit: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [venv_bin("audit"), "-i", str(inventory), "--known-hosts", str(known_hosts)]
    for url in urls:
        argv += ["--url", url]
    argv += ["-o", str(out), "--force", "-f", str(forks), "-q"]
    if limit:
        argv += ["--limit", limit]
    return argv + list(extra)


def curl_command(url: str) -> str:
    """The vendor's check as one shell line (what the probe runs, minus the record keeping)."""
    return (
        f"curl -sS -o /dev/null --globoff --connect-timeout {PROBE_CONNECT_TIMEOUT:g} "
        f"--max-time {PROBE_MAX_TIME:g} -w '%{{http_code}}\\n' -- {url}"
    )


def ansible_argv(inventory: Path, limit: str, forks: int, url: str) -> list[str]:
    return [
        venv_bin("ansible"),
        "all",
        "-i",
        str(inventory),
        "--limit",
        limit,
        "-f",
        str(forks),
        "-m",
        "raw",
        "-a",
        curl_command(url),
    ]


def ansible_env(home: Path, known_hosts: Path) -> dict[str, str]:
    """Ansible with no config file, its own HOME and temp folders, strict host key checking
    against the lab's known_hosts, and no SSH connection sharing (a ControlPersist master
    would outlive the run, escape the CPU accounting, and serve no second command)."""
    env = base_env(home)
    env.update(
        {
            "ANSIBLE_CONFIG": "",
            "ANSIBLE_LOCAL_TEMP": str(home / "ansible-tmp"),
            "ANSIBLE_HOME": str(home / "ansible-home"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "ansible-cp"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": (
                f"-o ControlMaster=no -o UserKnownHostsFile={known_hosts} "
                "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
            ),
            "ANSIBLE_TIMEOUT": "10",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_SSH_RETRIES": "0",
        }
    )
    env.pop("ANSIBLE_CONFIG")  # unset, and cwd is an empty folder: no config file at all
    return env


def floor_job(urls: Sequence[str]) -> dict[str, str]:
    """The exact command and stdin the auditor sends (same builder, same settings)."""
    from auditor.models import Target
    from auditor.probes import ProbeSettings
    from auditor.probes.posix import build_posix_job

    settings = ProbeSettings(connect_timeout=PROBE_CONNECT_TIMEOUT, max_time=PROBE_MAX_TIME)
    job = build_posix_job([Target(url=u, name=u) for u in urls], settings)
    return {
        "command": job.command,
        "stdin_b64": base64.b64encode(job.stdin).decode(),
        "marker": f"AUD1 {settings.nonce}\tT",
    }


def floor_argv(
    hosts_file: Path, job_file: Path, key: Path, known_hosts: Path, forks: int
) -> list[str]:
    return [
        sys.executable,
        str(BENCH_DIR / "floor.py"),
        "--hosts",
        str(hosts_file),
        "--job",
        str(job_file),
        "--key",
        str(key),
        "--known-hosts",
        str(known_hosts),
        "--forks",
        str(forks),
    ]


# --- checking what each contender did ----------------------------------------------------------


def check_audit(out: Path, hosts: int, urls: int) -> tuple[bool, str, dict[str, Any]]:
    """Every host audited and every URL reachable, per report.json."""
    try:
        doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return False, f"no report.json: {exc}", {}
    summary = doc.get("summary", {})
    reachable = [t.get("reachable", 0) for t in summary.get("targets", [])]
    ok = (
        summary.get("hosts") == hosts
        and summary.get("audited") == hosts
        and reachable == [hosts] * urls
    )
    info = {"duration": doc.get("run", {}).get("duration")}
    return (
        ok,
        f"hosts={summary.get('hosts')} audited={summary.get('audited')} reachable={reachable}",
        info,
    )


def host_durations(out: Path) -> list[float]:
    """Each audited host's own duration (connect, probe, all URLs) from report.json."""
    try:
        doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return []
    return [float(h["duration"]) for h in doc.get("hosts", []) if h.get("audited")]


def check_floor(stdout: str, hosts: int) -> tuple[bool, str]:
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, f"no summary: {stdout[-200:]!r}"
    return data.get("ok") == hosts, json.dumps(data)


_ANSIBLE_OK = re.compile(r"^\S+ \| CHANGED \| rc=0 >>", re.MULTILINE)


def check_ansible(stdout: str, hosts: int) -> tuple[bool, str]:
    ok = len(_ANSIBLE_OK.findall(stdout))
    answered = len(re.findall(r"^200\s*$", stdout, re.MULTILINE))
    return ok == hosts and answered == hosts, f"rc=0 on {ok} hosts, HTTP 200 on {answered}"


# --- the lab -----------------------------------------------------------------------------------


@contextlib.contextmanager
def lab_lock(wait: float = 3600.0) -> Iterator[None]:
    """The machine-wide lab lock the test suite uses; waits for it."""
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LAB_LOCK, "a") as fh:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    say(f"waiting for the lab lock {LAB_LOCK} (a test session or another bench)")
                    told = True
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the lab lock was held for {wait:.0f} s") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lab_pids(directory: Path) -> tuple[list[int], list[int]]:
    """(sshd listener pids of the scale hosts, lab services pid) from the lab's state file."""
    state = json.loads((directory / "state.json").read_text())
    sshd = [
        int(p["pid"])
        for p in state.get("processes", [])
        if str(p["role"]).startswith("sshd:scale-")
    ]
    services = [int(p["pid"]) for p in state.get("processes", []) if p["role"] == "services"]
    return sshd, services


# --- the parts ---------------------------------------------------------------------------------


@dataclass
class Bench:
    cfg: Config
    work: Path
    results: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def home(self) -> Path:
        return self.work / "home"

    def run_dir(self, name: str) -> Path:
        path = self.work / "runs" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # 3. audit --help
    def help_time(self) -> dict[str, Any]:
        env = base_env(self.home)
        runs = [
            run_measured("audit --help", [venv_bin("audit"), "--help"], env=env, sample=False)
            for _ in range(self.cfg.help_runs)
        ]
        python = [
            run_measured("python -c pass", [sys.executable, "-c", "pass"], env=env, sample=False)
            for _ in range(self.cfg.help_runs)
        ]
        ms = median([r.wall for r in runs[1:] or runs]) * 1000
        return {
            "median_ms": round(ms, 1),
            "runs_ms": [round(r.wall * 1000, 1) for r in runs],
            "python_startup_ms": round(median([r.wall for r in python]) * 1000, 1),
            "target_ms": 300,
        }

    # 1. the 200-host comparison
    def compare(self, lab: Any) -> dict[str, Any]:
        cfg = self.cfg
        scale_hosts = [h for h in lab.hosts if h.site == "scale"]
        n = len(scale_hosts)
        small = scale_hosts[: min(SMALL_HOSTS, max(n - 1, 1))]
        small_limit = ":".join(h.name for h in small)
        sshd_pids, services_pids = lab_pids(lab.directory)
        server = ProcCpu(sshd_pids)
        cdn = ProcCpu(services_pids)
        hosts_files = {}
        for key, chosen in (("all", scale_hosts), ("small", small)):
            path = self.work / f"floor-hosts-{key}.txt"
            path.write_text("".join(f"{h.address}\n" for h in chosen))
            hosts_files[key] = path
        jobs = {}
        for key, urls in (("1", (URL,)), ("5", URLS_5)):
            path = self.work / f"floor-job-{key}.json"
            path.write_text(json.dumps(floor_job(urls)))
            jobs[key] = path
        env = base_env(self.home)
        aenv = ansible_env(self.home, lab.known_hosts)
        acwd = self.work / "ansible-cwd"
        acwd.mkdir(exist_ok=True)

        def one(name: str, rep: int) -> tuple[Measurement, int]:
            """Run contender `name` ("auditor", "floor", "ansible", "auditor_5url", or one of
            those + "_small" for the fixed-cost run on a few hosts)."""
            is_small = name.endswith("_small")
            base = name.removesuffix("_small")
            count = len(small) if is_small else n
            limit = small_limit if is_small else "scale"
            if base.startswith("auditor"):
                urls = URLS_5 if base == "auditor_5url" else (URL,)
                out = self.run_dir(f"{name}-{rep}")
                m = run_measured(
                    name,
                    audit_argv(lab.inventory, lab.known_hosts, urls, out, cfg.forks, limit),
                    env=env,
                    server=server,
                    cdn=cdn,
                )
                ok, note, info = check_audit(out, count, len(urls))
                m.extra["in_process_duration"] = info.get("duration")
            elif base == "floor":
                hosts_file = hosts_files["small" if is_small else "all"]
                m = run_measured(
                    name,
                    floor_argv(hosts_file, jobs["1"], lab.key, lab.known_hosts, cfg.forks),
                    env=env,
                    server=server,
                    cdn=cdn,
                )
                ok, note = check_floor(m.stdout, count)
            else:
                m = run_measured(
                    name,
                    ansible_argv(lab.inventory, limit, cfg.forks, URL),
                    env=aenv,
                    cwd=acwd,
                    server=server,
                    cdn=cdn,
                )
                ok, note = check_ansible(m.stdout, count)
            m.extra.pop("pss_timeline_mb", None)
            m.extra.update({"ok": ok, "check": note, "hosts": count})
            if not ok:
                m.extra["output_tail"] = (m.stdout + m.stderr)[-600:]
            return m, count

        # Warm-up (not counted): page cache, .pyc files, the first curl on each path.
        say("warm-up (not measured)")
        for name in ("floor_small", "auditor_small", "ansible_small"):
            one(name, 0)

        order = ["auditor", "floor", "ansible", "auditor_5url"]
        order += [f"{name}_small" for name in ("auditor", "floor", "ansible")]
        runs: dict[str, list[Measurement]] = {name: [] for name in order}
        for rep in range(1, cfg.repeats + 1):
            # Interleaved, so slow drift on the machine hits every contender alike.
            for name in order:
                m, count = one(name, rep)
                runs[name].append(m)
                say(
                    f"  rep {rep} {name:15} wall {m.wall:6.2f} s  cpu {m.cpu:6.2f} s "
                    f"({m.per_host_ms(count):6.1f} ms/host)  rss {m.maxrss_mb:6.1f} MB  "
                    f"sshd {m.extra.get('server_cpu', 0):6.2f} s  "
                    f"cdn {m.extra.get('cdn_cpu', 0):5.2f} s  "
                    f"{'ok' if m.extra.get('ok') else 'CHECK FAILED: ' + str(m.extra.get('check'))}"
                )
        # Latency with the lab unloaded: one host at a time, so each session has the cores to
        # itself (what a real fleet's hosts give it); 1 URL against 5 URLs per host.
        say("unloaded latency: forks 1 over the small set, 1 URL vs 5 URLs")
        latency: dict[str, Any] = {}
        for label, urls in (("1url", (URL,)), ("5url", URLS_5)):
            out = self.run_dir(f"latency-{label}")
            m = run_measured(
                f"latency {label}",
                audit_argv(lab.inventory, lab.known_hosts, urls, out, 1, small_limit),
                env=env,
                server=server,
                cdn=cdn,
            )
            ok, note, _ = check_audit(out, len(small), len(urls))
            durations = host_durations(out)
            latency[label] = {
                "median_host_seconds": round(median(durations), 3) if durations else None,
                "wall": round(m.wall, 3),
                "sshd_cpu_ms_per_host": round(1000 * m.extra["server_cpu"] / len(small), 1),
                "cdn_cpu_ms_per_host": round(1000 * m.extra["cdn_cpu"] / len(small), 1),
                "ok": ok,
                "check": note,
            }
            say(f"  {label}: median host {latency[label]['median_host_seconds']} s, {note}")
        med = {
            name: summarize(rs, len(small) if name.endswith("_small") else n)
            for name, rs in runs.items()
        }
        a, f, x, a5 = med["auditor"], med["floor"], med["ansible"], med["auditor_5url"]
        ratios = {
            "cpu_per_host_auditor_over_floor": _ratio(a["cpu_ms_per_host"], f["cpu_ms_per_host"]),
            "cpu_per_host_auditor_over_ansible": _ratio(a["cpu_ms_per_host"], x["cpu_ms_per_host"]),
            "cpu_per_host_ansible_over_auditor": _ratio(x["cpu_ms_per_host"], a["cpu_ms_per_host"]),
            "wall_auditor_over_floor": _ratio(a["wall"], f["wall"]),
            "wall_auditor_over_ansible": _ratio(a["wall"], x["wall"]),
            "wall_ansible_over_auditor": _ratio(x["wall"], a["wall"]),
            "wall_5url_over_1url": _ratio(a5["wall"], a["wall"]),
            "cpu_5url_over_1url": _ratio(a5["cpu"], a["cpu"]),
            "sshd_cpu_5url_over_1url": _ratio(
                a5["server_cpu_ms_per_host"], a["server_cpu_ms_per_host"]
            ),
            "latency_5url_over_1url": _ratio(
                latency["5url"]["median_host_seconds"] or 0.0,
                latency["1url"]["median_host_seconds"] or 0.0,
            ),
        }
        split = {
            name: fixed_and_marginal(med[f"{name}_small"]["cpu"], len(small), med[name]["cpu"], n)
            for name in ("auditor", "floor", "ansible")
        }
        ratios["per_rep_cpu_auditor_over_floor"] = [
            _ratio(a_.cpu, f_.cpu) for a_, f_ in zip(runs["auditor"], runs["floor"], strict=True)
        ]
        ratios["per_rep_wall_ansible_over_auditor"] = [
            _ratio(x_.wall, a_.wall)
            for a_, x_ in zip(runs["auditor"], runs["ansible"], strict=True)
        ]
        ratios["marginal_cpu_per_host_auditor_over_floor"] = _ratio(
            split["auditor"]["marginal_ms_per_host"], split["floor"]["marginal_ms_per_host"]
        )
        return {
            "hosts": n,
            "small_hosts": len(small),
            "forks": cfg.forks,
            "repeats": cfg.repeats,
            "url": URL,
            "urls_5": list(URLS_5),
            "ansible_command": " ".join(
                ansible_argv(Path("<lab.ini>"), "scale", cfg.forks, URL)[1:]
            ),
            "median": med,
            "fixed_and_marginal_cpu": split,
            "unloaded_latency": latency,
            "ratios": ratios,
            "all_checks_ok": all(m.extra.get("ok") for rs in runs.values() for m in rs),
            "runs": {
                name: [m.as_dict(int(m.extra.get("hosts", n))) for m in rs]
                for name, rs in runs.items()
            },
        }

    # optional: where the client CPU goes
    def profile(self, lab: Any) -> dict[str, Any]:
        from bench.profiling import summarize_profile

        cfg = self.cfg
        scale_hosts = [h for h in lab.hosts if h.site == "scale"]
        env = base_env(self.home)
        profiler = str(BENCH_DIR / "cpuprofile.py")
        out = self.run_dir("profile-auditor")
        a_prof = self.work / "auditor.prof"
        argv = audit_argv(lab.inventory, lab.known_hosts, [URL], out, cfg.forks, "scale")
        run_measured(
            "profile auditor",
            [sys.executable, profiler, str(a_prof), "-m", "auditor.cli", "audit", *argv[1:]],
            env=env,
        )
        f_prof = self.work / "floor.prof"
        hosts_file = self.work / "floor-hosts-all.txt"
        hosts_file.write_text("".join(f"{h.address}\n" for h in scale_hosts))
        job_file = self.work / "floor-job-1.json"
        job_file.write_text(json.dumps(floor_job((URL,))))
        fargv = floor_argv(
            hosts_file,
            job_file,
            lab.key,
            lab.known_hosts,
            cfg.forks,
        )
        run_measured("profile floor", [sys.executable, profiler, str(f_prof), *fargv[1:]], env=env)
        text, data = summarize_profile({"auditor": a_prof, "floor": f_prof}, len(scale_hosts))
        (BENCH_DIR / "profile.txt").write_text(text)
        return data

    # 2. the scale scenario
    def scale_scenario(self, lab: Any) -> dict[str, Any]:
        from auditor_lab.spec import BRIDGE

        cfg = self.cfg
        lab_hosts = [(h.name, h.address) for h in lab.hosts if h.site == "scale"]
        planned = scale.plan_hosts(lab_hosts, max(cfg.scale_total, len(lab_hosts)))
        counts = {k: sum(1 for h in planned if h.kind == k) for k in scale.GROUPS}
        inv = self.work / "scale.ini"
        inv.write_text(scale.inventory_text(planned, str(lab.key)))
        env = base_env(self.home)
        names = [h.name for h in planned]
        extra = ["--connect-timeout", f"{cfg.scale_connect_timeout:g}"]

        # The real hosts' own time, at the concurrency the 2-core lab sustains (with all 200
        # at once the lab's sshd + curl need more CPU than the cores have, and curl's own
        # --max-time expires on the hosts: a lab artefact, not the auditor's).
        say(
            f"scale: real hosts alone ({counts['lab']} lab hosts, {len(URLS_3)} URLs, "
            f"forks {cfg.forks})"
        )
        real_out = self.run_dir("scale-real")
        real = run_measured(
            "scale real hosts",
            audit_argv(inv, lab.known_hosts, URLS_3, real_out, cfg.forks, "lab_hosts", extra),
            env=env,
        )
        real_ok, real_note, _ = check_audit(real_out, counts["lab"], len(URLS_3))
        say(f"  wall {real.wall:.2f} s, cpu {real.cpu:.2f} s, {real_note}")

        out = self.run_dir("scale")
        nft_before = nft_after = {}
        neigh = -1
        scale.apply_rules(BRIDGE)
        try:
            nft_before = scale.read_counters()
            say(
                f"scale: {len(planned)} hosts ({counts['lab']} real, {counts['refuse']} refuse, "
                f"{counts['blackhole']} black-holed), {len(URLS_3)} URLs, forks {cfg.scale_forks}, "
                f"connect timeout {cfg.scale_connect_timeout:g} s"
            )
            m = run_measured(
                "scale",
                audit_argv(inv, lab.known_hosts, URLS_3, out, cfg.scale_forks, None, extra),
                env=env,
                timeout=1200,
                watch=out / "results.jsonl",
                interval=0.25,
            )
            nft_after = scale.read_counters()
            neigh = scale.neighbours()
        finally:
            scale.remove_rules()
        say(
            f"  wall {m.wall:.2f} s, cpu {m.cpu:.2f} s, peak RSS {m.maxrss_mb:.1f} MB "
            f"(whole tree {m.tree_rss_mb:.1f} MB), exit {m.returncode}"
        )

        # every host exactly once in every report
        checks: dict[str, Any] = {}
        checks["json"] = scale.count_names(scale.json_report_names(out / "report.json"), names)
        csv_names, csv_bad = scale.csv_report_names(out / "report.csv", len(URLS_3))
        checks["csv"] = {**scale.count_names(csv_names, names), "rows_not_once": csv_bad}
        html_names = scale.html_report_names(out / "report.html")
        checks["html"] = (
            scale.count_names(html_names, names)
            if html_names is not None
            else {"error": "no embedded data"}
        )
        every_once = all(
            c.get("listed") == len(names)
            and c.get("distinct") == len(names)
            and not c.get("duplicates")
            and not c.get("missing")
            and not c.get("unexpected")
            and not c.get("rows_not_once")
            for c in checks.values()
        )
        doc = json.loads((out / "report.json").read_text())
        summary = doc["summary"]
        real_reachable = [t.get("reachable", 0) for t in summary.get("targets", [])]

        # rendering again from results.jsonl: HTML + CSV + JSON (and all four formats)
        render_out = self.run_dir("scale-render")
        render = run_measured(
            "render html+csv+json",
            [
                venv_bin("auditor"),
                "report",
                str(out / "results.jsonl"),
                "-o",
                str(render_out),
                "--force",
                "--format",
                "html",
                "--format",
                "csv",
                "--format",
                "json",
            ],
            env=env,
        )
        per_format = {}
        for fmt in ("html", "csv", "json", "junit"):
            fout = self.run_dir(f"scale-render-{fmt}")
            r = run_measured(
                f"render {fmt}",
                [
                    venv_bin("auditor"),
                    "report",
                    str(out / "results.jsonl"),
                    "-o",
                    str(fout),
                    "--force",
                    "--format",
                    fmt,
                ],
                env=env,
                sample=False,
            )
            per_format[fmt] = {
                "wall": round(r.wall, 3),
                "cpu": round(r.cpu, 3),
                "maxrss_mb": round(r.maxrss_mb, 1),
            }
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}

        blackholed = counts["blackhole"]
        target_wall = 1.2 * (blackholed / cfg.scale_forks) * cfg.scale_connect_timeout + real.wall
        return {
            "hosts": len(planned),
            "kinds": counts,
            "urls": list(URLS_3),
            "forks": cfg.scale_forks,
            "connect_timeout": cfg.scale_connect_timeout,
            "real_hosts_run": {**real.as_dict(counts["lab"]), "ok": real_ok, "check": real_note},
            "run": m.as_dict(len(planned)),
            "exit_status": m.returncode,
            "in_process_duration": doc.get("run", {}).get("duration"),
            "host_outcomes": {k: v for k, v in summary.get("host_outcomes", {}).items() if v},
            "target_outcomes": {k: v for k, v in summary.get("target_outcomes", {}).items() if v},
            "real_hosts_reachable_per_url": real_reachable,
            "real_hosts_all_reachable": real_reachable == [counts["lab"]] * len(URLS_3),
            "audited": summary.get("audited"),
            "target_wall": round(target_wall, 2),
            "target_formula": (
                f"1.2 x ({blackholed} black-holed / {cfg.scale_forks} forks) x "
                f"{cfg.scale_connect_timeout:g} s + {real.wall:.2f} s (real hosts alone, "
                f"forks {cfg.forks})"
            ),
            "every_host_once": every_once,
            "report_checks": checks,
            "render": {**render.as_dict(), "formats": "html+csv+json"},
            "render_per_format": per_format,
            "report_sizes": sizes,
            "html_mb": round(sizes.get("report.html", 0) / 1e6, 2),
            "nft": {
                "table": f"{scale.NFT_FAMILY} {scale.NFT_TABLE}",
                "counters": {k: nft_after.get(k, 0) - nft_before.get(k, 0) for k in nft_after},
                "neighbour_entries": neigh,
                "route_device": BRIDGE,
                "nothing_left_the_machine": (
                    nft_after.get("leak", 0) == 0
                    and nft_after.get("catchall", 0) == 0
                    and neigh == 0
                ),
            },
        }

    # 4. the fleet scenario (issue 16): memory independent of fleet size, against a TCP floor
    def fleet(self, lab: Any) -> dict[str, Any]:
        from auditor_lab.spec import BRIDGE

        cfg = self.cfg
        env = base_env(self.home)
        sizes = sorted(set(cfg.fleet_sizes))
        biggest = sizes[-1]
        runs: dict[str, Any] = {}
        found: dict[str, Any] = {
            "forks": FLEET_FORKS,
            "timeout": FLEET_TIMEOUT,
            "urls": list(URLS_3),
            "refuse_share": FLEET_REFUSE_SHARE,
            "sizes": sizes,
            "runs": runs,
        }
        scale.apply_rules(BRIDGE)
        try:
            for n in sizes:
                refuse = round(n * FLEET_REFUSE_SHARE)
                planned = scale.plan_mix(refuse, n - refuse)
                inv = self.work / f"fleet-{n}.ini"
                inv.write_text(scale.inventory_text(planned, str(lab.key)))
                if n == biggest:
                    hosts_file = self.work / f"fleet-{n}-addresses.txt"
                    hosts_file.write_text("".join(f"{h.address}\n" for h in planned))
                    say(f"fleet: TCP floor, {n:,} connects, forks {FLEET_FORKS}")
                    floor = run_measured(
                        "tcp floor",
                        [
                            sys.executable,
                            str(BENCH_DIR / "tcpfloor.py"),
                            "--hosts",
                            str(hosts_file),
                            "--forks",
                            str(FLEET_FORKS),
                            "--timeout",
                            f"{FLEET_TIMEOUT:g}",
                        ],
                        env=env,
                        timeout=1800,
                    )
                    found["floor"] = {
                        **floor.as_dict(n),
                        "summary": _last_json(floor.stdout),
                    }
                    say(f"  floor wall {floor.wall:.2f} s, {found['floor']['summary']}")
                out = self.run_dir(f"fleet-{n}")
                say(
                    f"fleet: {n:,} hosts ({refuse:,} refuse, {n - refuse:,} black-holed), "
                    f"{len(URLS_3)} URLs, forks {FLEET_FORKS}, --timeout {FLEET_TIMEOUT:g}"
                )
                m = run_measured(
                    f"fleet {n}",
                    audit_argv(
                        inv,
                        lab.known_hosts,
                        URLS_3,
                        out,
                        FLEET_FORKS,
                        None,
                        ["--timeout", f"{FLEET_TIMEOUT:g}"],
                    ),
                    env=env,
                    timeout=1800,
                    watch=out / "results.jsonl",
                    interval=0.25,
                )
                phase = m.extra.get("phase_rss_mb", {})
                entry: dict[str, Any] = {
                    "hosts": n,
                    "run": m.as_dict(n),
                    "exit_status": m.returncode,
                    "peak_tree_rss_mb": round(m.tree_rss_mb, 1),
                    "audit_phase_rss_mb": phase.get("audit"),
                    "report_phase_rss_mb": phase.get("report"),
                    "rss_at_audit_start_mb": phase.get("at_audit_start"),
                    "audit_growth_mb": phase.get("audit_growth"),
                    "audit_started_s": phase.get("audit_started_s"),
                    "audit_ended_s": phase.get("audit_ended_s"),
                }
                say(
                    f"  wall {m.wall:.2f} s, cpu {m.cpu:.2f} s, peak tree RSS "
                    f"{m.tree_rss_mb:.1f} MB (at the first result {phase.get('at_audit_start')} "
                    f"MB, audit phase {phase.get('audit')} MB (+{phase.get('audit_growth')}), "
                    f"reports {phase.get('report')} MB; end record at "
                    f"{phase.get('audit_ended_s')} s), exit {m.returncode}"
                )
                if n == biggest:
                    entry["report_checks"] = fleet_report_checks(out, [h.name for h in planned])
                    entry["report_sizes"] = {
                        p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()
                    }
                    say(f"  every host once: {entry['report_checks']['every_host_once']}")
                runs[str(n)] = entry
        finally:
            scale.remove_rules()
        big = runs[str(biggest)]
        found["wall_over_floor"] = _ratio(big["run"]["wall"], found["floor"]["wall"])
        found["curve"] = fleet_curve(runs)
        return found


def _last_json(stdout: str) -> dict[str, Any]:
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": stdout[-200:]}
    return data if isinstance(data, dict) else {"error": stdout[-200:]}


def fleet_report_checks(out: Path, names: Sequence[str]) -> dict[str, Any]:
    """Every host exactly once in report.json, report.csv, report.html and in each URL's
    testsuite of junit.xml."""
    checks: dict[str, Any] = {}
    checks["json"] = scale.count_names(scale.json_report_names(out / "report.json"), names)
    csv_names, csv_bad = scale.csv_report_names(out / "report.csv", len(URLS_3))
    checks["csv"] = {**scale.count_names(csv_names, names), "rows_not_once": csv_bad}
    html_names = scale.html_report_names(out / "report.html")
    checks["html"] = (
        scale.count_names(html_names, names)
        if html_names is not None
        else {"error": "no embedded data"}
    )
    for url, listed in scale.junit_report_names(out / "junit.xml", URLS_3).items():
        checks[f"junit {url}"] = scale.count_names(listed, names)
    checks["every_host_once"] = all(
        c.get("listed") == len(names)
        and c.get("distinct") == len(names)
        and not c.get("duplicates")
        and not c.get("missing")
        and not c.get("unexpected")
        and not c.get("rows_not_once")
        for c in checks.values()
    )
    return checks


def fleet_curve(runs: dict[str, Any]) -> dict[str, Any]:
    """Peak tree RSS per fleet size, and the slope between the two largest sizes (MB per
    10,000 more hosts), for the whole run and for its audit phase."""
    sizes = sorted(int(k) for k in runs)
    keys = (
        "peak_tree_rss_mb",
        "rss_at_audit_start_mb",
        "audit_phase_rss_mb",
        "audit_growth_mb",
        "report_phase_rss_mb",
    )
    points = {n: {key: runs[str(n)][key] for key in keys} for n in sizes}
    curve: dict[str, Any] = {"points": points}
    if len(sizes) >= 2:
        a, b = sizes[-2], sizes[-1]
        per = (b - a) / 10_000
        for key in keys:
            low, high = points[a][key], points[b][key]
            curve[f"slope_{key.removesuffix('_mb')}_mb_per_10k"] = (
                round((high - low) / per, 2) if low is not None and high is not None else None
            )
        curve["slope_between"] = [a, b]
    return curve


def fixed_and_marginal(small_cpu: float, small: int, big_cpu: float, big: int) -> dict[str, float]:
    """Split CPU seconds into a fixed cost (startup, reports) and a marginal cost per host,
    from two runs of different sizes (a straight line through both points)."""
    if big <= small:
        raise ValueError("the big run must have more hosts")
    marginal = (big_cpu - small_cpu) / (big - small)
    return {
        "fixed_s": round(small_cpu - marginal * small, 3),
        "marginal_ms_per_host": round(1000 * marginal, 2),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


# --- targets and the table ---------------------------------------------------------------------


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: Any, met: bool | None) -> None:
        rows.append({"target": name, "goal": target, "measured": measured, "met": met})

    cmp = results.get("compare")
    if cmp:
        r = cmp["ratios"]
        v = r["cpu_per_host_auditor_over_floor"]
        add("client CPU/host vs floor", "auditor/floor <= 1.25", v, v is not None and v <= 1.25)
        v = r["cpu_per_host_ansible_over_auditor"]
        add("client CPU/host vs ansible", "ansible/auditor >= 15", v, v is not None and v >= 15)
        v = r["wall_ansible_over_auditor"]
        add("wall vs ansible (same forks)", "ansible/auditor >= 2", v, v is not None and v >= 2)
        v = r["wall_5url_over_1url"]
        add("5 URLs vs 1 URL wall", "<= 1.3", v, v is not None and v <= 1.3)
        v = r.get("latency_5url_over_1url")
        add("5 vs 1 URL, unloaded host latency (info)", "<= 1.3", v, v is not None and v <= 1.3)
    sc = results.get("scale")
    if sc:
        wall = sc["run"]["wall"]
        add(
            "scale wall", f"<= {sc['target_wall']:.1f} s", round(wall, 2), wall <= sc["target_wall"]
        )
        rss = sc["run"].get("tree_rss_mb") or sc["run"]["maxrss_mb"]
        add(
            f"scale ({sc['hosts']:,}) peak RSS, whole tree",
            f"<= {SCALE_RSS_MB:g} MB",
            round(rss, 1),
            rss <= SCALE_RSS_MB,
        )
        add(
            "scale: every host once in json/csv/html",
            "yes",
            sc["every_host_once"],
            bool(sc["every_host_once"]),
        )
        real_ok = sc.get("real_hosts_all_reachable")
        add("scale: real hosts audited, all URLs OK", "yes (sanity)", real_ok, bool(real_ok))
        rw = sc["render"]["wall"]
        add("render html+csv+json", "< 10 s", round(rw, 2), rw < 10)
        add("report.html size", "< 15 MB", sc["html_mb"], sc["html_mb"] < 15)
        add(
            "no packet left the machine",
            "yes",
            sc["nft"]["nothing_left_the_machine"],
            bool(sc["nft"]["nothing_left_the_machine"]),
        )
    fl = results.get("fleet")
    if fl:
        big = str(max(fl["sizes"]))
        run = fl["runs"][big]
        ratio = fl.get("wall_over_floor")
        add(
            f"fleet {int(big):,} wall vs TCP floor",
            f"<= {FLEET_WALL_RATIO:g}x floor ({fl['floor']['wall']:.1f} s)",
            ratio,
            ratio is not None and ratio <= FLEET_WALL_RATIO,
        )
        rss = run["peak_tree_rss_mb"]
        add(
            f"fleet {int(big):,} peak RSS, whole tree",
            f"<= {FLEET_RSS_MB:g} MB",
            rss,
            rss <= FLEET_RSS_MB,
        )
        checks = run.get("report_checks", {})
        add(
            f"fleet {int(big):,}: every host once (json/csv/html/junit)",
            "yes",
            checks.get("every_host_once"),
            bool(checks.get("every_host_once")),
        )
        html_mb = round(run.get("report_sizes", {}).get("report.html", 0) / 1e6, 2)
        add(
            f"fleet {int(big):,}: report.html size", f"< {HTML_MB:g} MB", html_mb, html_mb < HTML_MB
        )
        slope = fl["curve"].get("slope_audit_growth_mb_per_10k")
        add(
            "fleet: growth while auditing, MB per 10k hosts",
            f"<= {SLOPE_MB_PER_10K:g} (near zero)",
            slope,
            slope is not None and slope <= SLOPE_MB_PER_10K,
        )
        slope = fl["curve"].get("slope_peak_tree_rss_mb_per_10k")
        add("fleet: whole-run peak RSS slope, MB per 10k hosts (info)", "", slope, None)
    bb = results.get("browser_big")
    if bb:
        goal = f"< {bb['goal_seconds']:g} s"
        opened = bb["seconds"]["open"]
        filtered = max(bb["seconds"]["search"], bb["seconds"]["outcome"])
        add(
            f"{bb['hosts']:,}-host report opens in Chromium",
            goal,
            opened,
            opened < bb["goal_seconds"],
        )
        add(
            f"{bb['hosts']:,}-host report filters in Chromium",
            goal,
            filtered,
            filtered < bb["goal_seconds"],
        )
    hp = results.get("help")
    if hp:
        add("audit --help", "< 300 ms", hp["median_ms"], hp["median_ms"] < 300)
    br = results.get("browser")
    if br:
        goal = f"< {br['goal_seconds']:g} s"
        opened, filtered = (
            br["seconds"]["open"],
            max(br["seconds"]["search"], br["seconds"]["outcome"]),
        )
        add(f"{br['hosts']:,}-host report opens in Chromium", goal, opened, opened < 2)
        add(f"{br['hosts']:,}-host report filters in Chromium", goal, filtered, filtered < 2)
    return rows


def render_table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    m, v = results["machine"], results["versions"]
    lines.append(
        f"Machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), "
        f"{m['memory_gib']} GiB RAM, {m['system']} {m['kernel']}"
    )
    lines.append(
        "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if k not in ("openssh",))
        + f", {v.get('openssh', '')}"
    )
    cmp = results.get("compare")
    if cmp:
        lines.append("")
        lines.append(
            f"{cmp['hosts']}-host lab (group scale, real OpenSSH), 1 URL, forks {cmp['forks']}, "
            f"median of {cmp['repeats']} run(s)"
        )
        header = (
            f"{'contender':22} {'wall s':>8} {'client CPU s':>13} {'CPU ms/host':>12} "
            f"{'peak RSS MB':>12} {'tree PSS MB':>12} {'sshd CPU ms/host':>17} "
            f"{'CDN ms/host':>12} {'busy %':>7}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        names = {
            "auditor": "auditor (audit CLI)",
            "floor": "floor (bare asyncssh)",
            "ansible": "ansible -m raw",
            "auditor_5url": "auditor, 5 URLs",
        }
        for key, label in names.items():
            s = cmp["median"][key]
            lines.append(
                f"{label:22} {s['wall']:8.2f} {s['cpu']:13.2f} {s['cpu_ms_per_host']:12.1f} "
                f"{s['maxrss_mb']:12.1f} {s['tree_pss_mb']:12.1f} "
                f"{s['server_cpu_ms_per_host']:17.1f} {s.get('cdn_cpu_ms_per_host', 0):12.1f} "
                f"{s['machine_busy_pct']:7.1f}"
            )
        r = cmp["ratios"]
        lines.append("")
        lines.append(
            f"Ratios: client CPU/host auditor/floor {r['cpu_per_host_auditor_over_floor']}, "
            f"auditor/ansible {r['cpu_per_host_auditor_over_ansible']} "
            f"(ansible/auditor {r['cpu_per_host_ansible_over_auditor']}x); "
            f"wall auditor/floor {r['wall_auditor_over_floor']}, auditor/ansible "
            f"{r['wall_auditor_over_ansible']} "
            f"(ansible/auditor {r['wall_ansible_over_auditor']}x); "
            f"5-URL/1-URL wall {r['wall_5url_over_1url']}"
        )
        lat = cmp.get("unloaded_latency")
        if lat:
            lines.append(
                f"5 URLs vs 1 URL: wall {r['wall_5url_over_1url']}x on the loaded lab "
                f"(sshd CPU/host {r.get('sshd_cpu_5url_over_1url')}x); unloaded "
                f"(forks 1, {cmp['small_hosts']} hosts) median host time "
                f"{lat['1url']['median_host_seconds']} s -> "
                f"{lat['5url']['median_host_seconds']} s = {r.get('latency_5url_over_1url')}x"
            )
        if r.get("per_rep_cpu_auditor_over_floor"):
            lines.append(
                f"Per repeat: client CPU auditor/floor {r['per_rep_cpu_auditor_over_floor']}; "
                f"wall ansible/auditor {r['per_rep_wall_ansible_over_auditor']}"
            )
        split = cmp.get("fixed_and_marginal_cpu", {})
        if split:
            parts = [
                f"{name} {d['fixed_s']:.2f} s + {d['marginal_ms_per_host']:.1f} ms/host"
                for name, d in split.items()
            ]
            lines.append(
                f"Client CPU split (fixed + marginal, from {cmp['small_hosts']}- and "
                f"{cmp['hosts']}-host runs): " + "; ".join(parts) + "; marginal auditor/floor "
                f"{r.get('marginal_cpu_per_host_auditor_over_floor')}"
            )
        lines.append(f"  * {SERVER_BOUND_NOTE}.")
        lines.append(f"  * {CLIENT_NOTE}.")
        lines.append(
            "  * peak RSS = ru_maxrss (largest single process of the tree); tree PSS = sampled "
            "peak of the whole tree's proportional memory; sshd CPU = the lab hosts' sshd "
            "listeners and their reaped sessions (privsep sshd, sh, the probe's tools, curl); "
            "CDN = the lab's HTTPS server process; busy = all cores, whole machine."
        )
        if not cmp["all_checks_ok"]:
            lines.append("  !! some runs did not audit every host; see results.json runs[].extra")
    sc = results.get("scale")
    if sc:
        k = sc["kinds"]
        lines.append("")
        lines.append(
            f"Scale: {sc['hosts']} hosts ({k['lab']} real, {k['refuse']} refuse, {k['blackhole']} "
            f"black-holed), {len(sc['urls'])} URLs, forks {sc['forks']}, connect timeout "
            f"{sc['connect_timeout']:g} s"
        )
        run = sc["run"]
        lines.append(
            f"  wall {run['wall']:.2f} s (target {sc['target_wall']:.2f} s = "
            f"{sc['target_formula']}), client CPU {run['cpu']:.2f} s, "
            f"peak RSS {run['maxrss_mb']:.1f} MB, exit {sc['exit_status']}"
        )
        lines.append(
            f"  host outcomes: {sc['host_outcomes']}, audited {sc['audited']}; verdicts "
            f"{sc.get('target_outcomes')}; real hosts reachable per URL "
            f"{sc.get('real_hosts_reachable_per_url')}"
        )
        lines.append(f"  every host exactly once in json/csv/html: {sc['every_host_once']}")
        rend = sc["render"]
        per = ", ".join(f"{f} {d['wall']:.2f} s" for f, d in sc["render_per_format"].items())
        lines.append(
            f"  re-render html+csv+json from results.jsonl: {rend['wall']:.2f} s wall, "
            f"{rend['maxrss_mb']:.0f} MB peak RSS (alone: {per}); report.html {sc['html_mb']} MB"
        )
        nft = sc["nft"]
        lines.append(
            f"  nft {nft['table']} (packets stopped in output, SYN retries included): "
            f"{nft['counters']}; "
            f"neighbour entries {nft['neighbour_entries']}; "
            f"nothing left the machine: {nft['nothing_left_the_machine']}"
        )
    fl = results.get("fleet")
    if fl:
        lines.append("")
        lines.append(
            f"Fleet: {FLEET_REFUSE_SHARE:.0%} refusing, the rest black-holed SSH hosts, "
            f"{len(fl['urls'])} URLs, forks {fl['forks']}, --timeout {fl['timeout']:g}"
        )
        floor = fl["floor"]
        lines.append(
            f"  TCP floor ({max(fl['sizes']):,} connects, same forks and timeout): "
            f"{floor['wall']:.2f} s {floor.get('summary', {}).get('outcomes', '')}"
        )
        lines.append(
            f"  {'hosts':>8} {'wall s':>8} {'CPU s':>8} {'tree RSS MB':>12} {'at start':>9} "
            f"{'audit MB':>9} {'growth':>7} {'reports MB':>11} {'end rec s':>10}"
        )
        for n in sorted(int(k) for k in fl["runs"]):
            r = fl["runs"][str(n)]
            lines.append(
                f"  {n:>8,} {r['run']['wall']:8.2f} {r['run']['cpu']:8.2f} "
                f"{r['peak_tree_rss_mb']:12.1f} {r['rss_at_audit_start_mb'] or 0:9.1f} "
                f"{r['audit_phase_rss_mb'] or 0:9.1f} {r['audit_growth_mb'] or 0:7.1f} "
                f"{r['report_phase_rss_mb'] or 0:11.1f} {r['audit_ended_s'] or 0:10.1f}"
            )
        curve = fl["curve"]
        if "slope_between" in curve:
            a, b = curve["slope_between"]
            lines.append(
                f"  slope {a:,} -> {b:,} hosts, MB per 10,000 hosts: whole run "
                f"{curve['slope_peak_tree_rss_mb_per_10k']}, at the first result (inventory "
                f"and transports loaded) {curve['slope_rss_at_audit_start_mb_per_10k']}, "
                f"growth while auditing {curve['slope_audit_growth_mb_per_10k']}, report "
                f"phase {curve['slope_report_phase_rss_mb_per_10k']}"
            )
        lines.append(f"  wall / floor: {fl['wall_over_floor']}")
    br = results.get("browser")
    if br:
        lines.append("")
        lines.append(browser.describe(br))
    bb = results.get("browser_big")
    if bb:
        lines.append(browser.describe(bb))
    hp = results.get("help")
    if hp:
        lines.append("")
        lines.append(
            f"audit --help: median {hp['median_ms']:.0f} ms (python startup alone "
            f"{hp['python_startup_ms']:.0f} ms)"
        )
    targets = results.get("targets", [])
    if targets:
        lines.append("")
        lines.append("Targets (issues 5 and 16):")
        for t in targets:
            mark = "INFO" if t["met"] is None else "PASS" if t["met"] else "MISS"
            lines.append(
                f"  [{mark}] {t['target']:40} goal {t['goal']:24} measured {t['measured']}"
            )
    if "total_seconds" in results:
        lines.append("")
        lines.append(
            f"Total bench time: {results['total_seconds']:.0f} s "
            f"({'quick' if results['quick'] else 'full'} run)"
        )
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


class _Terminated(Exception):
    pass


def _on_term(signum: int, _frame: Any) -> None:
    raise _Terminated(f"signal {signum}")


def main() -> int:
    from auditor_lab import lab_down, lab_up, preflight

    cfg = config_from_env(os.environ)
    signal.signal(signal.SIGTERM, _on_term)
    problems = preflight()
    if problems:
        say("bench: the lab cannot run here: " + "; ".join(problems))
        return 2
    work = Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    bench = Bench(cfg, work)
    bench.home.mkdir()
    results: dict[str, Any] = {
        "schema": 1,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": cfg.quick,
        "machine": machine_info(),
        "versions": versions(),
        "notes": {"wall": SERVER_BOUND_NOTE, "client_cpu_per_host": CLIENT_NOTE},
    }
    say(render_table(results))
    failed: str | None = None
    try:
        with lab_lock():
            # Timed under the lock too, so no lab test session competes for the cores.
            say("\naudit --help timing")
            results["help"] = bench.help_time()
            if "browser" in cfg.parts:
                # No lab needed: a generated 10,000-host report in headless Chromium, timed
                # while the lab is down so its sshd processes do not share the cores.
                say("\nreport.html in headless Chromium")
                results["browser"] = browser.measure(repeats=cfg.repeats)
                say(browser.describe(results["browser"]))
                big = max(cfg.fleet_sizes)
                say(f"\n{big:,}-host report.html in headless Chromium")
                results["browser_big"] = browser.measure(
                    hosts=big, repeats=1, timeout_s=600.0, goal=BROWSER_BIG_SECONDS
                )
                say(browser.describe(results["browser_big"]))
            lab_dir = work / "lab"
            say(f"lab up: {cfg.lab_hosts} extra hosts in {lab_dir}")
            t0 = time.monotonic()
            try:
                lab = lab_up(lab_dir, extra_hosts=cfg.lab_hosts)
                results["lab_up_seconds"] = round(time.monotonic() - t0, 1)
                say(f"lab up in {results['lab_up_seconds']} s")
                say(
                    f"\n{cfg.lab_hosts}-host comparison, forks {cfg.forks}, {cfg.repeats} repeat(s)"
                )
                if "compare" in cfg.parts:
                    results["compare"] = bench.compare(lab)
                if cfg.profile:
                    say("\nprofiling the auditor and the floor (cProfile, CPU clock)")
                    results["profile"] = bench.profile(lab)
                if "scale" in cfg.parts:
                    say("")
                    results["scale"] = bench.scale_scenario(lab)
                if "fleet" in cfg.parts:
                    say("")
                    results["fleet"] = bench.fleet(lab)
            finally:
                scale.remove_rules()
                say("lab down")
                lab_down(lab_dir)
    except (Exception, KeyboardInterrupt, _Terminated) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        say(f"bench failed: {failed}")
        import traceback

        traceback.print_exc()
    finally:
        if cfg.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["targets"] = evaluate_targets(results)
    results["total_seconds"] = round(time.monotonic() - bench.started, 1)
    results["config"] = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    if failed:
        results["failed"] = failed
    cfg.results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    say("\n" + "=" * 100)
    say(render_table(results))
    say(f"\nresults: {cfg.results_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
