"""The bench's browser part runs end to end (on a small report; the figures come from
`make bench`), and its figures reach the bench's targets table."""

from __future__ import annotations

from bench import browser, run
from tests.browser.chromium import available
from tests.browser.conftest import need


def test_browser_bench_measures_a_small_report() -> None:
    need(available())
    result = browser.measure(hosts=300, repeats=1, timeout_s=120)
    assert result["hosts"] == 300 and result["urls"] == 3
    assert set(result["seconds"]) == {"open", "search", "outcome", "sort"}
    assert all(len(v) == 1 and v[0] > 0 for v in result["samples"].values())
    line = browser.describe(result)
    assert line.startswith("Browser: 300-host x 3-URL report.html")
    targets = {t["target"]: t for t in run.evaluate_targets({"browser": result})}
    assert targets["300-host report opens in Chromium"]["measured"] == result["seconds"]["open"]
    assert "300-host report filters in Chromium" in targets
