"""A fleet's results without a fleet: an inventory and a results.jsonl of N hosts shaped
like the fleet part of `make bench` (95 % refusing, 5 % black-holed SSH hosts, 3 URLs), for
measuring the report phase alone (`auditor report DIR/results.jsonl`) without the lab.

    python -m bench.synth 100000 DIR
    /usr/bin/time -f "%e s %M KB" auditor report DIR/results.jsonl -o OUT --force
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import scale
from bench.run import URLS_3


def write(total: int, out: Path) -> None:
    from auditor.models import Connection, Host, Platform, RunInfo, Target, UnauditedHost
    from auditor.outcomes import HostOutcome
    from auditor.results import ResultsWriter

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    refuse = round(total * 0.95)
    planned = scale.plan_mix(refuse, total - refuse)
    (out / "fleet.ini").write_text(scale.inventory_text(planned, "/nonexistent/key"))
    targets = tuple(Target(url=u, name=u) for u in URLS_3)
    info = RunInfo(
        run_id="0123456789abcdef",
        started="2026-01-01T00:00:00+00:00",
        targets=targets,
        inventory=str(out / "fleet.ini"),
    )
    writer = ResultsWriter(out / "results.jsonl")
    writer.start(info)
    for h in planned:
        host = Host(
            h.name,
            h.address,
            Connection.SSH,
            Platform.LINUX,
            user="root",
            groups=("fleet", scale.GROUPS[h.kind]),
        )
        if h.kind == "refuse":
            detail = f"connection refused by {h.address}:22"
            result = UnauditedHost(host, HostOutcome.UNREACHABLE, detail, 0.01, "bench")
        else:
            detail = f"no answer from {h.address}:22 within 5 s"
            result = UnauditedHost(host, HostOutcome.UNREACHABLE, detail, 5.0, "bench")
        writer.host(result)
    writer.end(info)
    writer.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    write(int(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
