"""The transports, one per connection kind, behind `auditor.transports.base.Transport`."""

from __future__ import annotations

from auditor.models import Connection
from auditor.transports.base import Transport
from auditor.transports.options import SSHSettings, WinRMSettings


def make_transport(
    connection: Connection, ssh: SSHSettings, winrm: WinRMSettings, workers: int
) -> Transport:
    """The transport for `connection`, built from the run's settings (imported on demand, so
    a run without WinRM hosts never loads pywinrm)."""
    if connection is Connection.LOCAL:
        from auditor.transports.local import LocalTransport

        return LocalTransport()
    if connection is Connection.SSH:
        from auditor.transports.ssh import SSHTransport

        return SSHTransport(ssh)
    from auditor.transports.winrm import WinRMTransport

    return WinRMTransport(winrm, winrm.password, max_workers=workers)
