"""20,000 hosts x 3 URLs: every report renders, and the HTML stays under 15 MB.

Timings are printed (run with -s to see them), not asserted: they depend on the machine.
"""

from __future__ import annotations

import csv
import io
import json
import time
import xml.etree.ElementTree as ET

from auditor.reporters import REPORTERS
from auditor.reporters.base import render
from auditor.reporters.terminal import render_summary
from tests.reporters.fleet import TARGETS, big_run

HOSTS = 20_000
HTML_LIMIT = 15 * 1024 * 1024


def test_twenty_thousand_hosts() -> None:
    run = big_run(HOSTS)
    sizes: dict[str, int] = {}
    times: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for name, cls in REPORTERS.items():
        start = time.perf_counter()
        text = render(cls(), run)
        times[name] = time.perf_counter() - start
        sizes[name] = len(text.encode("utf-8"))
        outputs[name] = text
    start = time.perf_counter()
    summary = render_summary(run, color=False)
    times["terminal"] = time.perf_counter() - start
    print()
    for name, seconds in times.items():
        size = f"{sizes[name] / 1e6:6.2f} MB" if name in sizes else ""
        print(f"  {name:8s} {seconds:6.2f} s  {size}")
    print(f"  total    {sum(times.values()):6.2f} s for {HOSTS} hosts x {len(TARGETS)} URLs")

    assert sizes["html"] < HTML_LIMIT
    assert f'of audited hosts reach <span class="url">{TARGETS[0].url}</span>' in outputs["html"]
    rows = list(csv.reader(io.StringIO(outputs["csv"], newline="")))
    assert len(rows) == 1 + HOSTS * len(TARGETS)
    assert len(json.loads(outputs["json"])["hosts"]) == HOSTS
    root = ET.fromstring(outputs["junit"].encode("utf-8"))
    assert sum(int(s.get("tests", "0")) for s in root) == HOSTS * len(TARGETS)
    assert len(summary.splitlines()) < 120  # the terminal summary stays compact
