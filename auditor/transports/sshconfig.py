"""The OpenSSH client config, resolved per host exactly as OpenSSH 9.x's `ssh -G` resolves it.

The SSH transport opens its own TCP connection (to tell a closed port from a hung SSH
server), so it needs HostName, Port, User, IdentityFile and the proxy settings before
asyncssh is involved; asyncssh's own config handling only sees the address that is already
resolved. This module is a reading of OpenSSH's `readconf.c` and `ssh.c`, not a general
parser: every rule below is one OpenSSH applies, and the test suite compares the result with
`ssh -G` itself.

What OpenSSH does, and so what this does:
- A whole file is parsed (every line, active or not), so a bad line stops the run before any
  host is tried; unknown keywords are errors unless `IgnoreUnknown` names them.
- Tokens are split as `argv_split` splits them: quotes, backslash escapes, and a `#` at the
  start of a token ends the line (`Port 2240 # note`, `Host a # words`).
- For each setting the first value obtained wins; `-l`/`-p`/`-J` (here: the inventory and the
  command line) come before any file.
- `Host` patterns are separated by spaces and matched case-sensitively against the name as
  given (`Host a,b` is one literal pattern); `Match host`/`originalhost` ignore case.
- `Include` reads a glob's files sorted, relative names under `~/.ssh/`; `Host`/`Match`
  inside an included file never leak into the including file.
- After the first pass, `HostName` (with `%h`) replaces the name, names (not addresses) are
  lowercased, and with `CanonicalizeHostname` the name is canonicalised; the config is then
  read a second time (`Match canonical`/`Match final`), matching the new name.
- `ProxyCommand` and `ProxyJump`: whichever is obtained first wins (`ProxyCommand none`
  before a `ProxyJump` means "connect directly"; `ProxyJump none` only stops later
  ProxyJumps). These are OpenSSH 10.3's rules, which Debian's 9.2 build carries, as do its
  checks of host and user names given on the command line (here: by the inventory).
- `IdentityFile` tokens (`%h %p %r %u %d %k %n %C %L %l %i %%`, `${VAR}`, `~`) are expanded
  with the final values, as `ssh` does when it loads the keys; duplicates are kept once;
  `IdentityFile none` means no key files at all.
- A ProxyJump to the host itself (same name, port and user) is a loop.

`Match exec` is refused: per host, it would run a local command with the host's name
expanded into it, and the auditor runs no local commands on a host's behalf.
"""

from __future__ import annotations

import functools
import getpass
import glob
import hashlib
import os
import pwd
import re
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from auditor.errors import InputError
from auditor.material import MaterialError, read_material

DEFAULT_PORT = 22
MAX_INCLUDE_DEPTH = 16
MAX_IDENTITY_FILES = 100


@dataclass(frozen=True)
class JumpSpec:
    """One ProxyJump hop: `[user@]host[:port]`."""

    user: str | None
    host: str
    port: int | None


@dataclass(frozen=True)
class HostConfig:
    """One host resolved as `ssh -G` resolves it (after both passes and the defaults).

    `user` is None when nothing names one (ssh then uses the local user); `identity_files`
    are expanded paths, and `default_identities` says the config named none, so the
    client's defaults apply (`IdentityFile none` names none *and* turns the defaults off).
    `proxy_jump` is the hop list as `ssh -G` prints it; `proxy_command` is set only when a
    ProxyCommand won. `error` says why `ssh` would refuse to connect to this host.
    """

    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_files: tuple[Path, ...] = ()
    default_identities: bool = True
    proxy_jump: str | None = None
    proxy_command: str | None = None
    error: str | None = None


NOTHING = HostConfig()


def default_config_path() -> Path | None:
    """`~/.ssh/config` when it exists and is readable, as OpenSSH reads it by default."""
    path = Path("~", ".ssh", "config").expanduser()
    return path if os.access(path, os.R_OK) else None


# Far beyond any real ssh config; the bound stops a device or a runaway file.
CONFIG_LIMIT = 16 << 20

# --- parsing ---------------------------------------------------------------------------------

# Every keyword OpenSSH 9.x's client accepts (readconf.c's table, plus the GSSAPI key-exchange
# and old keep-alive options of the Debian/Ubuntu builds); an unknown keyword is an error, as
# in ssh. Few of them change what the auditor does: HostName, Port, User, IdentityFile,
# HostKeyAlias, ProxyJump, ProxyCommand and the Canonicalize* family.
_KEYWORDS = frozenset(
    """
    protocol cipher fallbacktorsh globalknownhostsfile2 rhostsauthentication
    userknownhostsfile2 useroaming usersh useprivilegedport afstokenpassing
    kerberosauthentication kerberostgtpassing rsaauthentication rhostsrsaauthentication
    compressionlevel gssapiauthentication gssapidelegatecredentials gssapikeyexchange
    gssapiclientidentity gssapiserveridentity gssapirenewalforcesrekey gssapitrustdns
    gssapikexalgorithms protocolkeepalives setuptimeout useblacklistedkeys pkcs11provider
    smartcarddevice forwardagent forwardx11
    forwardx11trusted forwardx11timeout exitonforwardfailure xauthlocation gatewayports
    passwordauthentication kbdinteractiveauthentication kbdinteractivedevices
    challengeresponseauthentication skeyauthentication tisauthentication
    pubkeyauthentication dsaauthentication hostbasedauthentication identityfile identityfile2
    identitiesonly certificatefile addkeystoagent identityagent hostname hostkeyalias
    proxycommand port ciphers macs remoteforward localforward permitremoteopen user host match
    escapechar globalknownhostsfile userknownhostsfile connectionattempts batchmode
    checkhostip stricthostkeychecking compression tcpkeepalive keepalive
    numberofpasswordprompts syslogfacility loglevel logverbose dynamicforward
    preferredauthentications hostkeyalgorithms casignaturealgorithms bindaddress
    bindinterface clearallforwardings enablesshkeysign verifyhostkeydns
    nohostauthenticationforlocalhost rekeylimit connecttimeout addressfamily
    serveraliveinterval serveralivecountmax sendenv setenv controlpath controlmaster
    controlpersist hashknownhosts include tunnel tunneldevice localcommand
    permitlocalcommand remotecommand visualhostkey kexalgorithms ipqos requesttty sessiontype
    stdinnull forkafterauthentication proxyusefdpass canonicaldomains
    canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots
    canonicalizepermittedcnames streamlocalbindmask streamlocalbindunlink revokedhostkeys
    fingerprinthash updatehostkeys hostbasedacceptedalgorithms hostbasedkeytypes
    pubkeyacceptedalgorithms pubkeyacceptedkeytypes ignoreunknown proxyjump
    securitykeyprovider knownhostscommand requiredrsasize enableescapecommandline
    """.split()
)
_ALIASES = {"identityfile2": "identityfile"}
_SINGLE = frozenset(
    {
        "hostname",
        "hostkeyalias",
        "user",
        "port",
        "identityfile",
        "canonicalizehostname",
        "canonicalizemaxdots",
        "canonicalizefallbacklocal",
        "ignoreunknown",
    }
)
_FLAGS = {"yes": True, "true": True, "no": False, "false": False}


class Canonicalize(IntEnum):
    NO = 0
    YES = 1
    ALWAYS = 2


_CANONICALIZE = {
    "yes": Canonicalize.YES,
    "true": Canonicalize.YES,
    "no": Canonicalize.NO,
    "false": Canonicalize.NO,
    "always": Canonicalize.ALWAYS,
}
_WS = " \t\r\n"


@dataclass(frozen=True)
class _Line:
    """One directive: its keyword (lowercase), arguments and the raw rest of the line."""

    source: str
    number: int
    keyword: str
    args: tuple[str, ...]
    rest: str


@dataclass(frozen=True)
class _Include:
    source: str
    number: int
    files: tuple[tuple[_Line | _Include, ...], ...]


_Node = _Line | _Include


def _error(source: str, number: int, message: str) -> InputError:
    return InputError(f"bad ssh config: {message}", source, number)


def _argv_split(text: str, source: str, number: int) -> list[str]:
    """OpenSSH's `argv_split(s, terminate_on_comment=1)`."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        quote = ""
        arg: list[str] = []
        while i < n:
            ch = text[i]
            if (
                ch == "\\"
                and i + 1 < n
                and (text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " "))
            ):
                i += 1
                arg.append(text[i])
            elif not quote and ch in " \t":
                break
            elif not quote and ch in "\"'":
                quote = ch
            elif quote and ch == quote:
                quote = ""
            else:
                arg.append(ch)
            i += 1
        if quote:
            raise _error(source, number, "invalid quotes")
        out.append("".join(arg))
    return out


def _strdelim(text: str | None) -> tuple[str | None, str | None]:
    """OpenSSH's `strdelim`: the next token (split on whitespace, quotes or one `=`) and
    the rest; a token in quotes with no closing quote gives (None, None)."""
    if text is None:
        return None, None
    m = re.search(r'[ \t\r\n"=]', text)
    if m is None:
        return text, None
    pos = m.start()
    if text[pos] == '"':
        body = text[:pos] + text[pos + 1 :]
        close = body.find('"', pos)
        if close < 0:
            return None, None
        rest = body[close + 1 :].lstrip(_WS)
        return body[:close], rest
    token, rest = text[:pos], text[pos + 1 :]
    was_equals = text[pos] == "="
    rest = rest.lstrip(_WS)
    if not was_equals and rest.startswith("="):
        rest = rest[1:].lstrip(_WS)
    return token, rest


def _split_keyword(raw: str) -> tuple[str, str] | None:
    """The keyword and the rest of a line, or None for a blank or comment line."""
    text = raw.rstrip(_WS + "\f")
    if not text:
        return None
    keyword, rest = _strdelim(text)
    if keyword == "":
        keyword, rest = _strdelim(rest)
    if not keyword or keyword.startswith("#"):
        return None
    return keyword.lower(), (rest or "").lstrip(_WS)


def _a2port(text: str) -> int:
    """OpenSSH's `a2port`: 0-65535 or a service name; -1 when neither."""
    if text.isdigit():
        value = int(text)
        return value if value <= 65535 else -1
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        return -1


def _valid_domain(name: str) -> bool:
    if not name or name.startswith(".") or name.endswith(".") or ".." in name:
        return False
    return all(ch.isalnum() or ch in "-._" for ch in name)


def parse_jump_text(text: str, *, strict: bool = False) -> tuple[JumpSpec, str | None] | None:
    """OpenSSH's `parse_jump`: the last hop of `[user@]host[:port][,...]` (the one ssh
    connects through last) and the hops before it, or None when any hop is malformed (with
    `strict`, as for the command line, also a host or user name ssh refuses there). `none`
    is not a hop (callers handle it)."""
    body = text.split("#", 1)[0].rstrip(_WS)
    hops = [parse_hop(hop, strict=strict) for hop in body.split(",")]
    last = hops[-1]
    if last is None or any(hop is None for hop in hops):
        return None
    extra = body[: body.rfind(",")] if "," in body else None
    return last, extra


def parse_hop(text: str, *, strict: bool = False) -> JumpSpec | None:
    """One `[user@]host[:port]` or `ssh://[user@]host[:port]`; None when malformed."""
    hop = _parse_hop(text)
    if hop is not None and strict:
        if not valid_hostname(hop.host) or (hop.user is not None and not valid_ruser(hop.user)):
            return None
    return hop


def _parse_hop(text: str) -> JumpSpec | None:
    if text.startswith("ssh://"):
        return _parse_ssh_uri(text[len("ssh://") :])
    user: str | None = None
    rest = text
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not user:
            return None
    host, port_text = _hpdelim(rest)
    if host is None or host == "":
        return None
    port: int | None = None
    if port_text:
        port = _a2port(port_text)
        if port <= 0:
            return None
    return JumpSpec(user, host, port)


def _hpdelim(text: str) -> tuple[str | None, str | None]:
    """OpenSSH's `hpdelim` + `cleanhostname`: host and port of `host:port` / `[v6]:port`."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, None
        after = text[end + 1 :]
        if after and after[0] != ":":
            return None, None
        return text[1:end], after[1:] if after else None
    for i, ch in enumerate(text):
        if ch == ":":
            return text[:i], text[i + 1 :]
        if ch == "/":
            return None, None
    return text, None


def _parse_ssh_uri(text: str) -> JumpSpec | None:
    user: str | None = None
    if "@" in text:
        user, _, text = text.partition("@")
        user = user.split(";", 1)[0]
        if not user:
            return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, after = text[1:end], text[end + 1 :]
    else:
        cut = re.search(r"[:/]", text)
        host, after = (text[: cut.start()], text[cut.start() :]) if cut else (text, "")
    if not host:
        return None
    port: int | None = None
    if after.startswith(":"):
        port_text = after[1:].split("/", 1)[0]
        port = _a2port(port_text) if port_text else -1
        if port <= 0:
            return None
        after = after[1 + len(port_text) :]
    if after.strip("/"):
        return None  # a path is not allowed in a jump host
    return JumpSpec(user, host, port)


class _Parser:
    def __init__(self) -> None:
        self.ignore_unknown: list[str] = []

    def read(self, path: Path, depth: int, check_perm: bool) -> tuple[_Node, ...]:
        if depth > MAX_INCLUDE_DEPTH:
            raise InputError("bad ssh config: too many recursive Include levels", str(path))
        source = str(path)
        try:
            # A regular file of bounded size, checked on the open descriptor: a FIFO or a
            # device named by --ssh-config or an Include must not hang or flood the run.
            material = read_material(path, CONFIG_LIMIT)
        except MaterialError as exc:
            raise InputError(f"cannot read the ssh config file: {exc.reason}", source) from None
        if check_perm:
            _check_perm(material.uid, material.mode, source)
        data = material.data
        text = data.decode("utf-8", errors="surrogateescape")
        nodes: list[_Node] = []
        for number, raw in enumerate(text.split("\n"), start=1):
            node = self._line(raw, source, number, depth)
            if node is not None:
                nodes.append(node)
        return tuple(nodes)

    def _line(self, raw: str, source: str, number: int, depth: int) -> _Node | None:
        split = _split_keyword(raw)
        if split is None:
            return None
        keyword, rest = split
        if not rest:
            raise _error(source, number, f'no argument after keyword "{keyword}"')
        keyword = _ALIASES.get(keyword, keyword)
        args = tuple(_argv_split(rest, source, number))
        if keyword not in _KEYWORDS:
            if any(_match_pattern_list(keyword, p, lower=True) for p in self.ignore_unknown):
                return None
            raise _error(source, number, f"Bad configuration option: {keyword}")
        line = _Line(source, number, keyword, args, rest)
        self._validate(line)
        if keyword == "ignoreunknown":
            self.ignore_unknown.append(args[0])
        if keyword == "include":
            return self._include(line, depth)
        return line

    def _validate(self, line: _Line) -> None:
        kw, args = line.keyword, line.args

        def fail(message: str) -> InputError:
            return _error(line.source, line.number, message)

        if kw in _SINGLE or kw in ("canonicaldomains", "canonicalizepermittedcnames"):
            if not args or args[0] == "":
                raise fail(f"{kw}: missing argument")
        if kw in _SINGLE and len(args) > 1:
            raise fail(f"keyword {kw} extra arguments at end of line")
        if kw == "port" and _a2port(args[0]) <= 0:
            raise fail(f"Bad port '{args[0]}'")
        if kw == "canonicalizehostname" and args[0].lower() not in _CANONICALIZE:
            raise fail(f'unsupported option "{args[0]}"')
        if kw == "canonicalizefallbacklocal" and args[0].lower() not in _FLAGS:
            raise fail(f'unsupported option "{args[0]}"')
        if kw == "canonicalizemaxdots" and not args[0].isdigit():
            raise fail(f"invalid CanonicalizeMaxDots {args[0]!r}")
        if kw == "canonicaldomains":
            for i, arg in enumerate(args):
                if arg.lower() == "none" and (i > 0 or len(args) > 1):
                    raise fail('keyword canonicaldomains "none" argument must appear alone')
                if arg.lower() != "none" and not _valid_domain(arg):
                    raise fail(f"invalid CanonicalDomains entry {arg!r}")
        if kw == "canonicalizepermittedcnames":
            for i, arg in enumerate(args):
                if arg.lower() == "none":
                    if i > 0 or len(args) > 1:
                        raise fail('"none" argument must appear alone')
                elif arg != "*" and (":" not in arg or arg.endswith(":")):
                    raise fail(f'Invalid permitted CNAME "{arg}"')
        if kw == "proxyjump":
            value = line.rest.lstrip(_WS + "=")
            if value.lower() != "none" and parse_jump_text(value) is None:
                raise fail(f'Invalid ProxyJump "{value}"')
        if kw == "match":
            _check_match(line)
        if kw in ("host", "include") and any(a == "" for a in args):
            raise fail(f"keyword {kw} empty argument")

    def _include(self, line: _Line, depth: int) -> _Include:
        files: list[tuple[_Node, ...]] = []
        for arg in line.args:
            if not arg:
                raise _error(line.source, line.number, "keyword include empty argument")
            pattern = arg if arg.startswith(("/", "~")) else f"~/.ssh/{arg}"
            # ssh leaves `~` to glob(3)'s GLOB_TILDE, which (like expanduser) prefers $HOME.
            pattern = os.path.expanduser(pattern)
            # glob(3) returns its matches sorted (byte order in the C collation ssh uses).
            for name in sorted(glob.glob(pattern)):
                path = Path(name)
                if path.is_dir():
                    continue  # ssh reads a directory as an empty file
                files.append(self.read(path, depth + 1, check_perm=True))
        return _Include(line.source, line.number, tuple(files))


def _check_perm(uid: int, mode: int, source: str) -> None:
    if (uid not in (0, os.getuid())) or mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InputError("bad ssh config: bad owner or permissions (writable by others)", source)


_MATCH_NO_ARG = ("all", "canonical", "final")
_MATCH_ARG = ("host", "originalhost", "user", "localuser", "exec")


def _match_tokens(rest: str) -> Iterator[str]:
    text: str | None = rest
    while True:
        token, text = _strdelim(text)
        if token is None or token == "":
            return
        yield token


def _check_match(line: _Line) -> None:
    tokens = list(_match_tokens(line.rest))

    def fail(message: str) -> InputError:
        return _error(line.source, line.number, message)

    i = 0
    attributes = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("#"):
            break
        name = token[1:].lower() if token.startswith("!") else token.lower()
        if name == "all":
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if attributes > 1 or (following is not None and not following.startswith("#")):
                raise fail(f"'{token}' cannot be combined with other Match attributes")
            return
        attributes += 1
        if name in ("canonical", "final"):
            i += 1
            continue
        if name not in _MATCH_ARG:
            raise fail(f"Unsupported Match attribute {name}")
        if name == "exec":
            raise fail("Match exec is not supported (the auditor runs no local commands)")
        if i + 1 >= len(tokens) or tokens[i + 1].startswith("#"):
            raise fail(f"Missing Match criteria for {name}")
        i += 2
    if attributes == 0:
        raise fail("One or more attributes required for Match")


# --- matching ----------------------------------------------------------------------------------


def _match_pattern(text: str, pattern: str) -> bool:
    """OpenSSH's `match_pattern`: `*` and `?` wildcards, case-sensitive."""
    if "*" not in pattern and "?" not in pattern:
        return text == pattern
    return _pattern_regex(pattern).fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # Compiled once per pattern: a config is matched against every host of a fleet.
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(regex, re.DOTALL)


def _match_pattern_list(text: str, patterns: str, *, lower: bool) -> bool:
    """OpenSSH's `match_pattern_list` == 1: comma-separated, `!` negates."""
    positive = False
    for sub in patterns.split(","):
        negated = sub.startswith("!")
        if negated:
            sub = sub[1:]
        if lower:
            sub = sub.lower()
        if _match_pattern(text, sub):
            if negated:
                return False
            positive = True
    return positive


# --- resolving ---------------------------------------------------------------------------------


@dataclass
class _Options:
    """The options being collected for one look-up (OpenSSH's `Options`, the parts used)."""

    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_files: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    jump: JumpSpec | None = None
    jump_none: bool = False
    jump_extra: str | None = None
    host_key_alias: str | None = None
    canonicalize: Canonicalize | None = None
    canonical_domains: list[str] | None = None
    max_dots: int | None = None
    fallback_local: bool | None = None
    permitted_cnames: list[tuple[str, str]] | None = None
    want_final: bool = False

    def jump_set(self) -> bool:
        return self.jump is not None or self.jump_none

    def set_jump(self, value: str, *, strict: bool = False) -> None:
        """`parse_jump` for an active line (OpenSSH 10.3's rules, which Debian's 9.2 has):
        `none` only blocks a later ProxyJump; a hop list is taken only when no ProxyCommand
        or ProxyJump came first, and then stands for `ProxyCommand none` too. `strict` (the
        command line) also refuses host and user names with shell metacharacters."""
        if value.lower() == "none":
            if not self.jump_set():
                self.jump_none = True
            return
        parsed = parse_jump_text(value, strict=strict)
        if parsed is None:
            raise ValueError(f"invalid ProxyJump {value!r}")
        if self.proxy_command is not None or self.jump_set():
            return
        self.jump, self.jump_extra = parsed
        self.proxy_command = "none"


Resolver = Callable[[str, int], str | None]
"""Looks a fully-qualified name up (`getaddrinfo` with AI_CANONNAME): its canonical name,
"" when it resolves without one, None when it does not resolve."""


def system_resolver(name: str, port: int) -> str | None:
    """`getaddrinfo`, as `ssh` uses it for CanonicalizeHostname."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_CANONNAME)
    except (OSError, UnicodeError):
        return None
    return infos[0][3] if infos else None


@dataclass(frozen=True)
class _Identity:
    """Who runs the auditor: what `%u`, `%d`, `%i`, `%l`, `%L` and `~` expand to."""

    user: str
    home: Path
    uid: int
    thishost: str


def _identity() -> _Identity:
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        user, home = entry.pw_name, Path(entry.pw_dir)
    except KeyError:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "root"
        home = Path.home()
    return _Identity(user, home, uid, socket.gethostname())


class SSHConfigReader:
    """Resolves hosts through one config file (or none), once per distinct look-up."""

    def __init__(
        self,
        path: Path | None,
        *,
        resolver: Resolver = system_resolver,
        check_permissions: bool = False,
    ) -> None:
        self.path = path
        self._resolver = resolver
        self._me = _identity()
        self._cache: dict[tuple[str, str | None, int | None, str | None], HostConfig] = {}
        self._nodes: tuple[_Node, ...] = ()
        if path is not None:
            if not os.access(path, os.R_OK):
                raise InputError("cannot read the ssh config file", str(path))
            # Like ssh, refuse a default ~/.ssh/config that others could have written (a
            # file named with -F, here --ssh-config, is the user's explicit choice).
            check_permissions = check_permissions or path == default_config_path()
            self._nodes = _Parser().read(path, 0, check_permissions)

    def lookup(
        self,
        name: str,
        user: str | None = None,
        port: int | None = None,
        jump: str | None = None,
    ) -> HostConfig:
        """`ssh -G [-l user] [-p port] [-J jump] name`: `user`, `port` and `jump` are the
        ones already chosen (by the inventory or the command line), None when not chosen."""
        key = (name, user, port, jump)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(name, user, port, jump)
        return found

    # -- the two passes (ssh.c's main) ----------------------------------------------------------

    def _resolve(
        self, name: str, user: str | None, port: int | None, jump: str | None
    ) -> HostConfig:
        if not valid_hostname(name):
            return HostConfig(error=f"host name {name!r} contains invalid characters")
        if user is not None and not valid_ruser(user):
            return HostConfig(error=f"remote user name {user!r} contains invalid characters")
        try:
            return self._two_passes(name, user, port, jump)
        except ValueError as exc:
            return HostConfig(error=str(exc))

    def _two_passes(
        self, name: str, user: str | None, port: int | None, jump: str | None
    ) -> HostConfig:
        opts = _Options(user=user, port=port)
        if jump is not None:
            opts.set_jump(jump, strict=True)
        host_arg = name
        self._pass(opts, host=name, original=host_arg, final=False)
        if opts.canonicalize is None:
            opts.canonicalize = Canonicalize.NO
        host = name
        if opts.hostname is not None:
            host = _percent_expand(opts.hostname, {"h": name}, what="HostName")
            opts.hostname = host
        was_addr = _is_addr(host)
        if not was_addr:
            host = host.lower()
        error: str | None = None
        if opts.canonicalize is not Canonicalize.NO or was_addr:
            host, error = self._canonicalize(host, opts)
        if error is None and opts.permitted_cnames:
            host, error = self._follow_cname(host, opts)
        if error is not None:
            return HostConfig(error=error)
        if opts.canonicalize is not Canonicalize.NO:
            opts.want_final = True
        if opts.want_final:
            opts.hostname = host
            self._pass(opts, host=host, original=host_arg, final=True)
        return self._finish(opts, host, host_arg)

    def _finish(self, opts: _Options, host: str, host_arg: str) -> HostConfig:
        final_port = opts.port if opts.port is not None else DEFAULT_PORT
        final_user = opts.user if opts.user is not None else self._me.user
        command = opts.proxy_command
        if command is not None and command.lower() == "none":
            command = None
        jump = opts.jump
        if jump is not None:
            jump_port = jump.port if jump.port is not None else DEFAULT_PORT
            jump_user = jump.user if jump.user is not None else final_user
            if jump.host == host and jump_port == final_port and jump_user == final_user:
                return HostConfig(error=f"ProxyJump loop: {jump.host} jumps through itself")
        files = self._identity_files(opts, host, host_arg, final_port, final_user)
        return HostConfig(
            hostname=host,
            port=final_port,
            user=opts.user,
            identity_files=files,
            default_identities=not opts.identity_files,
            proxy_jump=_jump_text(opts) if jump is not None else None,
            proxy_command=command,
        )

    def _identity_files(
        self, opts: _Options, host: str, host_arg: str, port: int, user: str
    ) -> tuple[Path, ...]:
        me = self._me
        tokens = {
            "C": hashlib.sha1(  # noqa: S324 - the hash OpenSSH defines for %C
                f"{me.thishost}{host}{port}{user}".encode()
            ).hexdigest(),
            "L": me.thishost.split(".", 1)[0],
            "i": str(me.uid),
            "k": opts.host_key_alias or host_arg,
            "l": me.thishost,
            "n": host_arg,
            "p": str(port),
            "d": str(me.home),
            "h": host,
            "r": user,
            "u": me.user,
        }
        files: list[Path] = []
        for raw in opts.identity_files:
            if raw.lower() == "none":
                continue
            expanded = _percent_expand(
                _tilde(raw, me.home), tokens, dollar=True, what="IdentityFile"
            )
            files.append(Path(expanded))
        return tuple(files)

    def _canonicalize(self, host: str, opts: _Options) -> tuple[str, str | None]:
        """ssh.c's `resolve_canonicalize`: (the name, an error when ssh would give up)."""
        address = _canonical_address(host)
        if address is not None:
            return address, None
        if _is_addr_fast(host) or opts.canonicalize is Canonicalize.NO:
            return host, None
        direct = opts.proxy_command in (None, "none") and opts.jump is None
        if not direct and opts.canonicalize is not Canonicalize.ALWAYS:
            return host, None
        port = opts.port if opts.port is not None else DEFAULT_PORT
        if host.endswith("."):
            if self._resolver(host, port) is not None:
                return host[:-1], None
        elif host.count(".") <= (opts.max_dots if opts.max_dots is not None else 1):
            for domain in opts.canonical_domains or ():
                if domain.lower() == "none":
                    break
                cname = self._resolver(f"{host}.{domain}.", port)
                if cname is not None:
                    full = f"{host}.{domain}"
                    return self._permitted(full, cname, opts, direct), None
        else:
            return host, None
        if opts.fallback_local is False:
            return host, f"could not resolve host {host!r} in any CanonicalDomains"
        return host, None

    def _follow_cname(self, host: str, opts: _Options) -> tuple[str, str | None]:
        """CanonicalizePermittedCNAMEs when canonicalisation did not apply: ssh resolves the
        name as given and follows a permitted CNAME; a direct name that does not resolve
        stops ssh."""
        direct = opts.proxy_command in (None, "none") and opts.jump is None
        if not direct and opts.canonicalize is not Canonicalize.ALWAYS:
            return host, None
        if _canonical_address(host) is not None:
            return host, None
        cname = self._resolver(host, opts.port if opts.port is not None else DEFAULT_PORT)
        if cname is None:
            return host, (f"could not resolve hostname {host!r}" if direct else None)
        return self._permitted(host, cname, opts, direct), None

    @staticmethod
    def _permitted(name: str, cname: str, opts: _Options, direct: bool) -> str:
        if not cname or name == cname or opts.canonicalize is Canonicalize.NO:
            return name
        if not direct and opts.canonicalize is not Canonicalize.ALWAYS:
            return name
        for source, target in opts.permitted_cnames or ():
            if _match_pattern_list(name, source, lower=True) and _match_pattern_list(
                cname, target, lower=True
            ):
                return cname
        return name

    # -- one pass over the files (readconf.c) ---------------------------------------------------

    def _pass(self, opts: _Options, *, host: str, original: str, final: bool) -> None:
        active = [True]
        self._apply(self._nodes, opts, active, host, original, final, never=False)

    def _apply(
        self,
        nodes: Sequence[_Node],
        opts: _Options,
        active: list[bool],
        host: str,
        original: str,
        final: bool,
        never: bool,
    ) -> None:
        for node in nodes:
            if isinstance(node, _Include):
                outer = active[0]
                for content in node.files:
                    self._apply(content, opts, active, host, original, final, never or not outer)
                    active[0] = outer
                continue
            kw, args = node.keyword, node.args
            if kw == "host":
                active[0] = False if never else _host_matches(host, args)
                continue
            if kw == "match":
                matched = self._match(node, opts, host, original, final)
                active[0] = False if never else matched
                continue
            if not active[0]:
                continue
            self._set(node, opts)

    def _set(self, node: _Line, opts: _Options) -> None:
        kw, args = node.keyword, node.args
        if kw == "hostname" and opts.hostname is None:
            opts.hostname = args[0]
        elif kw == "port" and opts.port is None:
            opts.port = _a2port(args[0])
        elif kw == "user" and opts.user is None:
            opts.user = args[0]
        elif kw == "hostkeyalias" and opts.host_key_alias is None:
            opts.host_key_alias = args[0]
        elif kw == "identityfile":
            if args[0] not in opts.identity_files:
                if len(opts.identity_files) >= MAX_IDENTITY_FILES:
                    raise ValueError(f"{node.source} line {node.number}: too many IdentityFiles")
                opts.identity_files.append(args[0])
        elif kw == "proxycommand":
            if opts.proxy_command is None:
                opts.proxy_command = node.rest.lstrip(_WS + "=")
        elif kw == "proxyjump":
            opts.set_jump(node.rest.lstrip(_WS + "="))
        elif kw == "canonicalizehostname" and opts.canonicalize is None:
            opts.canonicalize = _CANONICALIZE[args[0].lower()]
        elif kw == "canonicaldomains" and opts.canonical_domains is None:
            opts.canonical_domains = list(args)
        elif kw == "canonicalizemaxdots" and opts.max_dots is None:
            opts.max_dots = int(args[0])
        elif kw == "canonicalizefallbacklocal" and opts.fallback_local is None:
            opts.fallback_local = _FLAGS[args[0].lower()]
        elif kw == "canonicalizepermittedcnames" and opts.permitted_cnames is None:
            rules = []
            for arg in args:
                if arg.lower() == "none":
                    break
                if arg == "*":
                    rules.append(("*", "*"))
                else:
                    source, _, target = arg.lower().partition(":")
                    rules.append((source, target))
            opts.permitted_cnames = rules

    def _match(
        self, node: _Line, opts: _Options, host_arg: str, original: str, final: bool
    ) -> bool:
        """readconf.c's `match_cfg_line` (validated already; `exec` was refused)."""
        if final:
            host = opts.hostname or host_arg
        elif opts.hostname is not None:
            host = _percent_expand(opts.hostname, {"h": host_arg}, what="HostName")
        else:
            host = host_arg
        ruser = opts.user if opts.user is not None else self._me.user
        tokens = list(_match_tokens(node.rest))
        result = True
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.startswith("#"):
                break
            negate = token.startswith("!")
            name = (token[1:] if negate else token).lower()
            if name == "all":
                return result and not negate
            if name in ("canonical", "final"):
                if name == "final" and not final:
                    opts.want_final = True
                if final == negate:
                    result = False
                i += 1
                continue
            arg = tokens[i + 1]
            i += 2
            if name == "host":
                hit = _match_pattern_list(host.lower(), arg, lower=True)
            elif name == "originalhost":
                hit = _match_pattern_list(original.lower(), arg, lower=True)
            elif name == "user":
                hit = _match_pattern_list(ruser, arg, lower=False)
            else:  # localuser
                hit = _match_pattern_list(self._me.user, arg, lower=False)
            if hit == negate:
                result = False
        return result


def _host_matches(host: str, patterns: Sequence[str]) -> bool:
    active = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _match_pattern(host, pattern[1:] if negated else pattern):
            if negated:
                return False
            active = True
    return active


def _jump_text(opts: _Options) -> str:
    """The ProxyJump as `ssh -G` prints it."""
    jump = opts.jump
    assert jump is not None
    numeric = ":" in jump.host or all(ch in "0123456789." for ch in jump.host)
    host = f"[{jump.host}]" if numeric else jump.host
    text = f"{jump.user}@{host}" if jump.user else host
    if jump.port is not None and jump.port > 0:
        text = f"{text}:{jump.port}"
    return f"{opts.jump_extra},{text}" if opts.jump_extra else text


_TOKEN = re.compile(r"%(.)|\$\{([^}]*)\}|%$", re.DOTALL)


def _percent_expand(text: str, tokens: dict[str, str], *, what: str, dollar: bool = False) -> str:
    """OpenSSH's `percent_expand` (and `${VAR}` with `dollar`): an unknown token, a lone
    `%` at the end or an unset variable is an error (ValueError naming `what`), as in ssh."""
    try:
        return _expand(text, tokens, dollar)
    except ValueError as exc:
        raise ValueError(f"{what} {text!r}: {exc}") from None


def _expand(text: str, tokens: dict[str, str], dollar: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if dollar and text.startswith("${", i):
            end = text.find("}", i + 2)
            if end < 0:
                raise ValueError("an environment variable is missing its closing '}'")
            var = text[i + 2 : end]
            if not var:
                raise ValueError("empty environment variable name")
            value = os.environ.get(var)
            if value is None:
                raise ValueError(f"environment variable {var} is not set")
            out.append(value)
            i = end + 1
            continue
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("a lone % at the end")
        key = text[i + 1]
        if key == "%":
            out.append("%")
        elif key in tokens:
            out.append(tokens[key])
        else:
            raise ValueError(f"unknown token %{key}")
        i += 2
    return "".join(out)


def _tilde(path: str, home: Path) -> str:
    """OpenSSH's `tilde_expand`: `~` and `~/x` are the user's home, `~name/x` another's."""
    if not path.startswith("~"):
        return path
    rest = path[1:]
    if rest == "" or rest.startswith("/"):
        base = str(home)
        tail = rest.lstrip("/")
    else:
        name, _, tail = rest.partition("/")
        try:
            base = pwd.getpwnam(name).pw_dir
        except KeyError:
            raise ValueError(f"no such user {name!r} in {path!r}") from None
        tail = tail.lstrip("/")
    return f"{base.rstrip('/')}/{tail}"


def valid_hostname(name: str) -> bool:
    """ssh refuses a host name on its command line that starts with `-` or holds shell
    metacharacters, whitespace or control characters (OpenSSH 9.6+; Debian's 9.2 too)."""
    if not name or name.startswith("-"):
        return False
    return not any(ch in "'`\"$\\;&<>|(){}," or ch.isspace() or ord(ch) < 32 for ch in name)


def valid_ruser(user: str) -> bool:
    """The same for a user name given on ssh's command line."""
    if user.startswith("-"):
        return False
    for i, ch in enumerate(user):
        if ord(ch) < 32 or ch in "'`\";&<>|(){}":
            return False
        if ch.isspace() and user[i + 1 : i + 2] == "-":
            return False
    return not user.endswith("\\")


def _is_addr_fast(name: str) -> bool:
    return "%" in name or ":" in name or all(ch in "0123456789." for ch in name)


def _is_addr(name: str) -> bool:
    return _is_addr_fast(name) or _numeric(name) is not None


def _numeric(name: str) -> list[tuple[object, ...]] | None:
    try:
        infos = socket.getaddrinfo(
            name,
            DEFAULT_PORT,
            type=socket.SOCK_STREAM,
            flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except (OSError, UnicodeError):
        return None
    return list(infos)


def _canonical_address(name: str) -> str | None:
    """ssh.c's `resolve_addr`: the canonical text of a single numeric address."""
    infos = _numeric(name)
    if not infos or len(infos) != 1:
        return None
    sockaddr = infos[0][4]
    try:
        text, _ = socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)  # type: ignore[arg-type]
    except OSError:
        return None
    return text


def local_user() -> str:
    """The local user name, which ssh uses when nothing names a remote user."""
    return _identity().user
