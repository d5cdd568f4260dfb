"""Secrets the auditor holds never come back through what a host says.

A host may have learned a password the auditor uses (a hostile host, a tool that echoes its
own command line, a login script): whatever it sends back is scrubbed of every secret the
auditor knows before it reaches results, reports or the terminal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import audit, environ

INVENTORY_PASSWORD = "Hunter2-Inventory"
RUN_PASSWORD = "Run-Wide/Pw0rd"
PASSPHRASE = "Key-Passphrase-77"

# A host whose curl "knows" the secrets and prints them, raw and URL-encoded, in its error
# message and its version line.
LEAKY_CURL = f"""#!/bin/sh
for a in "$@"; do
  if [ "$a" = "--version" ]; then echo "curl 7.88.1 {PASSPHRASE}"; exit 0; fi
done
echo "curl: (6) Could not resolve host: {INVENTORY_PASSWORD}.x Run-Wide%2FPw0rd {PASSPHRASE}" >&2
exit 6
"""


@pytest.mark.parametrize(
    "variable",
    ["ansible_password", "ansible_ssh_pass", "ansible_winrm_pass", "ansible_become_pass"],
)
def test_a_host_cannot_send_back_any_secret_the_auditor_holds(
    tmp_path: Path, variable: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(LEAKY_CURL)
    (bin_dir / "curl").chmod(0o755)
    inventory = tmp_path / "inv.ini"
    inventory.write_text(f"box ansible_connection=local {variable}={INVENTORY_PASSWORD}\n")
    out = tmp_path / "out"
    env = environ(
        PATH=f"{bin_dir}:{environ()['PATH']}",
        AUDITOR_SSH_PASSWORD=RUN_PASSWORD,
        AUDITOR_SSH_KEY_PASSPHRASE=PASSPHRASE,
    )
    proc = audit(
        "-i", str(inventory), "--url", "https://cdn.invalid/status", "-o", str(out), env=env
    )
    assert proc.returncode == 1, proc.stderr
    # The evidence is kept, the secrets are not.
    results = (out / "results.jsonl").read_text()
    assert "Could not resolve host: ***.x" in results
    for secret in (INVENTORY_PASSWORD, RUN_PASSWORD, "Run-Wide%2FPw0rd", PASSPHRASE):
        assert secret not in proc.stdout + proc.stderr
        for path in out.iterdir():
            assert secret not in path.read_text(errors="replace"), (secret, path.name)
