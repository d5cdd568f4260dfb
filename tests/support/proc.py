"""What every process on this machine was started with, for tests that prove a secret never
reaches a command line."""

from __future__ import annotations

import os


def command_lines() -> list[bytes]:
    """`/proc/PID/cmdline` of every process that still exists when it is read."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    found.append(handle.read())
            except OSError:
                continue
    return found
