"""The local transport: runs the probe on this machine (Ansible's ansible_connection=local)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping

from auditor.errors import HostLevelError
from auditor.models import MAX_OUTPUT_BYTES, Host, ProbeJob, RawOutput
from auditor.outcomes import HostOutcome
from auditor.transports.base import Transport


async def read_bounded(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    """Read a stream to its end, keeping at most `limit` bytes (the rest is drained)."""
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


# What the probe may see of the auditor's environment: where its tools are, the user's home
# and language, the proxy settings and the CA-store locations its tools legitimately use
# (the latter name trusted CAs; none of them can switch verification off). Everything else,
# the auditor's own secrets (AUDITOR_*) first, stays behind.
_KEPT = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CURL_CA_BUNDLE",
    }
)


def probe_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The minimal environment the local probe starts with, taken from `environ`."""
    return {k: v for k, v in environ.items() if k in _KEPT or k.startswith("LC_")}


class LocalTransport(Transport):
    """Runs the job's command as a child process in its own process group."""

    name = "local"

    async def run_job(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        try:
            proc = await asyncio.create_subprocess_exec(
                *shlex.split(job.command),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=probe_environment(os.environ),
            )
        except OSError as exc:
            raise HostLevelError(
                HostOutcome.PROBE_UNAVAILABLE, f"cannot start probe: {exc}"
            ) from exc
        try:
            async with asyncio.timeout(timeout):
                return await _communicate(proc, job.stdin)
        except TimeoutError:
            raise HostLevelError(
                HostOutcome.SESSION_TIMEOUT, f"probe did not finish within {timeout:g} s"
            ) from None
        finally:
            if proc.returncode is None:
                # The probe's curls run in the same session; end them all, by our own PID.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await proc.wait()


async def _communicate(proc: asyncio.subprocess.Process, stdin: bytes) -> RawOutput:
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await proc.stdin.drain()
    proc.stdin.close()
    (out, out_cut), (err, _) = await asyncio.gather(
        read_bounded(proc.stdout, MAX_OUTPUT_BYTES), read_bounded(proc.stderr, 65536)
    )
    status = await proc.wait()
    return RawOutput(stdout=out, stderr=err, exit_status=status, truncated=out_cut)
