"""The lab: a real test fleet on this machine (`auditor-lab up | down | status`).

Network namespaces with their own sshd (Linux hosts) or WS-Management endpoint (Windows
hosts, `auditor_lab.windows`), hosts file, CA bundle and nftables rules, plus a local HTTPS
"CDN", a CONNECT proxy, a denying proxy and a TLS-intercepting endpoint, all on the private
subnet 10.213.0.0/16 that exists only inside this machine. See `auditor_lab.spec` for the
design table (one host per failure condition).
"""

# Registers the "wsman" service that Windows lab hosts run (imported for that effect).
from auditor_lab import windows as _windows  # noqa: F401
from auditor_lab.fleet import (
    HostContext,
    HostStatus,
    LabInfo,
    LabServices,
    LabStatus,
    lab_down,
    lab_status,
    lab_up,
    preflight,
    register_service,
)
from auditor_lab.spec import CATALOG_NAMES, PROBE_URL, HostKind, HostSpec

__all__ = [
    "CATALOG_NAMES",
    "PROBE_URL",
    "HostContext",
    "HostKind",
    "HostSpec",
    "HostStatus",
    "LabInfo",
    "LabServices",
    "LabStatus",
    "lab_down",
    "lab_status",
    "lab_up",
    "preflight",
    "register_service",
]
