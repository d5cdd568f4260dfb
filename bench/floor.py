"""The floor: a bare asyncssh client that does only what an audit must do, and nothing else.

For every host: connect (same key, same known_hosts), run the auditor's own probe (the exact
command and stdin that `auditor.probes.posix.build_posix_job` makes, handed over in a job
file by `bench.run`), read the output, disconnect. Bounded concurrency (`--forks`), nothing
parsed beyond "did the records come back", nothing written. It deliberately imports nothing
from the auditor, so its CPU cost is asyncssh's and the interpreter's alone.

    python bench/floor.py --hosts HOSTS --job JOB.json --key KEY --known-hosts KH --forks 50

HOSTS holds one address per line. Prints one JSON line: {"hosts", "ok", "failed", "errors"}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections import Counter
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", required=True, type=Path, help="file: one address per line")
    p.add_argument("--job", required=True, type=Path, help="JSON: command, stdin_b64, marker")
    p.add_argument("--key", required=True, type=Path)
    p.add_argument("--known-hosts", required=True, type=Path)
    p.add_argument("--user", default="root")
    p.add_argument("--forks", type=int, default=50)
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per host")
    p.add_argument(
        "--encryption-algs",
        default="",
        help="comma-separated SSH ciphers to offer (default: asyncssh's own order), "
        "e.g. aes128-gcm@openssh.com to compare with chacha20-poly1305",
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, object]:
    import asyncssh

    job = json.loads(args.job.read_text())
    command: str = job["command"]
    stdin = base64.b64decode(job["stdin_b64"])
    marker = job["marker"].encode()
    addresses = [line.split()[0] for line in args.hosts.read_text().splitlines() if line.strip()]
    # Parsed once, like the auditor does (per-connection option processing is real CPU).
    options = asyncssh.SSHClientConnectionOptions(
        username=args.user,
        client_keys=[asyncssh.read_private_key(args.key)],
        known_hosts=asyncssh.read_known_hosts(str(args.known_hosts)),
        connect_timeout=args.connect_timeout,
        **({"encryption_algs": args.encryption_algs.split(",")} if args.encryption_algs else {}),
    )
    limit = asyncio.Semaphore(max(1, args.forks))

    async def one(address: str) -> str:
        async with limit:
            try:
                async with asyncio.timeout(args.timeout):
                    async with asyncssh.connect(address, options=options) as conn:
                        result = await conn.run(command, input=stdin, encoding=None, check=False)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                return type(exc).__name__
            stdout = result.stdout if isinstance(result.stdout, bytes) else b""
            return "ok" if marker in stdout else "no-records"

    outcomes = Counter(await asyncio.gather(*(one(a) for a in addresses)))
    ok = outcomes.pop("ok", 0)
    return {
        "hosts": len(addresses),
        "ok": ok,
        "failed": len(addresses) - ok,
        "errors": dict(outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary), flush=True)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
