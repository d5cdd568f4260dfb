"""The terminal summary and progress line: informative, and immune to hostile text."""

from __future__ import annotations

import io
import re

from auditor.models import AuditedHost, AuditRun, RunInfo
from auditor.outcomes import Outcome
from auditor.reporters.terminal import Progress, format_readiness, render_summary, sanitize
from tests.reporters.fleet import TARGETS, all_reachable, blocked_on_first, host, sample_run

OUR_SGR = re.compile(r"\x1b\[[0-9;]*m")


def controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0]


def test_plain_summary_has_no_escape_or_control_characters() -> None:
    text = render_summary(sample_run(interrupted=True), color=False)
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert controls(text) == []
    # The hostile text is shown, defanged: the window-title payload is dropped whole.
    assert "alert(3)>x</b> red ]]> &" in text
    assert "pwned" not in text
    assert "\ud800" not in text


def test_colour_summary_only_has_our_own_sgr_sequences() -> None:
    text = render_summary(sample_run(), color=True)
    assert "\x1b[" in text
    stripped = OUR_SGR.sub("", text)
    assert "\x1b" not in stripped
    assert controls(stripped) == []
    # The hostile "\x1b[2J" (clear screen) is not among our sequences.
    assert "\x1b[2J" not in text
    assert "\x1b]0;" not in text


def test_summary_content() -> None:
    text = render_summary(sample_run(interrupted=True), color=False)
    assert "22 hosts, 13 audited, 9 not audited" in text
    assert "WARNING: host key checking was disabled" in text
    assert "WARNING: the run was interrupted" in text
    first = next(line for line in text.splitlines() if TARGETS[0].url in line)
    assert "30.8 %" in first
    assert "4 reachable, 9 blocked, 9 not audited" in first
    assert "blocked by: dns_failure 1, refused 1, timeout 2" in text
    assert "Blocked hosts (9):" in text
    assert "blk-timeout (" in text
    assert "): https://cask.qg3.apps.qualys.com/status: timeout (Connection timed out" in text
    assert "[issuer: CN=Corp Interception CA, O=BlueCoat]" in text
    assert "[proxy: http://proxy.dc2.example.com:3128]" in text
    assert "Not audited (9; not counted as blocked):" in text
    assert "  unreachable (1): fix: open the management port" in text
    assert "  error (2): fix: unexpected error; see the detail" in text
    assert "    na-unreachable: unreachable detail" in text
    assert "4 of 13 audited hosts reach every URL" in text


def test_summary_truncates_long_lists() -> None:
    text = render_summary(sample_run(), color=False, max_hosts=2)
    assert "and 7 more (see the HTML or CSV report)" in text
    blocked_section = text.split("Blocked hosts (9):")[1].split("Not audited")[0]
    assert len([ln for ln in blocked_section.splitlines() if ln.startswith("  ")]) == 3
    text = render_summary(sample_run(), color=False, max_hosts=1)
    assert "    and 1 more" in text  # the two "error" hosts, one shown


def test_everything_reachable() -> None:
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS, options={}),
        tuple(all_reachable(host(f"h{i}")) for i in range(3)),
    )
    text = render_summary(run, color=False)
    assert text.count("100 %") == len(TARGETS)
    assert "Blocked hosts" not in text
    assert "Not audited" not in text


def test_sanitize() -> None:
    assert sanitize("a\x1b[31mred\x1b[0m") == "ared"
    assert sanitize("t\x1b]0;title\x07x") == "tx"
    assert sanitize("t\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\") == "tlink"
    assert sanitize("c1\x9b2Jcsi") == "c1csi"
    assert sanitize("line1\nline2\r\x00") == "line1 line2  "
    assert sanitize("bidi\u202eevil") == "bidi evil"
    assert sanitize("x" * 50, 10) == "x" * 9 + "…"
    assert sanitize("plain") == "plain"


def test_format_readiness() -> None:
    assert format_readiness(None) == "n/a"
    assert format_readiness(100.0) == "100 %"
    assert format_readiness(0.0) == "0 %"
    assert format_readiness(92.0) == "92 %"
    assert format_readiness(99.99) == "99.9 %"  # a gap is never rounded away
    assert format_readiness(0.001) == "0.1 %"
    assert format_readiness(30.769) == "30.8 %"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_silent_without_a_tty() -> None:
    stream = io.StringIO()
    with Progress(3, stream) as progress:
        for result in sample_run().results[:3]:
            progress.update(result)
    assert stream.getvalue() == ""
    assert (progress.done, progress.ok) == (3, 3)


def test_progress_is_throttled_and_counts() -> None:
    run = sample_run()
    stream = FakeTTY()
    clock = Clock()
    progress = Progress(len(run.results), stream, clock=clock)
    for result in run.results[:10]:
        progress.update(result)  # all at the same instant
    first = stream.getvalue()
    assert first.count("\r") == 1
    clock.now += 0.05
    progress.update(run.results[10])
    assert stream.getvalue().count("\r") == 1  # still within 0.1 s
    clock.now += 0.2
    progress.update(run.results[11])
    assert stream.getvalue().count("\r") == 2
    for result in run.results[12:]:
        progress.update(result)  # the last one always draws
    progress.close()
    out = stream.getvalue()
    assert out.endswith("\n")
    last = out.rstrip("\n").split("\r")[-1]
    audited = [r for r in run.results if isinstance(r, AuditedHost)]
    blocked = sum(
        1 for r in audited if any(o.outcome is not Outcome.REACHABLE for o in r.observations)
    )
    assert last.startswith(f"{len(run.results)}/{len(run.results)} hosts")
    assert f"ok {len(audited) - blocked}  blocked {blocked}  not audited 9" in last
    assert "0.2 s" in last
    progress.close()  # idempotent
    assert stream.getvalue() == out


def test_bidi_and_zero_width_characters_are_blanked() -> None:
    for char in (
        "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    ):
        assert sanitize(f"a{char}b") == "a b", hex(ord(char))
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS, warnings=("w\u202eevil",)),
        (blocked_on_first(host("web\u200b01\u2067"), Outcome.TIMEOUT, "d\u200fx"),),
    )
    for color in (False, True):
        text = render_summary(run, color=color)
        assert not re.search("[\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]", text)
        assert "w evil" in text and "web 01 " in text and "d x" in text
