"""The plain-TCP floor: asyncio connects to every address's SSH port, nothing more.

The least any auditor must do for a host that refuses SSH or black-holes it: one TCP
connect, bounded by the same concurrency and the same timeout as the audit. Workers take
addresses from one list (no task per address), so the floor's own overhead is minimal. It
imports nothing from the auditor.

    python bench/tcpfloor.py --hosts HOSTS --forks 2000 --timeout 5

HOSTS holds one address per line (repeats allowed). Prints one JSON line:
{"hosts", "outcomes": {"refused": n, "timeout": n, "open": n, ...}, "seconds"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", required=True, type=Path, help="file: one address per line")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--forks", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=5.0, help="deadline per connect")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, object]:
    addresses = [line.split()[0] for line in args.hosts.read_text().splitlines() if line.strip()]
    outcomes: Counter[str] = Counter()
    queue = iter(addresses)

    async def one(address: str) -> str:
        try:
            async with asyncio.timeout(args.timeout):
                _, writer = await asyncio.open_connection(address, args.port)
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return type(exc).__name__
        writer.close()
        return "open"

    async def worker() -> None:
        for address in queue:
            outcomes[await one(address)] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(args.forks, len(addresses)))))
    return {
        "hosts": len(addresses),
        "outcomes": dict(outcomes),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.forks + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
