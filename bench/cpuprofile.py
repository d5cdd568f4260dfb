"""Run a module or script under cProfile timed by the process's CPU clock.

    python bench/cpuprofile.py OUT.prof -m package.module ARGS...
    python bench/cpuprofile.py OUT.prof script.py ARGS...

`python -m cProfile` times with the wall clock, so on a loaded machine a `send()` that was
merely preempted looks expensive; `time.process_time` charges only CPU actually used.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, rest = argv[0], argv[1:]
    module = rest[0] == "-m"
    target = rest[1] if module else rest[0]
    sys.argv = [target, *rest[(2 if module else 1) :]]
    profiler = cProfile.Profile(time.process_time)
    code: object = 0
    profiler.enable()
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:
        profiler.disable()
        profiler.dump_stats(out)
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
