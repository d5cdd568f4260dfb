"""A throwaway MIT Kerberos realm on loopback for the tests: a real krb5kdc, always stopped.

Everything lives in one temporary directory: krb5.conf, kdc.conf, the database and its stash,
the keytabs and the credential caches. The KDC listens on 127.0.0.1 only, on a port picked
for this run. Passwords (the master key's and the user's) reach kdb5_util, kadmin.local and
kinit on stdin, never on a command line. No name is ever looked up in DNS: the realm is
named in the configuration and host names are taken as written.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REALM = "AUDITOR.TEST"
SERVICE_HOST = "win-test.auditor.test"
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")


def tools_missing() -> list[str]:
    """The MIT Kerberos programs this fixture needs that are not installed."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in TOOLS if shutil.which(tool, path=search) is None]


def _tool(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise RuntimeError(f"{name} is not installed (Debian: krb5-kdc, krb5-admin-server)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Realm:
    """A running realm: its client configuration, service keytabs and one user."""

    name: str
    directory: Path
    krb5_conf: Path
    kdc_port: int
    service_host: str
    # The service key as the KDC has it now, and one exported before a re-key (stale).
    keytab: Path
    stale_keytab: Path
    user: str
    password: str

    def env(self, ccache: Path) -> dict[str, str]:
        """Variables that point a Kerberos client at this realm and at `ccache`."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5CCNAME": f"FILE:{ccache}"}

    def kinit(self, ccache: Path, password: str | None = None) -> None:
        """Get a TGT for the user into `ccache`; the password goes to kinit on stdin."""
        env = {**_base_env(), **self.env(ccache)}
        secret = self.password if password is None else password
        done = subprocess.run(
            [_tool("kinit"), f"{self.user}@{self.name}"],
            input=f"{secret}\n".encode(),
            env=env,
            capture_output=True,
            timeout=20,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kinit failed: {done.stderr.decode(errors='replace').strip()}")


def _base_env() -> dict[str, str]:
    drop = {"KRB5_CONFIG", "KRB5CCNAME", "KRB5_KTNAME", "KRB5_KDC_PROFILE", "KRB5_TRACE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _krb5_conf(directory: Path, port: int) -> str:
    return f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    default_ccache_name = FILE:{directory}/ccache-default
    default_keytab_name = FILE:{directory}/default.keytab

[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{port}
    }}

[domain_realm]
    .auditor.test = {REALM}
    auditor.test = {REALM}
"""


def _kdc_conf(directory: Path, port: int) -> str:
    return f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}

[realms]
    {REALM} = {{
        database_name = {directory}/principal
        key_stash_file = {directory}/stash
        acl_file = {directory}/kadm5.acl
        kdc_listen = 127.0.0.1:{port}
        kdc_tcp_listen = 127.0.0.1:{port}
        max_life = 1h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{directory}/kdc.log
"""


def _run(argv: list[str], env: Mapping[str, str], stdin: str = "") -> None:
    done = subprocess.run(
        argv, input=stdin.encode(), env=dict(env), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        out = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise RuntimeError(f"{os.path.basename(argv[0])} failed ({done.returncode}): {out}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"krb5kdc exited with status {process.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def kdc(directory: Path, user: str, password: str) -> Iterator[Realm]:
    """Create a realm in `directory` with `user` and HTTP/SERVICE_HOST, run its KDC, and
    always stop it."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    port = _free_port()
    krb5_conf = directory / "krb5.conf"
    kdc_conf = directory / "kdc.conf"
    _write(krb5_conf, _krb5_conf(directory, port))
    _write(kdc_conf, _kdc_conf(directory, port))
    _write(directory / "kadm5.acl", "")
    env = {**_base_env(), "KRB5_CONFIG": str(krb5_conf), "KRB5_KDC_PROFILE": str(kdc_conf)}
    master = secrets.token_urlsafe(24)
    _run([_tool("kdb5_util"), "-r", REALM, "create", "-s"], env, f"{master}\n{master}\n")
    kadmin = [_tool("kadmin.local"), "-r", REALM, "-q"]
    _run([*kadmin, f"addprinc +requires_preauth {user}"], env, f"{password}\n{password}\n")
    service = f"HTTP/{SERVICE_HOST}"
    _run([*kadmin, f"addprinc -randkey {service}"], env)
    # Each export re-keys the principal: the first keytab is stale once the second exists.
    stale = directory / "stale.keytab"
    keytab = directory / "http.keytab"
    _run([*kadmin, f"ktadd -k {stale} {service}"], env)
    _run([*kadmin, f"ktadd -k {keytab} {service}"], env)
    # Its stderr goes to a file: a pipe nobody reads could fill and stall the KDC.
    with open(directory / "krb5kdc.stderr", "wb") as stderr:
        process = subprocess.Popen(
            [_tool("krb5kdc"), "-n", "-r", REALM],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        try:
            _wait_listening(port, process, 15.0)
        except RuntimeError as exc:
            said = (directory / "krb5kdc.stderr").read_text(errors="replace").strip()
            raise RuntimeError(f"{exc}: {said}") from None
        yield Realm(
            name=REALM,
            directory=directory,
            krb5_conf=krb5_conf,
            kdc_port=port,
            service_host=SERVICE_HOST,
            keytab=keytab,
            stale_keytab=stale,
            user=user,
            password=password,
        )
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
