"""Where the client CPU goes: cProfile output grouped by area, and the top functions."""

from __future__ import annotations

import io
import pstats
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# (area, substring of the code's file path); the first match wins.
AREAS: tuple[tuple[str, str], ...] = (
    ("asyncssh crypto wrappers", "/asyncssh/crypto/"),
    ("asyncssh kex/auth/keys", "/asyncssh/kex"),
    ("asyncssh kex/auth/keys", "/asyncssh/auth"),
    ("asyncssh kex/auth/keys", "/asyncssh/public_key"),
    ("asyncssh kex/auth/keys", "/asyncssh/ed25519"),
    ("asyncssh connection/channel/packets", "/asyncssh/"),
    ("cryptography (python)", "/cryptography/"),
    ("jinja2 / markupsafe (reports)", "/jinja2/"),
    ("jinja2 / markupsafe (reports)", "/markupsafe/"),
    ("report templates", "<template>"),
    ("click", "/click/"),
    ("yaml", "/yaml/"),
    ("auditor.reporters", "/auditor/reporters/"),
    ("auditor.inventory", "/auditor/inventory/"),
    ("auditor.transports", "/auditor/transports/"),
    ("auditor.probes", "/auditor/probes/"),
    ("auditor (scheduler, results, cli, other)", "/auditor/"),
    ("asyncio", "/asyncio/"),
    ("import machinery", "<frozen importlib"),
    ("json", "/json/"),
    ("stdlib (other)", "/lib/python3"),
)


def area_of(filename: str, funcname: str) -> str:
    if filename == "~":  # a C function: name it by what it is
        lowered = funcname.lower()
        if "openssl" in lowered or "_rust" in lowered or "cryptography" in lowered:
            return "crypto (C)"
        if any(w in lowered for w in ("select", "epoll", "poll", "send", "recv", "connect")):
            return "syscalls (socket, epoll)"
        if "marshal" in lowered or "exec" in lowered or "compile" in lowered:
            return "import machinery"
        return "builtins (C)"
    for area, marker in AREAS:
        if marker in filename:
            return area
    return "other"


def by_area(stats: pstats.Stats) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (filename, _line, funcname), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        area = area_of(filename, funcname)
        totals[area] = totals.get(area, 0.0) + tottime
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def cumulative(stats: pstats.Stats, names: Mapping[str, tuple[str, str]]) -> dict[str, float]:
    """Cumulative seconds of chosen functions: label -> (file substring, function name)."""
    found: dict[str, float] = {}
    for label, (file_part, func) in names.items():
        best = 0.0
        for (filename, _line, funcname), (_cc, _nc, _tt, cumtime, _c) in stats.stats.items():  # type: ignore[attr-defined]
            if funcname == func and file_part in filename:
                best = max(best, cumtime)
        found[label] = round(best, 3)
    return found


KEY_FUNCTIONS = {
    "imports (all)": ("<frozen importlib._bootstrap>", "_find_and_load"),
    "event-loop callbacks (all)": ("/asyncio/events.py", "_run"),
    "auditor build_config (inventory, targets)": ("/auditor/audit.py", "build_config"),
    "auditor write_reports": ("/auditor/reporters/", "write_reports"),
    "auditor results stream (writer.host)": ("/auditor/results.py", "host"),
    "auditor parse_posix": ("/auditor/probes/posix.py", "parse_posix"),
    "auditor progress": ("/auditor/reporters/terminal.py", "update"),
    "asyncssh send_packet": ("/asyncssh/connection.py", "send_packet"),
    "asyncssh _recv_packet": ("/asyncssh/connection.py", "_recv_packet"),
}


def summarize_profile(files: Mapping[str, Path], hosts: int) -> tuple[str, dict[str, Any]]:
    """A readable text (for bench/profile.txt) and the figures (for results.json)."""
    out = io.StringIO()
    data: dict[str, Any] = {}
    for name, path in files.items():
        if not path.exists():
            data[name] = {"error": "no profile written"}
            continue
        stats = pstats.Stats(str(path), stream=out)
        total = stats.total_tt  # type: ignore[attr-defined]
        areas = by_area(stats)
        key = cumulative(stats, KEY_FUNCTIONS)
        data[name] = {
            "profiled_seconds": round(total, 3),
            "ms_per_host": round(1000 * total / max(hosts, 1), 2),
            "areas_seconds": {k: round(v, 3) for k, v in areas.items()},
            "key_cumulative_seconds": key,
        }
        out.write(
            f"===== {name}: {total:.2f} s profiled ({1000 * total / max(hosts, 1):.1f} ms/host)\n"
        )
        out.write("by area (own time):\n")
        for area, secs in areas.items():
            if secs >= 0.005:
                out.write(f"  {area:32} {secs:7.3f} s  {100 * secs / total:5.1f} %\n")
        out.write("key functions (cumulative):\n")
        for label, secs in key.items():
            out.write(f"  {label:32} {secs:7.3f} s\n")
        out.write("\ntop 30 by own time:\n")
        stats.sort_stats("tottime").print_stats(30)
        out.write("\ntop 30 by cumulative time:\n")
        stats.sort_stats("cumulative").print_stats(30)
        out.write("\n")
    return out.getvalue(), data
