"""A WS-Management endpoint for the lab and the tests: `python -m auditor_lab.wsman --config F`.

It speaks the exchange pywinrm performs, on the wire: HTTP POST /wsman, SOAP Create (cmd
shell), Command, Receive until CommandState/Done, Signal (terminate) and Delete. It
authenticates with real acceptors: NTLM (pyspnego), Kerberos (pyspnego over GSSAPI, with a
keytab from a real KDC), CredSSP (pyspnego's acceptor, NTLM inside, delegated credentials
checked), Basic over HTTPS, and client certificates over HTTPS (verified against a client CA,
mapped to an account by the certificate's UPN and issuer, as WinRM's ClientCertificate
mappings do). Over HTTP the SOAP bodies are sealed with the authentication's session key
exactly as pywinrm's `winrm/encryption.py` frames it (multipart/encrypted, protocol
"application/HTTP-SPNEGO-session-encrypted" for NTLM and Kerberos,
"application/HTTP-CredSSP-session-encrypted" for CredSSP). Commands are run by
`auditor_lab.ps51`, which answers as Windows PowerShell 5.1 would, or, with
`"powershell": "7"` in the config, as PowerShell 7.4+ would (`auditor_lab.ps7`).

Everything secret comes from the config FILE (users and passwords), never from argv. `auth`
lists the enabled schemes (ntlm, basic, certificate, credssp, kerberos); `tls.client_ca` and
`client_certificates` ([{subject: UPN, issuer: CA thumbprint, user}]) set up certificate auth;
`kerberos` ({keytab, krb5_config, realm}) points the Kerberos acceptor at its service key. The
config also selects WinRM-level faults:
  normal                the probe runs
  hang                  the command never completes: Receive answers "Running", no output
  quota                 Create fails with the WS-Man quota fault (w:QuotaLimit, HTTP 500)
  slow_http             requests are read and never answered
  no_powershell         cmd.exe cannot find powershell.exe (WINRS_SKIP_CMD_SHELL=FALSE) or
                        CreateProcess cannot (TRUE: a WS-Man fault carrying Win32 error 2)
  no_iwr                PowerShell 2.0: the probe reports Invoke-WebRequest missing
  constrained_language  the bootstrap meets Constrained Language Mode
  garbage               the command prints junk and no record

Fault texts: the quota fault's message and code 2150859173 are verbatim from captures in
hashicorp/vagrant#7489 and test-kitchen#656; the operation-timeout fault (code 2150858793)
is the one pywinrm's protocol.py turns into WinRMOperationTimeoutError.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import ipaddress
import json
import os
import re
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from xml.sax.saxutils import escape

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from auditor_lab import ps7
from auditor_lab.ps51 import (
    ALLOWED_NETWORKS,
    WINDOWS_POWERSHELL_51,
    Flavour,
    Machine,
    Network,
    Output,
    start_command,
)

BEHAVIOURS = (
    "normal",
    "hang",
    "quota",
    "slow_http",
    "no_powershell",
    "no_iwr",
    "constrained_language",
    "garbage",
)
FLAVOURS: Mapping[str, Flavour] = {f.name: f for f in (WINDOWS_POWERSHELL_51, ps7.POWERSHELL_7)}
_MACHINE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {"7": ps7.MACHINE_DEFAULTS}
# Faults whose texts are Windows PowerShell 5.1's (or 2.0's) own.
_ONLY_51 = ("no_iwr", "constrained_language")
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_SHELL_NS = NS["rsp"]
_MAX_BODY = 1 << 20
_BOUNDARY = b"--Encrypted Boundary"
_SPNEGO_SEALED = "application/HTTP-SPNEGO-session-encrypted"
_KERBEROS_SEALED = "application/HTTP-Kerberos-session-encrypted"
_CREDSSP_SEALED = "application/HTTP-CredSSP-session-encrypted"
# pywinrm seals Kerberos as SPNEGO; MS-WSMV 2.2.9.1.2 names the Kerberos one: accept both.
_SEALED_BY = {
    "ntlm": (_SPNEGO_SEALED,),
    "kerberos": (_SPNEGO_SEALED, _KERBEROS_SEALED),
    "credssp": (_CREDSSP_SEALED,),
}
_ENCRYPTED_TYPES = ("multipart/encrypted", "multipart/x-multi-encrypted")
_CREDSSP_CHUNK = 16384
_MUTUAL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
_UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_QUOTA_TEXT = (
    "The WS-Management service cannot process the request. This user is allowed a maximum "
    "number of {n} concurrent shells, which has been exceeded. Close existing shells or raise "
    "the quota for this user. "
)
_TIMEOUT_TEXT = (
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout.  "
)


@dataclass(frozen=True)
class CertificateMapping:
    """A client certificate mapping, like `New-Item WSMan:\\localhost\\ClientCertificate`:
    a certificate whose UPN is `subject`, issued by the CA whose SHA-1 thumbprint is `issuer`,
    logs on as `user`."""

    subject: str
    issuer: str
    user: str


@dataclass(frozen=True)
class EndpointConfig:
    """The endpoint's settings, read from the JSON config file."""

    listen: str = "127.0.0.1"
    port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    # With a client CA the HTTPS listener asks for a client certificate (certificate auth).
    tls_client_ca: str | None = None
    client_certificates: tuple[CertificateMapping, ...] = ()
    # Kerberos: the service keytab and the krb5.conf of the realm (both read by GSSAPI).
    kerberos_keytab: str | None = None
    krb5_config: str | None = None
    kerberos_realm: str | None = None
    auth: tuple[str, ...] = ("ntlm", "basic")
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    behaviour: str = "normal"
    max_shells: int = 30
    # Real WinRM refuses unencrypted SOAP over HTTP unless AllowUnencrypted is set.
    allow_unencrypted: bool = False
    # Append one JSON line per SOAP action here (tests and the lab check Signal/Delete, and
    # how each request was authenticated and protected: "ntlm+sealed", "basic+tls", ...).
    audit_log: str | None = None
    machine: Machine = field(default_factory=Machine)
    network: Network = field(default_factory=Network)
    powershell: str = "5.1"

    @property
    def https(self) -> bool:
        return self.tls_cert is not None

    @property
    def flavour(self) -> Flavour:
        return FLAVOURS[self.powershell]

    @classmethod
    def from_file(cls, path: str | Path) -> EndpointConfig:
        """Parse and check a config file; raises ValueError with the reason."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("config must be a JSON object")
        listen = str(doc.get("listen", "127.0.0.1"))
        if not any(ipaddress.ip_address(listen) in net for net in ALLOWED_NETWORKS):
            raise ValueError(f"listen address {listen} is outside the lab's ranges")
        behaviour = str(doc.get("behaviour", "normal"))
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
        tls = doc.get("tls") or {}
        auth = tuple(str(a).lower() for a in doc.get("auth", ["ntlm", "basic"]))
        users = doc.get("users", {})
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise ValueError("users must map names to passwords")
        entries = doc.get("client_certificates", [])
        if not all(
            isinstance(m, dict) and {"subject", "issuer", "user"} <= m.keys() for m in entries
        ):
            raise ValueError("client_certificates entries need subject, issuer and user")
        mappings = tuple(
            CertificateMapping(str(m["subject"]), str(m["issuer"]), str(m["user"])) for m in entries
        )
        kerberos = doc.get("kerberos") or {}
        powershell = str(doc.get("powershell", "5.1"))
        if powershell not in FLAVOURS:
            raise ValueError(f"powershell must be one of {', '.join(FLAVOURS)}")
        if powershell != "5.1" and behaviour in _ONLY_51:
            raise ValueError(f"behaviour {behaviour} is emulated for powershell 5.1 only")
        machine = Machine(**{**_MACHINE_DEFAULTS.get(powershell, {}), **doc.get("machine", {})})
        net = doc.get("network", {})
        if "proxy" in net:
            proxy = net["proxy"] or None
        else:  # the stand-in for the host's WinINET proxy is its own environment
            proxy = os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY") or None
        no_proxy_env = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        network = Network(
            hosts={str(k).lower(): (v or None) for k, v in net.get("hosts", {}).items()},
            system_dns=bool(net.get("system_dns", False)),
            ca_bundle=net.get("ca_bundle"),
            proxy=proxy,
            no_proxy=tuple(net.get("no_proxy", no_proxy_env.split(","))),
        )
        return cls(
            listen=listen,
            port=int(doc.get("port", 0)),
            tls_cert=tls.get("cert"),
            tls_key=tls.get("key"),
            tls_client_ca=tls.get("client_ca"),
            client_certificates=mappings,
            kerberos_keytab=kerberos.get("keytab"),
            krb5_config=kerberos.get("krb5_config"),
            kerberos_realm=kerberos.get("realm"),
            auth=auth,
            users={str(k): v for k, v in users.items()},
            behaviour=behaviour,
            max_shells=int(doc.get("max_shells", 30)),
            allow_unencrypted=bool(doc.get("allow_unencrypted", False)),
            audit_log=doc.get("audit_log"),
            machine=machine,
            network=network,
            powershell=powershell,
        )


# --- SOAP ----------------------------------------------------------------------------------


class _Fault(Exception):
    def __init__(self, subcode: str, code: int, text: str, status: int = 500) -> None:
        super().__init__(text)
        self.subcode = subcode
        self.code = code
        self.text = text
        self.status = status


def _envelope(action: str, relates_to: str, body: str, header_extra: str = "") -> bytes:
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items() if k != "p")
    return (
        f'<s:Envelope xml:lang="en-US" {ns}><s:Header>'
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>{header_extra}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault_body(fault: _Fault, machine: str, relates_to: str) -> bytes:
    text = escape(fault.text)
    body = (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode>"
        f"<s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{text}</s:Text></s:Reason><s:Detail>'
        '<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
        f'Code="{fault.code}" Machine="{escape(machine)}"><f:Message>{text}</f:Message>'
        "</f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def _duration(text: str | None, default: float) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", (text or "").strip())
    return float(match.group(1)) if match else default


@dataclass
class _Command:
    output: Output
    cancel: threading.Event


@dataclass
class _Shell:
    user: str
    commands: dict[str, _Command] = field(default_factory=dict)


class Service:
    """The shells and commands behind the endpoint; thread-safe."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}

    def shell_count(self) -> int:
        with self._lock:
            return len(self._shells)

    def handle(self, request: bytes, user: str, via: str = "") -> bytes:
        """Answer one SOAP request; raises _Fault for a WS-Man fault. `via` says how it was
        authenticated and protected (for the audit log only)."""
        if b"<!DOCTYPE" in request or b"<!ENTITY" in request:
            raise _Fault("w:InvalidMessageInformationHeader", 2150858817, "DTDs are not allowed.")
        try:
            # Parsed only after the DTD check above: no entity can be declared or expanded.
            root = ET.fromstring(request)  # noqa: S314
        except ET.ParseError:
            raise _Fault(
                "w:SchemaValidationError", 2150858817, "The SOAP XML is invalid."
            ) from None
        action = (root.findtext(".//a:Action", "", NS) or "").strip()
        message_id = (root.findtext(".//a:MessageID", "", NS) or "").strip()
        resource = (root.findtext(".//w:ResourceURI", "", NS) or "").strip()
        if resource.lower() != SHELL_URI:
            raise _Fault("w:DestinationUnreachable", 2150858770, f"Unknown resource {resource}.")
        shell_id = ""
        for selector in root.iterfind(".//w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = (selector.text or "").strip()
        options = {o.get("Name", ""): (o.text or "") for o in root.iterfind(".//w:Option", NS)}
        op_timeout = _duration(root.findtext(".//w:OperationTimeout", None, NS), 60.0)
        verb = action.rsplit("/", 1)[-1]
        self._log(verb, shell_id, user, via)
        if verb == "Create":
            return self._create(message_id, user)
        shell = self._shell(shell_id)
        if verb == "Command":
            return self._command(root, message_id, shell, options)
        if verb == "Receive":
            return self._receive(root, message_id, shell, op_timeout)
        if verb == "Signal":
            return self._signal(root, message_id, shell)
        if verb == "Delete":
            return self._delete(message_id, shell_id)
        raise _Fault("a:ActionNotSupported", 2150858771, f"The action {action} is not supported.")

    def _log(self, verb: str, shell_id: str, user: str, via: str) -> None:
        if not self.config.audit_log:
            return
        entry = {"t": time.time(), "action": verb, "shell": shell_id, "user": user, "via": via}
        line = json.dumps(entry)
        with self._lock, open(self.config.audit_log, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def _shell(self, shell_id: str) -> _Shell:
        with self._lock:
            shell = self._shells.get(shell_id)
        if shell is None:
            raise _Fault(
                "w:InvalidSelectors",
                2150858843,
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                "because the shell was not found on the server. Possible causes are: the "
                "specified ShellId is incorrect or the shell no longer exists on the server. "
                "Provide the correct ShellId or create a new shell and retry the operation. ",
            )
        return shell

    def _create(self, message_id: str, user: str) -> bytes:
        with self._lock:
            mine = sum(1 for s in self._shells.values() if s.user == user)
            if self.config.behaviour == "quota" or mine >= self.config.max_shells:
                raise _Fault(
                    "w:QuotaLimit", 2150859173, _QUOTA_TEXT.format(n=self.config.max_shells)
                )
            shell_id = str(uuid.uuid4()).upper()
            self._shells[shell_id] = _Shell(user=user)
        scheme = "https" if self.config.https else "http"
        body = (
            "<x:ResourceCreated>"
            f"<a:Address>{scheme}://{self.config.machine.hostname}/wsman</a:Address>"
            f"<a:ReferenceParameters><w:ResourceURI>{SHELL_URI}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri><rsp:Owner>{escape(user)}</rsp:Owner>"
            "<rsp:InputStreams>stdin</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        )
        return _envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", message_id, body
        )

    def _command(
        self, root: ET.Element, message_id: str, shell: _Shell, options: Mapping[str, str]
    ) -> bytes:
        command = (root.findtext(".//rsp:Command", "", NS) or "").strip()
        arguments = [a.text or "" for a in root.iterfind(".//rsp:Arguments", NS)]
        line = " ".join([command, *arguments]).strip()
        skip_cmd = options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
        if skip_cmd and len(line) > 32767:
            raise _Fault("w:InternalError", 206, "The filename or extension is too long. ")
        cfg = self.config
        flavour, machine, behaviour = self._program(line)
        if skip_cmd and behaviour == "no_powershell":
            raise _Fault("w:InternalError", 2, "The system cannot find the file specified. ")
        output, cancel = start_command(line, skip_cmd, machine, cfg.network, behaviour, flavour)
        command_id = str(uuid.uuid4()).upper()
        with self._lock:
            shell.commands[command_id] = _Command(output, cancel)
        body = (
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            "</rsp:CommandResponse>"
        )
        return _envelope(f"{_SHELL_NS}/CommandResponse", message_id, body)

    def _program(self, line: str) -> tuple[Flavour, Machine, str]:
        """Which PowerShell the command line starts: `powershell.exe` is Windows PowerShell
        5.1 on every host; `pwsh.exe` exists only where PowerShell 7 is installed (config
        `"powershell": "7"`), and is not found elsewhere."""
        cfg = self.config
        program = re.split(r"[\\/]", line.split(" ", 1)[0])[-1].lower()
        if program in ("pwsh", "pwsh.exe"):
            if cfg.powershell == "5.1":
                return WINDOWS_POWERSHELL_51, cfg.machine, "no_powershell"
            return cfg.flavour, cfg.machine, cfg.behaviour
        if cfg.powershell == "5.1":
            return cfg.flavour, cfg.machine, cfg.behaviour
        # A PowerShell 7 host still has Windows PowerShell 5.1 as powershell.exe.
        base = Machine()
        machine = replace(
            cfg.machine, ps_version=base.ps_version, clixml_progress=base.clixml_progress
        )
        return WINDOWS_POWERSHELL_51, machine, cfg.behaviour

    def _receive(
        self, root: ET.Element, message_id: str, shell: _Shell, op_timeout: float
    ) -> bytes:
        stream = root.find(".//rsp:DesiredStream", NS)
        command_id = "" if stream is None else stream.get("CommandId", "")
        with self._lock:
            command = shell.commands.get(command_id)
        if command is None:
            raise _Fault(
                "w:InvalidSelectors", 2150858843, f"The command {command_id} was not found. "
            )
        if self.config.behaviour == "hang":
            # A command that never completes: answer "still running" with nothing to show.
            time.sleep(min(0.5, op_timeout))
            out, err, code = b"", b"", None
        else:
            out, err, code = command.output.take(max(0.1, min(op_timeout, 10.0)))
            if not out and not err and code is None:
                raise _Fault("w:TimedOut", 2150858793, _TIMEOUT_TEXT)
        cid = escape(command_id)
        parts = [
            f'<rsp:Stream Name="{name}" CommandId="{cid}">{base64.b64encode(data).decode()}'
            "</rsp:Stream>"
            for name, data in (("stdout", out), ("stderr", err))
            if data
        ]
        if code is None:
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{_SHELL_NS}/CommandState/Running"/>'
            )
        else:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{_SHELL_NS}/CommandState/Done">'
                f"<rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"
            )
        body = f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"
        return _envelope(f"{_SHELL_NS}/ReceiveResponse", message_id, body)

    def _signal(self, root: ET.Element, message_id: str, shell: _Shell) -> bytes:
        signal_el = root.find(".//rsp:Signal", NS)
        command_id = "" if signal_el is None else signal_el.get("CommandId", "")
        with self._lock:
            command = shell.commands.pop(command_id, None)
        if command is not None:
            command.cancel.set()
            command.output.finish(-1)
        return _envelope(f"{_SHELL_NS}/SignalResponse", message_id, "<rsp:SignalResponse/>")

    def _delete(self, message_id: str, shell_id: str) -> bytes:
        with self._lock:
            shell = self._shells.pop(shell_id, None)
        for command in shell.commands.values() if shell else ():
            command.cancel.set()
        return _envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", message_id, ""
        )

    def close(self) -> None:
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            for command in shell.commands.values():
                command.cancel.set()


# --- HTTP, authentication and message encryption ------------------------------------------


def _cbt(cert_path: str) -> spnego.channel_bindings.GssChannelBindings:
    """tls-server-end-point channel bindings (RFC 5929) for NTLM over our HTTPS listener."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + digest.finalize()
    )


def _client_cas(path: str | None) -> dict[bytes, str]:
    """The client CA file's certificates: DER subject name -> SHA-1 thumbprint (hex, upper)."""
    if not path:
        return {}
    cas = x509.load_pem_x509_certificates(Path(path).read_bytes())
    return {
        ca.subject.public_bytes(): ca.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
        for ca in cas
    }


def _upn(cert: x509.Certificate) -> str | None:
    """The user principal name in the certificate's SAN (otherName, szOID_NT_PRINCIPAL_NAME)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in sans.get_values_for_type(x509.OtherName):
        value = name.value
        # A DER UTF8String with a short-form length: every UPN a test or the lab makes.
        if name.type_id == _UPN_OID and len(value) > 2 and value[0] == 0x0C and value[1] < 0x80:
            return value[2 : 2 + value[1]].decode("utf-8", errors="replace")
    return None


def _linger(sock: socket.socket) -> None:
    """Close after a failed handshake so that the client reads the TLS alert.

    Under TLS 1.3 a client has already sent its request when the server rejects its
    certificate; closing with that request unread would reset the connection and discard the
    alert, leaving the client with a bare EOF.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        while sock.recv(65536):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Several hosts' audits and NTLM's three legs arrive at once; a short backlog drops them.
    request_queue_size = 64

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.service = Service(config)
        self.stopping = threading.Event()
        self.bindings = _cbt(config.tls_cert) if config.tls_cert else None
        self.client_cas = _client_cas(config.tls_client_ca)
        self.tls: ssl.SSLContext | None = None
        if config.tls_cert and config.tls_key:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(config.tls_cert, config.tls_key)
            if config.tls_client_ca:
                # Certificate auth: ask every client for a certificate. http.sys would hand an
                # untrusted one to WinRM, which answers 401; Python's ssl cannot accept a
                # certificate it does not trust, so here such a handshake ends with a TLS alert.
                self.tls.verify_mode = ssl.CERT_OPTIONAL
                self.tls.load_verify_locations(config.tls_client_ca)
        super().__init__((config.listen, config.port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs on the connection's own thread, not in the accept loop,
        # so one slow or broken client cannot stall everyone else.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)
        tls = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except ssl.SSLError:
            _linger(tls)
            tls.close()
            return
        except OSError:
            tls.close()
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _Refused(Exception):
    """The client authenticated, but not as an account this endpoint accepts."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections end after this; a Receive holds at most 10 s.
    timeout = 300
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # NTLM, Kerberos and CredSSP authenticate the TCP connection, not each request: the
        # security context (a pyspnego acceptor) and the user live here.
        self.context: Any = None
        self.kind = ""
        self.user: str | None = None
        self.scheme = ""
        # Kerberos mutual authentication: the AP-REP rides on the reply that accepts the AP-REQ.
        self.answer_token: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("AUDITOR_WSMAN_DEBUG"):
            sys.stderr.write(f"wsman {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._reply(405, b"", "text/plain")

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            self._reply(413, b"", "text/plain", close=True)
            return
        body = self.rfile.read(int(length))
        if self.server.config.behaviour == "slow_http":
            self.server.stopping.wait(3600)
            self.close_connection = True
            return
        if self.path.split("?", 1)[0].lower() != "/wsman":
            self._reply(404, b"", "text/plain")
            return
        user = self._authenticate()
        if user is None:
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.startswith(_ENCRYPTED_TYPES)
        match = re.search(r'protocol="([^"]+)"', content_type)
        protocol = match.group(1) if match else ""
        if encrypted:
            try:
                body = self._unseal(body, protocol)
            except Exception:  # a tampered or foreign message: refuse like http.sys would
                self._reply(400, b"", "text/plain", close=True)
                return
        if not body:
            self._reply(200, b"", "application/soap+xml;charset=UTF-8")
            return
        cfg = self.server.config
        if not encrypted and not cfg.https and not cfg.allow_unencrypted:
            self._reply(400, b"", "text/plain")
            return
        status = 200
        protection = "sealed" if encrypted else ("tls" if cfg.https else "plain")
        try:
            answer = self.server.service.handle(body, user, f"{self.scheme}+{protection}")
        except _Fault as fault:
            status = fault.status
            answer = _fault_body(fault, self.server.config.machine.hostname, _message_id(body))
        if encrypted:
            sealed, content_type = self._seal(answer, protocol)
            self._reply(status, sealed, content_type)
        else:
            self._reply(status, answer, "application/soap+xml;charset=UTF-8")

    # Authentication ---------------------------------------------------------------------

    def _challenge_headers(self) -> list[tuple[str, str]]:
        cfg = self.server.config
        headers = []
        if "ntlm" in cfg.auth or "kerberos" in cfg.auth:
            headers.append(("WWW-Authenticate", "Negotiate"))
        if "kerberos" in cfg.auth:
            headers.append(("WWW-Authenticate", "Kerberos"))
        if "credssp" in cfg.auth:
            headers.append(("WWW-Authenticate", "CredSSP"))
        if "basic" in cfg.auth and cfg.https:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        return headers

    def _refuse(self) -> None:
        self.context = None
        self.kind = ""
        self.user = None
        self.answer_token = None
        self._reply(401, b"", "text/plain", extra=self._challenge_headers())

    def _authenticate(self) -> str | None:
        """The authenticated user, or None after answering 401 (or a challenge)."""
        cfg = self.server.config
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        scheme = scheme.lower()
        if header == _MUTUAL:
            user = self._certificate_user()
            if user is not None:
                self.scheme = "certificate"
                return user
        elif scheme == "basic" and "basic" in cfg.auth and cfg.https:
            try:
                name, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except ValueError:
                name, password = "", ""
            expected = cfg.users.get(name)
            if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
                self.scheme = "basic"
                return name
        elif scheme in ("negotiate", "ntlm", "kerberos") and token:
            return self._gss_step(scheme, token)
        elif scheme == "credssp" and "credssp" in cfg.auth and token:
            return self._credssp_step(token)
        elif not header and self.user is not None:
            return self.user
        self._refuse()
        return None

    def _gss_step(self, scheme: str, token: str) -> str | None:
        """One leg of NTLM (raw NTLMSSP tokens) or Kerberos (a GSS-API krb5 AP-REQ)."""
        cfg = self.server.config
        user = None
        try:
            raw = base64.b64decode(token, validate=True)
            if raw[:8] == b"NTLMSSP\x00":
                if "ntlm" not in cfg.auth:
                    raise _Refused("NTLM is not enabled")
                if raw[8:12] == struct.pack("<I", 1) or self.kind != "ntlm":
                    self._start(
                        "ntlm",
                        spnego.server(protocol="ntlm", channel_bindings=self.server.bindings),
                    )
            else:
                if "kerberos" not in cfg.auth:
                    raise _Refused("Kerberos is not enabled")
                # Every AP-REQ starts a new context; the service key comes from the keytab.
                self._start(
                    "kerberos",
                    spnego.server(protocol="kerberos", channel_bindings=self.server.bindings),
                )
            answer = self.context.step(raw)
            if self.context.complete:
                user = self._account(str(self.context.client_principal or ""))
        except Exception:  # wrong password, unknown user, bad ticket or token: all a plain 401
            self._refuse()
            return None
        prefix = {"negotiate": "Negotiate", "ntlm": "NTLM"}.get(scheme, "Kerberos")
        if user is None:
            challenge = f"{prefix} {base64.b64encode(answer or b'').decode()}"
            self._reply(401, b"", "text/plain", extra=[("WWW-Authenticate", challenge)])
            return None
        if answer:
            self.answer_token = f"{prefix} {base64.b64encode(answer).decode()}"
        self.user = user
        self.scheme = self.kind
        return user

    def _account(self, principal: str) -> str:
        """The local account an authenticated NTLM or Kerberos principal maps to."""
        cfg = self.server.config
        if self.kind == "ntlm":
            # pyspnego's NTLM acceptor already checked the password from NTLM_USER_FILE.
            return principal.split("\\")[-1]
        name, _, realm = principal.partition("@")
        if cfg.kerberos_realm and realm.upper() != cfg.kerberos_realm.upper():
            raise _Refused(f"principal {principal} is from another realm")
        if name not in cfg.users:
            raise _Refused(f"principal {principal} maps to no account")
        return name

    def _credssp_step(self, token: str) -> str | None:
        """One leg of CredSSP: TLS, NTLM inside it, then the delegated credentials."""
        user = None
        try:
            raw = base64.b64decode(token, validate=True)
            client_hello = raw[:1] == b"\x16" and raw[5:6] == b"\x01"
            if self.kind != "credssp" or client_hello:
                self._start("credssp", spnego.server(protocol="credssp"))
            answer = self.context.step(raw)
            if self.context.complete:
                user = self._delegated_user()
        except Exception:  # a bad token or delegated credentials that are not the account's
            self._refuse()
            return None
        if user is None:
            # Still negotiating, or a TSRequest carrying the error code the client will raise.
            challenge = f"CredSSP {base64.b64encode(answer or b'').decode()}"
            self._reply(401, b"", "text/plain", extra=[("WWW-Authenticate", challenge)])
            return None
        self.user = user
        self.scheme = "credssp"
        return user

    def _delegated_user(self) -> str:
        """The account whose user name and password the client delegated (TSPasswordCreds)."""
        credential = self.context.get_extra_info("client_credential")
        name = str(getattr(credential, "username", "") or "")
        password = str(getattr(credential, "password", "") or "")
        name = name.split("\\")[-1]
        expected = self.server.config.users.get(name)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise _Refused("the delegated credentials are not the account's")
        return name

    def _certificate_user(self) -> str | None:
        """The account the TLS client certificate is mapped to, or None (then 401)."""
        cfg = self.server.config
        if "certificate" not in cfg.auth or not cfg.https:
            return None
        der = self.connection.getpeercert(binary_form=True)
        if not der:
            return None
        cert = x509.load_der_x509_certificate(der)
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return None
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
            return None
        upn = _upn(cert)
        issuer = self.server.client_cas.get(cert.issuer.public_bytes())
        for mapping in cfg.client_certificates:
            if (
                upn is not None
                and issuer is not None
                and mapping.subject.lower() == upn.lower()
                and mapping.issuer.upper() == issuer
                and mapping.user in cfg.users
            ):
                return mapping.user
        return None

    def _start(self, kind: str, context: Any) -> None:
        self.context = context
        self.kind = kind
        self.user = None
        self.answer_token = None

    # Message encryption (MS-WSMV 2.2.9.1, framed as pywinrm's encryption.py expects) -------

    def _unseal(self, body: bytes, protocol: str) -> bytes:
        if self.context is None or not self.context.complete:
            raise ValueError("no security context on this connection")
        if protocol not in _SEALED_BY.get(self.kind, ()):
            raise ValueError(f"{protocol} does not match {self.kind}")
        parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
        message = b""
        for i in range(0, len(parts) - 1, 2):
            expected = int(parts[i].split(b"Length=")[1].split(b"\r\n")[0])
            payload = parts[i + 1]
            if payload.endswith(_BOUNDARY + b"--\r\n"):
                payload = payload[: -len(_BOUNDARY + b"--\r\n")]
            payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            # NTLM and Kerberos: the signature's length, the signature, the sealed message.
            # CredSSP: the TLS trailer's length, then TLS records (read whole).
            head_len = struct.unpack("<i", payload[:4])[0]
            head = payload[4 : 4 + head_len]
            plain: bytes = self.context.unwrap_winrm(head, payload[4 + head_len :])
            if len(plain) != expected:
                raise ValueError("encrypted length mismatch")
            message += plain
        return bytes(message)

    def _seal(self, message: bytes, protocol: str) -> tuple[bytes, str]:
        """The sealed reply and its content type, in the protocol the request used."""
        # CredSSP seals at most 16 KiB per part (MS-WSMV 2.2.9.1.3), in multipart/x-multi-encrypted.
        size = _CREDSSP_CHUNK if self.kind == "credssp" else max(1, len(message))
        chunks = [message[i : i + size] for i in range(0, max(1, len(message)), size)]
        out = b""
        for chunk in chunks:
            wrapped = self.context.wrap_winrm(chunk)
            out += (
                _BOUNDARY + b"\r\n"
                b"\tContent-Type: " + protocol.encode() + b"\r\n"
                b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
                + str(len(chunk)).encode() + b"\r\n"
                + _BOUNDARY + b"\r\n"
                b"\tContent-Type: application/octet-stream\r\n"
                + struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
            )  # fmt: skip
        kind = "multipart/x-multi-encrypted" if len(chunks) > 1 else "multipart/encrypted"
        content_type = f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"'
        return out + _BOUNDARY + b"--\r\n", content_type

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        extra: Sequence[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        if self.answer_token:
            self.send_header("WWW-Authenticate", self.answer_token)
            self.answer_token = None
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


def _message_id(body: bytes) -> str:
    match = re.search(rb"MessageID>([^<]{1,100})<", body)
    return match.group(1).decode("utf-8", errors="replace") if match else ""


# --- running the endpoint --------------------------------------------------------------------


def _write_ntlm_users(config: EndpointConfig, directory: Path) -> Path:
    """pyspnego's NTLM acceptor reads its users from NTLM_USER_FILE (DOMAIN:USER:PASSWORD)."""
    path = directory / "ntlm-users"
    domains = ("", config.machine.hostname.upper(), ".")
    lines = [f"{d}:{user}:{pw}" for user, pw in config.users.items() for d in domains]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def serve(config: EndpointConfig) -> None:
    """Serve until SIGTERM/SIGINT; prints `wsman listening on HOST:PORT` once ready."""
    with tempfile.TemporaryDirectory(prefix="wsman-") as private:
        os.chmod(private, 0o700)
        os.environ["NTLM_USER_FILE"] = str(_write_ntlm_users(config, Path(private)))
        if config.kerberos_keytab:
            os.environ["KRB5_KTNAME"] = f"FILE:{config.kerberos_keytab}"
            # The acceptor's replay cache stays in this endpoint's private directory.
            os.environ["KRB5RCACHENAME"] = f"file2:{private}/krb5.rcache"
        if config.krb5_config:
            os.environ["KRB5_CONFIG"] = config.krb5_config
        server = _Server(config)

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        host, port = config.listen, server.server_address[1]
        scheme = "https" if config.https else "http"
        print(f"wsman listening on {host}:{port} ({scheme})", flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.stopping.set()
            server.service.close()
            server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auditor_lab.wsman",
        description="A WS-Management endpoint for the lab and the tests.",
    )
    parser.add_argument("--config", required=True, help="JSON config file (holds the users)")
    args = parser.parse_args(argv)
    try:
        config = EndpointConfig.from_file(args.config)
    except (OSError, ValueError, TypeError) as exc:
        print(f"wsman: bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0


class EndpointProcess:
    """Runs the endpoint as a subprocess and always stops it (tests and the lab use this)."""

    def __init__(self, config_path: str | Path, env: Mapping[str, str] | None = None) -> None:
        self.config_path = str(config_path)
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 15.0) -> int:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditor_lab.wsman", "--config", self.config_path],
            stdout=subprocess.PIPE,
            stderr=None,
            env=self.env,
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        line = b""
        end = time.monotonic() + timeout
        try:
            while not line.endswith(b"\n") and time.monotonic() < end:
                if selector.select(timeout=max(0.0, end - time.monotonic())):
                    chunk = os.read(self.process.stdout.fileno(), 256)
                    if not chunk:
                        break
                    line += chunk
        finally:
            selector.close()
        match = re.search(rb"listening on \S+:(\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"wsman endpoint did not start: {line!r}")
        self.port = int(match.group(1))
        return self.port

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> EndpointProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
