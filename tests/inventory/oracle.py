"""ansible-core as the reference the inventory tests compare against.

Two ways to ask it: `run_cli` runs the real `ansible-inventory` command (about a second a
run, so callers run them in parallel), and `AnsibleWorker` keeps ansible-core loaded in
one process (`ansible_worker.py`) for the property tests' hundreds of questions. Both get
an environment with no user configuration and with an unparsable source made an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ANSIBLE_INVENTORY = BIN / "ansible-inventory"
WORKER = Path(__file__).with_name("ansible_worker.py")


def ansible_env(home: Path, enabled: str) -> dict[str, str]:
    """An environment that reads no user configuration and only the given plugins."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "ansible.cfg"
    config.touch()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_INVENTORY_ENABLED": enabled,
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_NOCOLOR": "1",
    }


def run_cli(home: Path, enabled: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `ansible-inventory ARGS` isolated in `home`."""
    return subprocess.run(
        [str(ANSIBLE_INVENTORY), *args],
        env=ansible_env(home, enabled),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class AnsibleWorker:
    """ansible-core's inventory plugins and `--list` code, one request at a time."""

    def __init__(self, home: Path, enabled: str = "ini") -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            env=ansible_env(home, enabled),
            cwd=home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def ask(self, **request: Any) -> dict[str, Any]:
        """Send one request; the reply has "ok" or "error"."""
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        assert line, "the ansible worker died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def list(self, path: Path, limit: str | None = None) -> dict[str, Any]:
        """`ansible-inventory -i PATH --list [--limit LIMIT]`, as "ok" or "error"."""
        return self.ask(op="list", path=str(path), limit=limit)

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def canonical(data: Any) -> str:
    """JSON text that tells apart what == does not (True from 1, 1 from 1.0)."""
    return json.dumps(data, sort_keys=True)


def assert_same_listing(ours: Any, theirs: Any) -> None:
    """Equal, types included; the plain == first for pytest's readable diff."""
    assert ours == theirs
    assert canonical(ours) == canonical(theirs)
