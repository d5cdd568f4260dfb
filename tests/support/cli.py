"""The installed `audit` command, run as a user runs it, and its JSON report read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def audit(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`audit ARGS`. `env` is the whole environment when given (tests that must keep a
    variable out pass one; `environ` builds one from this process's)."""
    return subprocess.run(
        [str(BIN / "audit"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
    )


def environ(**changes: str | None) -> dict[str, str]:
    """This process's environment with `changes` applied (None removes a variable)."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def report_hosts(out: Path) -> dict[str, dict[str, Any]]:
    """The hosts of `out/report.json`, by inventory name."""
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {h["host"]["name"]: h for h in report["hosts"]}


def audit_argv(inventory: Path, known_hosts: Path, url: str, out: Path, *args: str) -> list[str]:
    """The command line of an audit of one URL over `inventory`, reporting into `out`."""
    return [
        str(BIN / "audit"),
        "-i",
        str(inventory),
        "--known-hosts",
        str(known_hosts),
        "--url",
        url,
        "-o",
        str(out),
        *args,
    ]
