"""The command line: a thin click layer over plain functions.

Imports of anything heavy happen inside the commands, so `audit --help` stays fast.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
from click.core import ParameterSource

from auditor import __version__
from auditor.errors import AuditorError, InputError
from auditor.probes import ProbeSettings
from auditor.scheduler import Schedule
from auditor.settings import (
    DEFAULT_FORMATS,
    FORMATS,
    GATE_OUTCOMES,
    KEY_BY_NAME,
    ReportSettings,
    Settings,
)
from auditor.textsafe import for_terminal
from auditor.transports.options import POWERSHELLS, WINRM_TRANSPORTS, SSHSettings

EXIT_USAGE = 2
_SCHEDULE = Schedule()
_PROBE = ProbeSettings(nonce="")


def _range(name: str) -> click.IntRange | click.FloatRange:
    """The click type of setting `name`, with the bounds every source is checked against."""
    key = KEY_BY_NAME[name]
    if key.kind.value == "integer":
        low = int(key.low) if key.low is not None else None
        high = int(key.high) if key.high is not None else None
        return click.IntRange(low, high)
    return click.FloatRange(key.low, key.high)


def _fail(message: str) -> NoReturn:
    """Print one error line and exit 2. Every error the tool reports goes through here, and
    a message may quote any input file (a host name, a targets key, a section header), so it
    is sanitised: no escape sequence, control, bidi or zero-width character reaches the
    terminal, and it stays one line."""
    click.echo(f"error: {for_terminal(message)}", err=True)
    sys.exit(EXIT_USAGE)


def warn(message: str) -> None:
    """Print one warning line to stderr, sanitised like an error."""
    click.echo(f"WARNING: {for_terminal(message)}", err=True)


def _warn(message: str) -> None:
    """A warning about an input file (`warning: file:line: ...`), sanitised like an error."""
    click.echo(f"warning: {for_terminal(message)}", err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # A library's warning may quote a host name or a URL from an input file.
    warn(f"{category.__name__}: {message}")


def _route_warnings() -> None:
    """Python warnings (from libraries too) print through `warn`, sanitised, one line each."""
    warnings.showwarning = _show_warning


# Size limits of an inventory; the environment variables let a scheduler set them once.
INVENTORY_LIMIT_OPTIONS = [
    click.option(
        "--max-hosts",
        type=_range("max_hosts"),
        metavar="N",
        help="Refuse an inventory with more hosts [default: 200000].",
    ),
    click.option(
        "--max-groups",
        type=_range("max_groups"),
        metavar="N",
        help="Refuse an inventory with more groups [default: 20000].",
    ),
]


CONFIG_OPTION = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Auditor config file (TOML) [default: AUDITOR_CONFIG, else ./fleet-auditor.toml, "
    "else ~/.config/fleet-auditor/config.toml].",
)


HISTORY_OPTION = click.option(
    "--history",
    "history",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Run history database (SQLite) [default: $XDG_DATA_HOME/fleet-auditor/history.sqlite, "
    "else ~/.local/share/fleet-auditor/history.sqlite].",
)
HISTORY_TIMEOUT_OPTION = click.option(
    "--history-timeout",
    type=_range("history_timeout"),
    metavar="SECONDS",
    help="Wait this long for another audit's write to the history [default: 30].",
)

GATE_OPTIONS = [
    click.option(
        "--fail-under",
        type=_range("fail_under"),
        metavar="PCT",
        help="Gate: exit 1 when any URL's readiness (reachable / all hosts in scope, hosts "
        "not audited counting as not ready) is below PCT, else 0.",
    ),
    click.option(
        "--fail-on",
        "fail_on",
        multiple=True,
        type=click.Choice(GATE_OUTCOMES),
        metavar="OUTCOME",
        help="Gate: exit 1 whenever OUTCOME occurs (repeatable), e.g. tls_failure.",
    ),
]

CONNECT_TIMEOUT_OPTION = click.option(
    "--connect-timeout",
    type=_range("connect_timeout"),
    help=f"SSH/WinRM connect timeout in seconds [default: {SSHSettings.connect_timeout:g}].",
)

# How hosts are logged in to and trusted: defined once, taken by `audit` and by a site
# runner (`auditor worker`, which holds the credentials of a site run), so the two cannot
# drift apart.
CREDENTIAL_OPTIONS = [
    click.option("-u", "--user", metavar="USER", help="Default remote user (inventory wins)."),
    click.option(
        "--ssh-key",
        "ssh_keys",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="SSH private key file (repeatable).",
    ),
    click.option(
        "--known-hosts",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="known_hosts file [default: ~/.ssh/known_hosts].",
    ),
    click.option(
        "--accept-new-host-keys",
        is_flag=True,
        help="Trust unknown host keys on first use and record them.",
    ),
    click.option(
        "--password-on-new-keys",
        is_flag=True,
        help="With --accept-new-host-keys: also send the password to a host whose key is "
        "seen for the first time (by default it gets key authentication only, and the "
        "password once its key is recorded).",
    ),
    click.option(
        "--no-host-key-check",
        is_flag=True,
        help="DANGEROUS: accept any host key (flagged in the report).",
    ),
    click.option(
        "--jump-host",
        metavar="[USER@]HOST[:PORT]",
        help="SSH bastion for every SSH host (like ProxyJump).",
    ),
    click.option(
        "--ssh-config",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="OpenSSH client config [default: ~/.ssh/config if present].",
    ),
    click.option(
        "--ask-pass",
        is_flag=True,
        help="Prompt for the SSH/WinRM password (else AUDITOR_SSH_PASSWORD / "
        "AUDITOR_WINRM_PASSWORD).",
    ),
    click.option(
        "--password-file",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="Read the SSH/WinRM password from FILE (owner-only, like a key file).",
    ),
    click.option("--winrm-user", metavar="USER", help="WinRM user when the inventory has none."),
    click.option(
        "--winrm-transport",
        type=click.Choice(WINRM_TRANSPORTS),
        help="WinRM auth when the inventory has none [default: ntlm].",
    ),
    click.option(
        "--winrm-powershell",
        type=click.Choice(sorted(POWERSHELLS)),
        help="PowerShell that runs the probe when the inventory's auditor_powershell says "
        "none: powershell (Windows PowerShell 5.1) or pwsh (PowerShell 7) [default: powershell].",
    ),
    click.option(
        "--winrm-allow-basic-http",
        is_flag=True,
        help="Allow Basic auth over plain HTTP (sends the password in clear).",
    ),
    click.option(
        "--winrm-allow-insecure",
        is_flag=True,
        help="DANGEROUS: allow Basic or NTLM to hosts whose inventory turns TLS certificate "
        "validation off (ansible_winrm_server_cert_validation=ignore); flagged per host in "
        "the report.",
    ),
    click.option(
        "--winrm-ca-bundle",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="CA bundle for WinRM over HTTPS.",
    ),
]


def credential_options(func: Any) -> Any:
    for option in reversed(CREDENTIAL_OPTIONS):
        func = option(func)
    return func


HISTORY_AUDIT_OPTIONS = [
    HISTORY_OPTION,
    click.option("--no-history", is_flag=True, help="Do not record this run in the history."),
    click.option(
        "--keep",
        type=_range("keep"),
        metavar="N",
        help="After the run, keep only the newest N runs of this inventory in the history.",
    ),
    click.option(
        "--keep-days",
        type=_range("keep_days"),
        metavar="DAYS",
        help="After the run, remove this inventory's runs older than DAYS from the history.",
    ),
    HISTORY_TIMEOUT_OPTION,
]


def gate_options(func: Any) -> Any:
    for option in reversed(GATE_OPTIONS):
        func = option(func)
    return func


AUDIT_OPTIONS = [
    CONFIG_OPTION,
    click.option(
        "-i",
        "--inventory",
        "inventory",
        metavar="FILE",
        help="Ansible inventory: INI, YAML, or the JSON of `ansible-inventory --list` "
        "[default: from AUDITOR_INVENTORY, the config file or ansible.cfg].",
    ),
    click.option(
        "-l",
        "--limit",
        metavar="PATTERN",
        help="Ansible host pattern: group, host, glob, a:b, a:&b, a:!b.",
    ),
    click.option(
        "--platform",
        "platforms",
        multiple=True,
        metavar="CODE",
        help="Qualys platform whose agent URLs to check (repeatable), e.g. US3.",
    ),
    click.option(
        "--url", "urls", multiple=True, metavar="URL", help="A URL to check (repeatable)."
    ),
    click.option(
        "--targets",
        "targets_files",
        multiple=True,
        metavar="FILE",
        type=click.Path(path_type=Path),
        help="YAML targets file: name, url, category, expected_status (repeatable).",
    ),
    click.option(
        "-o",
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="Report directory, created by the run (an existing one must be yours, not "
        "writable by others, and empty unless --force) [default: "
        "./audit-report-<UTC timestamp>-<random>/].",
    ),
    click.option(
        "--format",
        "formats",
        multiple=True,
        type=click.Choice(FORMATS),
        help="Report formats to write (repeatable); prom is the Prometheus textfile "
        f"[default: {','.join(DEFAULT_FORMATS)}].",
    ),
    click.option(
        "--force", is_flag=True, help="Write into an existing, non-empty report directory."
    ),
    click.option(
        "--report-mode",
        metavar="OCTAL",
        help=f"File mode of reports and results [default: {ReportSettings.mode:03o}].",
    ),
    click.option(
        "-f",
        "--forks",
        type=_range("forks"),
        help=f"Hosts audited at once [default: {_SCHEDULE.forks}].",
    ),
    click.option(
        "--timeout",
        type=_range("timeout"),
        help="Deadline per host in seconds: connect, probe and all URLs "
        f"[default: {_SCHEDULE.timeout:g}].",
    ),
    CONNECT_TIMEOUT_OPTION,
    click.option(
        "--retries",
        type=_range("retries"),
        help="Retries for hosts that could not be connected to (never for auth failures) "
        f"[default: {_SCHEDULE.retries}].",
    ),
    click.option(
        "--probe-timeout",
        type=_range("probe_timeout"),
        help="Per-URL time limit on the host (curl --max-time / IWR -TimeoutSec) "
        f"[default: {_PROBE.max_time:g}].",
    ),
    click.option(
        "--probe-connect-timeout",
        type=_range("probe_connect_timeout"),
        help="Per-URL TCP connect limit on the host (curl --connect-timeout) "
        f"[default: {_PROBE.connect_timeout:g}].",
    ),
    click.option(
        "--require-agent",
        is_flag=True,
        help="Exit 1 when a host has no Qualys Cloud Agent, or one too old to use the CDN "
        "(Linux 6.4+, Windows 5.7+).",
    ),
    click.option(
        "--direct",
        is_flag=True,
        help="Probe as the login session would, not through the Qualys agent's own proxy "
        "and CA bundle (the default on hosts with the agent).",
    ),
    *CREDENTIAL_OPTIONS,
    click.option(
        "--shard",
        metavar="K/N",
        help="Audit only shard K of N (deterministic split, for several runners).",
    ),
    click.option(
        "--runner", metavar="NAME", help="Name of this runner in reports [default: hostname]."
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress and no summary."),
    *INVENTORY_LIMIT_OPTIONS,
    click.option(
        "--max-targets",
        type=_range("max_targets"),
        metavar="N",
        help="Refuse more target URLs than this [default: 1000].",
    ),
    click.option(
        "--max-targets-file-size",
        type=_range("max_targets_file_size"),
        metavar="BYTES",
        help="Refuse a larger --targets file [default: 1048576].",
    ),
    *HISTORY_AUDIT_OPTIONS,
    *GATE_OPTIONS,
]


def inventory_limit_options(func: Any) -> Any:
    for option in reversed(INVENTORY_LIMIT_OPTIONS):
        func = option(func)
    return func


def audit_options(func: Any) -> Any:
    for option in reversed(AUDIT_OPTIONS):
        func = option(func)
    return func


def _given(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line: only those outrank the other sources."""
    return {
        name: value
        for name, value in values.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


def _settings(ctx: click.Context, values: dict[str, Any], secrets: bool = True) -> Settings:
    """The run's settings, built once here from every source; see `auditor.settings`."""
    import os

    from auditor.settings import build_settings

    settings = build_settings(_given(ctx, values), os.environ, secrets=secrets)
    for note in settings.warnings:
        warn(note)
    return settings


# How to log in to the broker: the same for the coordinator and a runner.
BROKER_LOGIN_OPTIONS = [
    click.option(
        "--broker-password-file",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="The broker password, in a file only you can read [default: AUDITOR_BROKER_PASSWORD].",
    ),
    click.option(
        "--broker-ca",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="CA bundle that signed a rediss:// broker's certificate [default: the system's].",
    ),
]
BROKER_OPTIONS = [
    click.option(
        "--broker",
        metavar="URL",
        help="Audit through the site runners listening on this broker "
        "(redis://HOST:PORT/DB or rediss://; no password in the URL).",
    ),
    *BROKER_LOGIN_OPTIONS,
]
BROKER_PARAMS = ("broker", "broker_password_file", "broker_ca")


def broker_options(func: Any) -> Any:
    for option in reversed(BROKER_OPTIONS):
        func = option(func)
    return func


@click.command("audit", context_settings={"help_option_names": ["-h", "--help"]})
@audit_options
@broker_options
@click.option(
    "--queue-timeout",
    type=click.FloatRange(1, 86400),
    default=60.0,
    metavar="S",
    help="With --broker: a host no runner of its site took within S seconds is not audited "
    "[default: 60].",
)
@click.option(
    "--broker-timeout",
    type=click.FloatRange(1, 86400),
    default=60.0,
    metavar="S",
    help="With --broker: end the run when the broker has been unreachable for S seconds "
    "(exit 2; the reports hold what finished, the rest is not audited) [default: 60].",
)
@click.option(
    "--progress-by-site",
    is_flag=True,
    help="With --broker: show progress per site (hosts done of each site's total, its "
    "runners) instead of one line for the fleet.",
)
@click.version_option(__version__, prog_name="audit")
@click.pass_context
def audit_main(ctx: click.Context, /, **kw: Any) -> None:
    """Audit which hosts of an inventory can reach which URLs, and why not.

    Settings come from flags, then AUDITOR_* variables, then the config file, then
    ansible.cfg (see `auditor config`).

    Exit status: 0 every audited host reaches every URL; 1 some URL is blocked somewhere;
    2 bad input or usage, or the history cannot be used (reports are still written when
    that happens mid-run); 3 nothing blocked but some hosts could not be audited;
    130/143 interrupted (reports hold what finished). With --fail-under or --fail-on the
    gate decides instead: 1 failed, 0 passed.
    """
    from auditor.audit import audit_from_settings

    _route_warnings()
    broker = {name: kw.pop(name) for name in BROKER_PARAMS}
    site_flags = ("queue_timeout", "broker_timeout", "progress_by_site")
    queue_timeout, broker_timeout, by_site = (kw.pop(name) for name in site_flags)
    try:
        settings = _settings(ctx, kw)
        if broker["broker"] is not None:
            from auditor.coordinator import SiteRun, run_through_broker

            site_run = SiteRun(
                _broker(broker),
                settings,
                queue_timeout,
                broker_outage=broker_timeout,
                progress_by_site=by_site,
            )
            status = run_through_broker(settings, site_run, warn)
        else:
            for name in site_flags:
                if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                    flag = "--" + name.replace("_", "-")
                    raise InputError(f"{flag} needs --broker")
            status = audit_from_settings(settings, warn)
    except AuditorError as exc:
        _fail(str(exc))
    sys.exit(status)


def _broker(values: dict[str, Any]) -> Any:
    import os

    from auditor.broker import broker_settings

    return broker_settings(
        values["broker"], os.environ, values["broker_password_file"], values["broker_ca"]
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def main() -> None:
    """Fleet-wide network allow-list auditor."""
    _route_warnings()


main.add_command(audit_main)


@main.command("targets")
@click.option(
    "--platform", "platforms", multiple=True, metavar="CODE", help="Only these platforms."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets_cmd(platforms: tuple[str, ...], as_json: bool) -> None:
    """List the built-in URL catalog (verified entries have a public source)."""
    import json

    from auditor import targets as tg

    try:
        chosen = (
            tuple(t for p in platforms for t in tg.platform_targets(p))
            if platforms
            else tg.catalog_targets()
        )
    except InputError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([t.__dict__ for t in chosen], indent=2))
        return
    for t in chosen:
        mark = "verified" if t.verified else "inferred"
        click.echo(f"{t.platform or '-':5} {t.category:15} {mark:9} {t.url}")
    click.echo(
        "\n'inferred' entries follow the vendor's naming pattern but no public source "
        "confirms them; override with --url or --targets."
    )


CONNECTION_OPTIONS = frozenset(
    {
        "user",
        "ssh_keys",
        "jump_host",
        "ssh_config",
        "ask_pass",
        "password_file",
        "winrm_user",
        "winrm_transport",
        "winrm_powershell",
        "winrm_allow_basic_http",
        "winrm_ca_bundle",
    }
)
"""The options of `audit` that decide how a host is connected to (for `inventory --resolve`)."""


def connection_options(func: Any) -> Any:
    """Give `func` the options of `audit` named in CONNECTION_OPTIONS, defined once there."""
    for option in reversed(AUDIT_OPTIONS):
        params: list[click.Parameter] = getattr(option(lambda: None), "__click_params__", [])
        if params and params[0].name in CONNECTION_OPTIONS:
            func = option(func)
    return func


@main.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--only-changed", is_flag=True, help="Only the settings that are not the defaults.")
@audit_options
@click.pass_context
def config_cmd(ctx: click.Context, /, as_json: bool, only_changed: bool, **kw: Any) -> None:
    """Print the effective settings and where each came from (flag, env, file:line,
    ansible.cfg:line or default), given the same flags as `audit`."""
    import json

    from auditor.settings import effective

    try:
        settings = _settings(ctx, kw, secrets=False)
    except AuditorError as exc:
        _fail(str(exc))
    shown = {
        name: {"value": value, "source": settings.origin(name)}
        for name, value in effective(settings).items()
        if not only_changed or settings.origin(name) != "default"
    }
    if as_json:
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
        return
    width = max((len(name) for name in shown), default=0)
    for name, item in shown.items():
        value = item["value"]
        text = ",".join(str(v) for v in value) if isinstance(value, list) else value
        text = "-" if text is None or text == "" else str(text)
        click.echo(for_terminal(f"{name:{width}} = {text}  ({item['source']})"))


@main.command("inventory")
@click.option("-i", "--inventory", "inventory", metavar="FILE")
@click.option("-l", "--limit", metavar="PATTERN")
@click.option(
    "--list", "as_list", is_flag=True, help="JSON as `ansible-inventory --list` (the default)."
)
@click.option("--graph", is_flag=True, help="The group tree.")
@click.option(
    "--resolve",
    is_flag=True,
    help="Each host's effective connection (like `ssh -G`), without contacting anything.",
)
@click.option("--json", "as_json", is_flag=True, help="With --resolve: print JSON.")
@connection_options
@inventory_limit_options
@CONFIG_OPTION
@click.pass_context
def inventory_cmd(
    ctx: click.Context,
    /,
    as_list: bool,
    graph: bool,
    resolve: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Show an inventory as the auditor resolves it (same shape as ansible-inventory).

    Hosts the auditor will skip (a connection such as network_cli) are listed as they are.
    """
    import json

    from auditor.inventory import load_inventory
    from auditor.inventory.model import InventoryLimits

    try:
        settings = _settings(ctx, options)
        source = settings.inventory
        if not source.path:
            raise InputError(
                "no inventory: give --inventory, AUDITOR_INVENTORY, 'inventory' in the config "
                "file, or [defaults] inventory in ansible.cfg"
            )
        inv = load_inventory(source.path, InventoryLimits.of(source.max_hosts, source.max_groups))
        if source.limit:
            inv = inv.limit(source.limit)
        for warning in inv.warnings:
            _warn(str(warning))
        if resolve:
            from auditor.resolve import render_text, resolve_hosts, to_json

            resolved = resolve_hosts(tuple(inv.hosts), settings)
            click.echo(to_json(resolved) if as_json else render_text(resolved))
            return
        text = _safe_lines(inv.graph()) if graph and not as_list else None
    except InputError as exc:
        _fail(str(exc))
    if text is not None:
        click.echo(text)
    else:
        # ensure_ascii: every control, bidi or non-ASCII character in a name is printed as
        # a \u escape, so the JSON is also safe on a terminal.
        click.echo(json.dumps(inv.to_ansible_list(), indent=4, sort_keys=True))


def _safe_lines(text: str) -> str:
    return "\n".join(for_terminal(line) for line in text.split("\n"))


@main.command("report")
@click.argument("source", metavar="RESULTS|RUN_ID")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS))
@click.option("--force", is_flag=True)
@click.option(
    "--report-mode",
    metavar="OCTAL",
    help=f"File mode of the reports [default: {ReportSettings.mode:03o}].",
)
@HISTORY_OPTION
@gate_options
@CONFIG_OPTION
@click.pass_context
def report_cmd(
    ctx: click.Context,
    /,
    source: str,
    out_dir: Path,
    formats: tuple[str, ...],
    force: bool,
    report_mode: str | None,
    **kw: Any,
) -> None:
    """Render reports again from a results.jsonl file, or from a run recorded in the history
    (by run id, or a unique prefix of one). Exit status as `audit`'s (the gate's with
    --fail-under/--fail-on); 2 on bad input."""
    from auditor.audit import reports_from_history, reports_from_results

    chosen = formats or DEFAULT_FORMATS
    try:
        settings = _settings(ctx, kw, secrets=False)
        if Path(source).exists() or not _looks_like_run_id(source):
            status = reports_from_results(
                [Path(source)], out_dir, chosen, force, report_mode, settings.gate
            )
        else:
            status = reports_from_history(
                settings.history, source, out_dir, chosen, force, report_mode, settings.gate
            )
    except AuditorError as exc:
        _fail(str(exc))
    sys.exit(status)


def _looks_like_run_id(text: str) -> bool:
    return 4 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text.lower())


@main.command("runs")
@click.option(
    "-i",
    "--inventory",
    "inventory_filter",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Only the runs of this inventory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@HISTORY_OPTION
@HISTORY_TIMEOUT_OPTION
@CONFIG_OPTION
@click.pass_context
def runs_cmd(
    ctx: click.Context, /, inventory_filter: Path | None, as_json: bool, **kw: Any
) -> None:
    """The runs recorded in the history, newest first."""
    import json

    from auditor.audit import open_history
    from auditor.history import inventory_identity

    try:
        settings = _settings(ctx, kw, secrets=False)
        history = open_history(replace(settings.history, disabled=False), create=False)
        assert history is not None
        with history:
            key = None if inventory_filter is None else inventory_identity(str(inventory_filter))[0]
            runs = history.runs(key)
    except AuditorError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({"runs": [r.to_dict() for r in runs]}, indent=2))
        return
    from auditor.gate import format_percent

    for r in runs:
        ready = ", ".join(
            f"{u.name or u.url} {format_percent(u.reachable, u.audited)}" for u in r.urls
        )
        state = "" if r.state == "finished" else f" [{r.state}]"
        line = (
            f"{r.run_id}  {r.started}  {r.duration:7.1f}s  {r.inventory}  "
            f"hosts {r.hosts} audited {r.audited}  {ready}{state}"
        )
        click.echo(for_terminal(line))


@main.command("diff")
@click.argument("old", required=False, metavar="[OLD")
@click.argument("new", required=False, metavar="[NEW]]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@HISTORY_OPTION
@HISTORY_TIMEOUT_OPTION
@CONFIG_OPTION
@click.pass_context
def diff_cmd(
    ctx: click.Context, /, old: str | None, new: str | None, as_json: bool, **kw: Any
) -> None:
    """What changed between two recorded runs (default: the last two runs of the newest
    run's inventory; with OLD only: OLD against the newest run of its inventory).

    Exit status: 1 at least one regression (a host x URL that was reachable and is not,
    on a host audited both times); 0 otherwise; 2 bad input."""
    import json

    from auditor.audit import open_history
    from auditor.diff import diff_runs, render_diff

    try:
        settings = _settings(ctx, kw, secrets=False)
        history = open_history(replace(settings.history, disabled=False), create=False)
        assert history is not None
        with history:
            if old is None:
                old_id, new_id = history.last_two()
            else:
                old_id = history.resolve(old)
                if new is None:
                    key = next(r.inventory_key for r in history.runs() if r.run_id == old_id)
                    newest = history.runs(key)[0].run_id
                    new_id = newest
                else:
                    new_id = history.resolve(new)
            found = diff_runs(history.load(old_id), history.load(new_id))
    except AuditorError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, ensure_ascii=True))
    else:
        click.echo("\n".join(for_terminal(line) for line in render_diff(found).split("\n")))
    sys.exit(1 if found.regressions else 0)


@main.command("merge")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS))
@click.option("--force", is_flag=True)
@click.option(
    "--report-mode",
    metavar="OCTAL",
    help=f"File mode of the reports [default: {ReportSettings.mode:03o}].",
)
def merge_cmd(
    results: tuple[Path, ...],
    out_dir: Path,
    formats: tuple[str, ...],
    force: bool,
    report_mode: str | None,
) -> None:
    """Combine the results of several runners (shards) into one report."""
    from auditor.audit import reports_from_results

    try:
        status = reports_from_results(
            list(results), out_dir, formats or DEFAULT_FORMATS, force, report_mode
        )
    except AuditorError as exc:
        _fail(str(exc))
    sys.exit(status)


def broker_login_options(func: Any) -> Any:
    for option in reversed(BROKER_LOGIN_OPTIONS):
        func = option(func)
    return func


@main.command("worker")
@click.option("--broker", required=True, metavar="URL", help="redis://HOST:PORT/DB or rediss://.")
@click.option("--site", required=True, metavar="NAME", help="The site whose hosts this runs.")
@click.option("--name", metavar="NAME", help="This runner in reports [default: host name].")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=8,
    metavar="N",
    help="Hosts audited at once [default: 8].",
)
@broker_login_options
@credential_options
@CONNECT_TIMEOUT_OPTION
@CONFIG_OPTION
@click.pass_context
def worker_cmd(
    ctx: click.Context,
    /,
    broker: str,
    site: str,
    name: str | None,
    concurrency: int,
    broker_password_file: Path | None,
    broker_ca: Path | None,
    **options: Any,
) -> None:
    """Run the hosts of one site that a coordinator (`audit --broker`) queues.

    Credentials stay here: the broker carries only each host's connection data, and results.
    Every credential is loaded before the runner takes work; a bad one stops it (status 2).
    """
    import logging

    from auditor.audit import default_runner, with_passwords
    from auditor.worker import CHECK_HOSTS, Runner, check_credentials, worker_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = _settings(ctx, options)
        # A runner has no inventory: --ask-pass asks for the SSH password it will use.
        settings = with_passwords(settings, tuple(CHECK_HOSTS.values()))
        brokered = _broker(
            {"broker": broker, "broker_password_file": broker_password_file, "broker_ca": broker_ca}
        )
        config = worker_config(settings, brokered, site, name or default_runner(), concurrency)
        check_credentials(config)
        runner = Runner(config)
        status = runner.serve(
            ready=lambda: click.echo(
                f"runner {for_terminal(config.name)} of site {site} ready", err=True
            )
        )
    except AuditorError as exc:
        _fail(str(exc))
    sys.exit(status)


if __name__ == "__main__":
    main()
