"""report.prom: the run in Prometheus text exposition format, for node_exporter's textfile
collector (copy or write it into the collector's directory; the file is replaced atomically).

Every series carries the run's inventory as a label, so the files of several scheduled
audits can sit side by side in one collector directory. Label values are escaped as the
format requires (backslash, double quote, line feed); nothing here comes from a host except
the outcome names, which are the tool's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from auditor.aggregate import tally_of
from auditor.models import AuditRun
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import Reporter
from auditor.reporters.json import clean_str

PREFIX = "fleet_auditor"


def escape_label(value: str) -> str:
    """A label value as the exposition format writes it inside double quotes."""
    return clean_str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Family:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = f"{PREFIX}_{name}"
        self.help = help_text
        self.samples: list[tuple[dict[str, str], float]] = []

    def add(self, labels: dict[str, str], value: float) -> None:
        self.samples.append((labels, value))

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        lines += [f"{self.name}{_labels(lb)} {_number(v)}" for lb, v in self.samples]
        return "\n".join(lines)


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class PromReporter(Reporter):
    """Readiness per URL, counts per outcome, hosts audited or not, duration and time."""

    filename = "report.prom"

    def write(self, run: AuditRun, out: TextIO) -> None:
        info = run.info
        base = {"inventory": info.inventory}
        tally = tally_of(run)
        scope = tally.hosts - tally.skipped

        readiness = _Family(
            "url_readiness_ratio",
            "Hosts that reach the URL over audited hosts (0..1), as the report shows it.",
        )
        gate = _Family(
            "url_gate_readiness_ratio",
            "Hosts that reach the URL over all hosts in scope (0..1); "
            "a host not audited counts as not ready.",
        )
        ready = _Family("url_ready_hosts", "Hosts that reach the URL.")
        outcomes = _Family("url_outcome_hosts", "Audited hosts per URL and outcome.")
        for summary in tally.summaries():
            url = {**base, "url": summary.target.url, "name": summary.target.name}
            if summary.audited:
                readiness.add(url, summary.reachable / summary.audited)
            if scope:
                gate.add(url, summary.reachable / scope)
            ready.add(url, summary.reachable)
            counts = dict(summary.outcomes)
            # Every outcome, zeros included: a series that vanishes cannot alert.
            for outcome in Outcome:
                outcomes.add({**url, "outcome": outcome.value}, counts.get(outcome, 0))

        hosts = _Family("hosts", "Hosts of the run by state (audited, not_audited, skipped).")
        hosts.add({**base, "state": "audited"}, tally.audited)
        hosts.add({**base, "state": "not_audited"}, tally.not_audited)
        hosts.add({**base, "state": "skipped"}, tally.skipped)

        reasons = _Family("host_outcome_hosts", "Hosts not audited, by reason.")
        for reason in HostOutcome:
            reasons.add({**base, "outcome": reason.value}, tally.host_outcomes[reason])

        duration = _Family("run_duration_seconds", "Wall time of the run.")
        duration.add(base, info.duration)
        interrupted = _Family("run_interrupted", "1 when the run was interrupted.")
        interrupted.add(base, 1 if info.interrupted else 0)
        families = [readiness, gate, ready, outcomes, hosts, reasons, duration, interrupted]
        stamp = _timestamp(info.finished) or _timestamp(info.started)
        if stamp is not None:
            last = _Family("last_run_timestamp_seconds", "When the run finished (Unix time).")
            last.add(base, stamp)
            families.append(last)
        run_info = _Family("run_info", "The run's id and tool version (always 1).")
        run_info.add({**base, "run_id": info.run_id, "version": info.tool_version}, 1)
        families.append(run_info)
        out.write("\n".join(f.render() for f in families) + "\n")
