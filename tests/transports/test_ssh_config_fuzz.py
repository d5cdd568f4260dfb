"""Property tests: any ssh config text (keywords ssh knows with arbitrary arguments, Match
and Host lines, tokens, quotes, garbage) is either refused as one InputError or resolves
every look-up to a HostConfig; nothing else escapes the parser or the resolver."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from auditor.errors import InputError
from auditor.transports.sshconfig import HostConfig, SSHConfigReader

KEYWORDS = [
    "Host",
    "Match",
    "HostName",
    "Port",
    "User",
    "IdentityFile",
    "ProxyJump",
    "ProxyCommand",
    "Include",
    "CanonicalizeHostname",
    "CanonicalDomains",
    "CanonicalizeMaxDots",
    "IgnoreUnknown",
    "IdentitiesOnly",
    "HostKeyAlias",
    "NoSuchKeyword",
]
word = st.text(
    alphabet=st.sampled_from(list("ab.*?!%hnprdk{}$~/:@,[]=\"'# \\-0129")), min_size=0, max_size=12
)
line = st.one_of(
    st.builds(
        lambda key, sep, args: f"{key}{sep}{' '.join(args)}",
        st.sampled_from(KEYWORDS),
        st.sampled_from([" ", "=", " = ", "\t"]),
        st.lists(word, max_size=4),
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
)


def _no_dns(name: str, port: int) -> str | None:
    return None


@given(st.lists(line, max_size=12), st.sampled_from(["web1", "a.b", "10.0.0.1", "ab*"]))
def test_any_ssh_config_is_refused_or_resolved(lines: list[str], name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            reader = SSHConfigReader(path, resolver=_no_dns)
        except InputError:
            return
        for user, port in ((None, None), ("root", 2222)):
            try:
                found = reader.lookup(name, user, port)
            except InputError:
                continue
            assert isinstance(found, HostConfig)
