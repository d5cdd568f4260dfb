"""`auditor-lab up | down | status`: the lab's own command, separate from the product's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from auditor.errors import InputError
from auditor.textsafe import for_terminal
from auditor_lab.errors import LabError

DEFAULT_DIR = Path("demo")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {for_terminal(message)}", err=True)
    sys.exit(2)


_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=DEFAULT_DIR,
    show_default=True,
    help="Where the lab writes its inventory, keys and state.",
)


@click.group()
def main() -> None:
    """The lab: a fleet of real OpenSSH and WS-Management hosts in network namespaces."""


@main.command("up")
@_dir_option
@click.option(
    "--hosts",
    "extra",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2000),
    help="Extra plain hosts (group 'scale') for benchmarks.",
)
@click.option(
    "--sites",
    is_flag=True,
    help="Also a broker (redis-server) and site runners: each Linux site's SSH answers only "
    "its own runners, and `audit --broker` audits the fleet through them.",
)
def up_cmd(directory: Path, extra: int, sites: bool) -> None:
    """Bring the lab up (root only)."""
    from auditor_lab import lab_up

    try:
        info = lab_up(directory.resolve(), extra_hosts=extra)
        if sites:
            from auditor_lab.sites import demo_up

            site_lab, runners = demo_up(info, directory.resolve() / "sites")
    except (LabError, InputError) as exc:
        _fail(str(exc))
    click.echo(f"lab up: {len(info.hosts)} hosts")
    for spec in info.hosts:
        click.echo(f"  {spec.name:24} {spec.address:15} expect {spec.outcome}")
    click.echo(f"inventory:   {info.inventory}")
    click.echo(f"known_hosts: {info.known_hosts}")
    click.echo(f"key:         {info.key}")
    env = []
    if info.ssh_password is not None:
        click.echo(f"SSH:         root's password on password-only hosts in {info.ssh_password}")
        env.append(f'AUDITOR_SSH_PASSWORD="$(cat {info.ssh_password})"')
    if info.winrm_password is not None:
        click.echo(f"WinRM:       user {info.winrm_user}, password in {info.winrm_password}")
        env.append(f'AUDITOR_WINRM_PASSWORD="$(cat {info.winrm_password})"')
    click.echo(
        f"try: {' '.join([*env, 'audit'])} -i {info.inventory} --known-hosts {info.known_hosts}"
    )
    if sites:
        click.echo(f"sites:       runners {', '.join(runners)}; broker {site_lab.broker_url}")
        click.echo(
            f'through the broker: AUDITOR_BROKER_PASSWORD="$(cat {site_lab.password_file})" '
            f"audit -i {site_lab.inventory} --broker {site_lab.broker_url} "
            f"--url {info.url} --queue-timeout 20"
        )


@main.command("down")
@_dir_option
def down_cmd(directory: Path) -> None:
    """Remove everything the lab made (idempotent)."""
    from auditor_lab import lab_down

    try:
        removed = lab_down(directory.resolve())
    except LabError as exc:
        _fail(str(exc))
    click.echo(f"lab down: removed {len(removed)} items")


@main.command("status")
@_dir_option
def status_cmd(directory: Path) -> None:
    """Show what the lab has running."""
    from auditor_lab import lab_status

    try:
        status = lab_status(directory.resolve())
    except LabError as exc:
        _fail(str(exc))
    click.echo(str(status))


if __name__ == "__main__":
    main()
