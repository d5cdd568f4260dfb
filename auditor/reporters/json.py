"""report.json: the whole run in a versioned, machine-readable form.

Shape: ``{"schema_version", "run", "summary", "hosts"}``. ``hosts`` holds one
`result_to_dict` entry per inventory host, its ``agent`` object replaced by the agent's
verdict and facts (`auditor.agent.agent_report`); ``summary`` holds the fleet aggregates (per URL,
per host-level outcome, per group, per platform) so a consumer never has to recount them.

The output is always strict JSON: non-finite numbers become ``null`` and text that cannot be
encoded as UTF-8 (lone surrogates) is replaced, so any parser accepts it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, TextIO

from auditor.agent import AgentCounts, agent_report, fleet_sentence
from auditor.aggregate import SliceSummary, TargetSummary, tally_of
from auditor.models import AgentVerdict, AuditRun, RunInfo
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import Reporter
from auditor.results import SCHEMA_VERSION, info_to_dict, result_to_dict


def clean_str(text: str) -> str:
    """`text` made encodable as UTF-8: a split surrogate pair is joined, a lone one
    becomes U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def json_safe(value: Any) -> Any:
    """A copy of `value` that strict JSON can hold: NaN/inf -> None, bad text replaced.

    Mappings become dicts with string keys; tuples and lists become lists.
    """
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_str(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return clean_str(str(value))


def _readiness(summary: TargetSummary) -> float | None:
    value = summary.readiness
    return None if value is None else round(value, 2)


def _target_dict(summary: TargetSummary) -> dict[str, Any]:
    counts = dict(summary.outcomes)
    return {
        "url": summary.target.url,
        "name": summary.target.name,
        "hosts": summary.hosts,
        "audited": summary.audited,
        "reachable": summary.reachable,
        "blocked": summary.blocked,
        "not_audited": summary.not_audited,
        "skipped": summary.skipped,
        "readiness": _readiness(summary),
        "outcomes": {o.value: counts.get(o, 0) for o in Outcome},
    }


def _slice_dict(summary: SliceSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "hosts": summary.hosts,
        "audited": summary.audited,
        "not_audited": summary.not_audited,
        "skipped": summary.skipped,
        "fully_ready": summary.fully_ready,
        "targets": [_target_dict(t) for t in summary.targets],
    }


def build_summary(run: AuditRun) -> dict[str, Any]:
    """The fleet aggregates of report.json (plain JSON types, every outcome key present)."""
    tally = tally_of(run)
    totals = tally.totals()
    hosts, audited, ready, skipped = (
        totals.hosts,
        totals.audited,
        totals.fully_ready,
        totals.skipped,
    )
    host_counts = dict(totals.host_outcomes)
    target_counts = dict(totals.target_outcomes)
    return {
        "hosts": hosts,
        "audited": audited,
        "not_audited": hosts - audited - skipped,
        "skipped": skipped,
        "fully_ready": ready,
        "blocked_hosts": audited - ready,
        "exit_status": tally.exit_status(),
        "targets": [_target_dict(t) for t in tally.summaries()],
        "target_outcomes": {o.value: target_counts.get(o, 0) for o in Outcome},
        "host_outcomes": {o.value: host_counts.get(o, 0) for o in HostOutcome},
        "groups": [_slice_dict(s) for s in tally.slices(tally.groups)],
        "platforms": [_slice_dict(s) for s in tally.slices(tally.platforms)],
        "agents": _agents_dict(run),
    }


def _counts_dict(counts: AgentCounts) -> dict[str, Any]:
    return {"hosts": counts.hosts, **{v.value: counts[v] for v in AgentVerdict}}


def _agents_dict(run: AuditRun) -> dict[str, Any]:
    """The fleet answer: agent verdict counts, its sentence, and the same per group."""
    tally = tally_of(run)
    fleet = tally.agent_counts()
    return {
        **_counts_dict(fleet),
        "sentence": fleet_sentence(fleet),
        "groups": [
            {"name": name, **_counts_dict(counts)} for name, counts in tally.agent_groups_counts()
        ],
    }


def run_dict(info: RunInfo) -> dict[str, Any]:
    """`info_to_dict`, tolerating the MappingProxyType that RunInfo holds by default.

    (`dataclasses.asdict` deep-copies field values and a mappingproxy cannot be copied, so
    the options are handed over as a plain dict.)
    """
    return info_to_dict(replace(info, options=dict(info.options)))


def build_report(run: AuditRun) -> dict[str, Any]:
    """The whole report.json document as Python data (not yet made JSON-safe); for a small
    run (it holds every host), as `JsonReporter` writes it."""
    return {**_head(run), "hosts": list(host_entries(run))}


def _head(run: AuditRun) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run_dict(run.info),
        "summary": build_summary(run),
    }


def host_entries(run: AuditRun) -> Iterator[dict[str, Any]]:
    """The `hosts` entries of report.json, one per host as the results are read."""
    targets = run.info.targets
    for r in run.results:
        yield {**result_to_dict(r), "agent": agent_report(r, targets)}


def dumps(document: Any) -> str:
    """Strict, compact JSON for `document`, whatever odd values it holds.

    The common case (nothing to fix) is dumped directly; only if that fails (NaN or
    infinity, text UTF-8 cannot encode, an unexpected type) is the document cleaned with
    `json_safe` first.
    """
    options: dict[str, Any] = {
        "ensure_ascii": False,
        "allow_nan": False,
        "separators": (",", ":"),
    }
    try:
        text = json.dumps(document, **options)
        text.encode("utf-8")
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError
        text = json.dumps(json_safe(document), **options)
    return text


class JsonReporter(Reporter):
    """report.json (see the module docstring for the shape)."""

    filename = "report.json"

    def write(self, run: AuditRun, out: TextIO) -> None:
        # The document's head, then each host's entry as it is read: the same text as
        # dumping the whole document at once, without holding it.
        head = dumps({**_head(run), "hosts": []})
        if not head.endswith("[]}"):
            raise AssertionError("report.json head does not end with its host list")
        out.write(head[:-2])
        first = True
        for entry in host_entries(run):
            if not first:
                out.write(",")
            out.write(dumps(entry))
            first = False
        out.write("]}\n")
