# shellcheck shell=sh
# The Linux/Unix probe: POSIX sh, sent on stdin to `/bin/sh -s`, never written to disk.
#
# The auditor appends a call `auditor_main <<'AUDITOR_END_<nonce>'` followed by data lines
# (settings and validated URLs). Data only ever arrives through that quoted here-document,
# so nothing user-supplied is parsed as shell. Every record printed starts with
# "AUD1 <nonce>" and is one line of tab-separated fields, written in one write.
#
# Each process the probe starts costs the host a fork and an exec, and the probe runs on every
# host of a fleet: text is handled with the shell's own expansions wherever POSIX allows, and
# a curl that can (7.75 and later) fetches every URL in one process (--parallel), each URL
# still its own transfer on its own connection, reported on its own line. Older curls, and a
# URL that line is missing for, take one curl process per URL.
#
# Records:  H hostname os tool tool_version   (host facts)
#           P name value                      (a proxy setting of the host: env variable or agent)
#           T idx tool exit http connect_code remote_ip t_dns t_connect t_tls t_total proxy issuer error
#           U reason                          (no usable HTTP client: probe unavailable)
#           D count                           (done; its absence means the output was cut)
# The issuer field is hex of the bytes the tool named (a certificate may hold any byte); the
# parser decodes it and shows control characters escaped. P records carry the proxy settings
# as they are, credentials included: the parser takes the secrets from them, removes every
# form of them from everything this host sent, and reports the settings masked.
#
# Child tools never see a secret or the record marker in their argv: a proxy reaches them
# only through their environment, which other local users cannot read.

# A variable the host's environment already exported stays exported when assigned, and so
# would reach every child tool (the marker among them): forget them all first; a plain
# assignment afterwards is never exported.
unset AUDITOR_NONCE AUDITOR_CT AUDITOR_MT AUDITOR_AGENT_PROXY AUDITOR_TAB AUDITOR_SEP \
    AUDITOR_NL AUDITOR_Q400 AUDITOR_TOOL AUDITOR_PY AUDITOR_CERTS AUDITOR_PARALLEL \
    _line _f _rest _o _last _file _p _env_proxy _idx _url _out _rc _w _err _issuer \
    _old_ifs _t0 _status _elapsed _shown_proxy _host _os _l _ver _v _maj _min _count \
    _targets _watchdog _running _n _oldest _entry _name _value _installed _q _h \
    _first_out _first_rc _left AUDITOR_AGENT_REST AUDITOR_TRUST_AGENT AUDITOR_AGENT_FILES \
    AUDITOR_AGENT_CA AUDITOR_CONF_MAX _m1 _r1 _o1 _m2 _r2 _o2 _svc_how _svc_state _confs _ca _path \
    AUDITOR_ONE_PROCESS AUDITOR_WPAR AUDITOR_CURL_VER AUDITOR_Q4000 _c _x _k _u \
    _list _todo _next _chunk _slow _fields _prefix _entries _er _eh _br _be _bo _bl _bi _bn _ar \
    _ae _ai _pr _pe _nrun _tries _running _round

AUDITOR_NONCE=""
AUDITOR_CT=5
AUDITOR_MT=10
AUDITOR_AGENT_PROXY=0
# At most this many transfers at once on one host: a long target list must not start a
# process per URL at the same moment (the PowerShell probe caps its runspaces at 10).
AUDITOR_PARALLEL=8
# 1: every URL in one curl process where curl can (the "per_url 1" data line turns it off).
AUDITOR_ONE_PROCESS=1
# The transfers of one curl process (at most AUDITOR_PARALLEL) all start at once: none of
# them can then reuse another's connection, so each URL is measured on a connection of its
# own, and never more than AUDITOR_PARALLEL run at once.
AUDITOR_CERTS=0
AUDITOR_CURL_VER=""
# 1: the agent's proxy CA bundle is trusted besides the system's (probing the agent's path).
AUDITOR_TRUST_AGENT=0
AUDITOR_AGENT_REST=""
# A literal tab and line feed: no process is started to make them.
AUDITOR_TAB='	'
AUDITOR_NL='
'
# 400 '?': a pattern that matches a field's first 400 characters.
AUDITOR_Q400='????????????????????????????????????????'
AUDITOR_Q400=$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400
AUDITOR_Q400=$AUDITOR_Q400$AUDITOR_Q400
AUDITOR_Q4000=$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400
AUDITOR_Q4000=$AUDITOR_Q4000$AUDITOR_Q4000

auditor_emit() {
    # $1 = kind, rest = fields. Each field is cut to 400 characters, its tabs and line breaks
    # become spaces and its other control characters are dropped; the record is cut to 4000
    # characters and leaves in one write (printf is a builtin: no process is started), which
    # the records of the per-URL fallback's parallel curls cannot interleave with.
    _line="AUD1 $AUDITOR_NONCE$AUDITOR_TAB$1"
    shift
    for _f in "$@"; do
        if [ ${#_f} -gt 400 ]; then
            # shellcheck disable=SC2295 # the 400 '?' are meant as a pattern
            _er=${_f#$AUDITOR_Q400}
            _f=${_f%"$_er"}
        fi
        while :; do
            case "$_f" in
                *[[:cntrl:]]*) ;;
                *) break ;;
            esac
            _eh=${_f%%[[:cntrl:]]*}
            _er=${_f#*[[:cntrl:]]}
            _c=${_f#"$_eh"}
            _c=${_c%"$_er"}
            case "$_c" in
                "$AUDITOR_TAB" | "$AUDITOR_NL") _f="$_eh $_er" ;;
                *) _f=$_eh$_er ;;
            esac
        done
        _line="$_line$AUDITOR_TAB$_f"
    done
    if [ ${#_line} -gt 4000 ]; then
        # shellcheck disable=SC2295 # the 4000 '?' are meant as a pattern
        _er=${_line#$AUDITOR_Q4000}
        _line=${_line%"$_er"}
    fi
    printf '%s\n' "$_line"
}

# Sets _last to the rest of the last line of $1 that starts with $2 (empty if none).
auditor_last_line() {
    _o=$AUDITOR_NL$1
    case "$_o" in
        *"$AUDITOR_NL$2"*)
            _last=${_o##*"$AUDITOR_NL$2"}
            _last=${_last%%"$AUDITOR_NL"*}
            ;;
        *) _last="" ;;
    esac
}

# --- The Qualys Cloud Agent on this host ------------------------------------------------------
# The probe sends what it reads raw and bounded (A and C records); the auditor parses it as
# data. The shell reads the agent's proxy setting only to probe the way the agent goes, and
# takes it as text: the file is never sourced.
AUDITOR_AGENT_FILES="/etc/sysconfig/qualys-cloud-agent /etc/default/qualys-cloud-agent"
AUDITOR_AGENT_CA=/etc/qualys/cloud-agent/cert/ca-bundle.crt
# Bytes of a configuration file read and sent; one more is read to tell the auditor it was cut.
AUDITOR_CONF_MAX=16384

# Is the package installed, and which version (dpkg-query or rpm, whichever the host has; a
# Debian host with rpm installed asks both): each database's name, exit status and answer in
# _m1 _r1 _o1 (and _m2 _r2 _o2). Sets _installed to 1 when a database says so.
auditor_agent_package() {
    _installed=0
    _m1=none
    _r1=""
    _o1=""
    _m2=""
    _r2=""
    _o2=""
    if command -v dpkg-query >/dev/null 2>&1; then
        _m1=dpkg
        # dpkg keeps a file list for every package it has unpacked (plain, or with its
        # architecture for a multi-arch one): without one, dpkg-query (which reads the whole
        # status database, the costliest step of the probe) could only answer "no packages
        # found" (exit 1), so that is the answer, without starting it.
        set -- /var/lib/dpkg/info/qualys-cloud-agent.list /var/lib/dpkg/info/qualys-cloud-agent:*.list
        if [ -d /var/lib/dpkg/info ] && [ ! -e "$1" ] && [ ! -e "$2" ] && [ -z "${DPKG_ADMINDIR:-}" ]; then
            _r1=1
        else
            # shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not the shell's
            _o1=$(LC_ALL=C dpkg-query -W -f '${Status}|${Version}' qualys-cloud-agent 2>/dev/null)
            _r1=$?
            case "$_r1:$_o1" in 0:*" installed|"*) _installed=1 ;; esac
        fi
    fi
    if [ "$_installed" = 0 ] && command -v rpm >/dev/null 2>&1; then
        _m2=rpm
        _o2=$(LC_ALL=C rpm -q --qf '%{VERSION}-%{RELEASE}' qualys-cloud-agent 2>/dev/null)
        _r2=$?
        [ "$_r2" != 0 ] || _installed=1
        if [ "$_m1" = none ]; then
            _m1=$_m2 _r1=$_r2 _o1=$_o2 _m2="" _r2="" _o2=""
        fi
    fi
}

# Is the agent's daemon running: systemd's word where systemd runs, else a process whose
# name is the daemon's (/proc/PID/comm holds at most 15 characters). In _svc_how _svc_state.
auditor_agent_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        _svc_how=systemd
        _svc_state=$(systemctl is-active qualys-cloud-agent 2>/dev/null)
        return 0
    fi
    _svc_how=proc
    _svc_state=0
    for _f in /proc/[0-9]*/comm; do
        IFS= read -r _l <"$_f" 2>/dev/null || continue
        case "$_l" in qualys-cloud-ag*)
            _svc_state=1
            break
            ;;
        esac
    done
}

# The agent's configuration file $1, at most AUDITOR_CONF_MAX bytes (+1), sent as hex chunks
# ("C file seq hex"), all in one pipeline. Only a regular file: a FIFO would never end.
auditor_agent_conf() {
    [ -f "$1" ] && [ -r "$1" ] || return 0
    dd if="$1" bs=$((AUDITOR_CONF_MAX + 1)) count=1 2>/dev/null | auditor_hex | fold -w 400 \
        | awk -v p="AUD1 $AUDITOR_NONCE" -v f="$1" '{ print p "\tC\t" f "\t" NR "\t" $0 }'
    _confs="$_confs$1 "
}

# The proxy the agent tries first, from file $1, in _p: the last qualys_https_proxy= line,
# else the last https_proxy= line; quotes stripped; the first entry of a ';' list. The
# entries after it (the agent's fail-over proxies) in AUDITOR_AGENT_REST.
auditor_agent_first_proxy() {
    _p=""
    [ -f "$1" ] && [ -r "$1" ] || return 0
    # Bounded like the copy the auditor sees; NUL bytes are dropped by the substitution.
    _rest=$(dd if="$1" bs="$AUDITOR_CONF_MAX" count=1 2>/dev/null | tr -d '\000\r')
    _q=""
    _h=""
    while [ -n "$_rest" ]; do
        _l=${_rest%%"$AUDITOR_NL"*}
        case "$_rest" in
            *"$AUDITOR_NL"*) _rest=${_rest#*"$AUDITOR_NL"} ;;
            *) _rest="" ;;
        esac
        _l=${_l#"${_l%%[![:space:]]*}"}
        _l=${_l#export }
        case "$_l" in
            "qualys_https_proxy="*) _q=${_l#qualys_https_proxy=} ;;
            "https_proxy="*) _h=${_l#https_proxy=} ;;
        esac
    done
    _p=${_q:-$_h}
    case "$_p" in
        \"*) _p=${_p#\"} && _p=${_p%%\"*} ;;
        \'*) _p=${_p#\'} && _p=${_p%%\'*} ;;
        *) _p=${_p%%[[:space:]]*} ;;
    esac
    AUDITOR_AGENT_REST=""
    case "$_p" in *";"*) AUDITOR_AGENT_REST=${_p#*;} ;; esac
    _p=${_p%%;*}
    _p=${_p#"${_p%%[![:space:]]*}"}
    _p=${_p%"${_p##*[![:space:]]}"}
}

# Agent facts, and the way the probe goes: through the agent's first proxy (trusting its CA
# bundle) when asked to follow the agent and the agent is installed; else the session's way.
# All of it leaves in one record (each record costs the host a few processes):
#   A mgr1 status1 answer1 mgr2 status2 answer2 svc_how svc_state ca path conf_files
auditor_agent() {
    auditor_agent_package
    # Whether the daemon runs matters only where the package is installed (the auditor reads
    # it for no other host): elsewhere neither systemctl nor a walk over /proc is paid for.
    _svc_how=""
    _svc_state=""
    [ "$_installed" = 0 ] || auditor_agent_service
    _p=""
    _confs=""
    for _file in $AUDITOR_AGENT_FILES; do
        auditor_agent_conf "$_file"
        if [ -z "$_p" ]; then
            auditor_agent_first_proxy "$_file"
        fi
    done
    _ca=0
    [ ! -f "$AUDITOR_AGENT_CA" ] || _ca=1
    _path=session
    if [ "$AUDITOR_AGENT_PROXY" = 1 ] && [ "$_installed" = 1 ]; then
        # The agent is a service: the login session's proxy variables are not its own.
        unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
        AUDITOR_TRUST_AGENT=$_ca
        _path=agent_direct
        if [ -n "$_p" ]; then
            auditor_emit P agent "$_p"
            # To every tool through the environment, never argv.
            https_proxy=$_p
            http_proxy=$_p
            export https_proxy http_proxy
            _path=agent_proxy
        fi
    else
        AUDITOR_AGENT_REST=""
    fi
    auditor_emit A "$_m1" "$_r1" "$_o1" "$_m2" "$_r2" "$_o2" "$_svc_how" "$_svc_state" "$_ca" \
        "$_path" "$_confs"
}

# The proxy the tools will use for URL $1, from the environment (for the report), in _env_proxy.
auditor_env_proxy() {
    case "$1" in
        https:*) _env_proxy=${https_proxy:-${HTTPS_PROXY:-${all_proxy:-${ALL_PROXY:-}}}} ;;
        *) _env_proxy=${http_proxy:-${all_proxy:-${ALL_PROXY:-}}} ;;
    esac
}

# Hex of stdin's bytes, on one line: no byte a server chose can break a record.
auditor_hex() {
    od -An -v -tx1 | tr -d ' \n'
}

# The issuer of the certificate URL $1 presents, looked at without verifying (an interception
# product names itself there), as hex. curl 7.88 and later name it in a structured field
# (OpenSSL escapes its control characters); older ones only in verbose text, where the leaf's
# subject comes first and may hold line breaks: only the last issuer line is the real one.
auditor_curl_issuer() {
    _issuer=""
    if [ "$AUDITOR_CERTS" = 1 ]; then
        _issuer=$(curl -q -s -k -I -o /dev/null --globoff --connect-timeout "$AUDITOR_CT" \
            --max-time "$AUDITOR_MT" -w '%{certs}' -- "$1" 2>/dev/null \
            | sed -n -e '/^Issuer:/{' -e 's/^Issuer://p' -e 'q' -e '}' | auditor_hex)
    fi
    # A TLS library without certificate details leaves the field empty: verbose text then.
    if [ -z "$_issuer" ]; then
        _issuer=$(curl -q -sS -v -k -I -o /dev/null --globoff --connect-timeout "$AUDITOR_CT" \
            --max-time "$AUDITOR_MT" -- "$1" 2>&1 \
            | sed -n 's/^\*[[:space:]]*issuer:[[:space:]]*//p' | tail -n 1 | auditor_hex)
    fi
}

# One curl request for URL $1 (more options after it), its output in _out, exit code in _rc.
auditor_curl_run() {
    _url=$1
    shift
    _out=$(curl -q -sS -o /dev/null --globoff --connect-timeout "$AUDITOR_CT" \
        --max-time "$AUDITOR_MT" \
        -w '\nAUDW %{http_code}|%{http_connect}|%{remote_ip}|%{time_namelookup}|%{time_connect}|%{time_appconnect}|%{time_total}\n' \
        "$@" -- "$_url" 2>&1)
    _rc=$?
}

# Did the last request fail at the proxy itself: its name (5), its port (7), or a connect
# to it that never completed (28 with a zero time_connect)? The classifier's rule, too.
auditor_curl_at_proxy() {
    case "$_rc" in
        5 | 7) return 0 ;;
        28)
            auditor_last_line "$_out" "AUDW "
            _w=${_last#*|*|*|*|}
            _w=${_w%%|*}
            case "${_w#0.}" in
                *[!0]*) return 1 ;;
                *) return 0 ;;
            esac
            ;;
    esac
    return 1
}

auditor_curl() {
    _idx=$1
    _url=$2
    # -q first: the login user's ~/.curlrc (an "insecure" line is common behind TLS
    # inspection) must not decide the verdict.
    auditor_curl_run "$_url"
    # The agent tries its proxies in order, the next when one cannot be used (up to five
    # in all): so does the probe, and the record names the proxy that answered.
    _left=$AUDITOR_AGENT_REST
    _n=1
    while [ -n "$_left" ] && [ "$_n" -lt 5 ] && auditor_curl_at_proxy; do
        _p=${_left%%;*}
        case "$_left" in
            *";"*) _left=${_left#*;} ;;
            *) _left="" ;;
        esac
        _p=${_p#"${_p%%[![:space:]]*}"}
        _p=${_p%"${_p##*[![:space:]]}"}
        [ -n "$_p" ] || continue
        _n=$((_n + 1))
        https_proxy=$_p
        http_proxy=$_p
        _shown_proxy=$_p
        auditor_curl_run "$_url"
    done
    case "$AUDITOR_TRUST_AGENT:$_rc" in
        1:35 | 1:60 | 1:77 | 1:83 | 1:90 | 1:91)
            # The agent trusts its proxy CA bundle as well as the system's CAs: a chain the
            # system refused gets a second look with the bundle (for the origin, and for an
            # HTTPS proxy). Only a success replaces the first answer.
            _first_out=$_out
            _first_rc=$_rc
            auditor_curl_run "$_url" --cacert "$AUDITOR_AGENT_CA" \
                --proxy-cacert "$AUDITOR_AGENT_CA"
            if [ "$_rc" != 0 ]; then
                _out=$_first_out
                _rc=$_first_rc
            fi
            ;;
    esac
    auditor_last_line "$_out" "AUDW "
    _w=$_last
    # curl's own message: the last "curl: (N) text" line, without its "curl: (N) ".
    auditor_last_line "$_out" "curl: ("
    _err=${_last#*) }
    _issuer=""
    # The TLS failure codes: the same list as the auditor's classifier (a test holds them equal).
    case "$_rc" in
        35|51|53|54|58|59|60|64|66|77|80|82|83|90|91)
            # Verification failed before curl could show the chain: look once more.
            auditor_curl_issuer "$_url"
            ;;
    esac
    _old_ifs=$IFS
    IFS='|'
    # shellcheck disable=SC2086 # splitting the -w fields on '|' is intended
    set -- $_w
    IFS=$_old_ifs
    auditor_emit T "$_idx" curl "$_rc" "${1:-000}" "${2:-000}" "${3:-}" "${4:-}" "${5:-}" \
        "${6:-}" "${7:-}" "$_shown_proxy" "$_issuer" "$_err"
}

auditor_wget() {
    _idx=$1
    _url=$2
    _t0=$(date +%s)
    # --no-config: neither /etc/wgetrc nor ~/.wgetrc (check_certificate = off) may decide
    # the verdict. LC_ALL=C: the messages below are matched in English.
    _out=$(LC_ALL=C wget --no-config -S -O /dev/null --tries=1 --max-redirect=0 \
        --timeout="$AUDITOR_MT" -- "$_url" 2>&1)
    _rc=$?
    case "$_rc:$_out" in
        2:*--no-config*)
            # A wget older than the option reads its startup files; a command given with -e
            # runs after them, so certificate checking is on whatever they say.
            _out=$(LC_ALL=C wget -e check_certificate=on -S -O /dev/null --tries=1 \
                --max-redirect=0 --timeout="$AUDITOR_MT" -- "$_url" 2>&1)
            _rc=$?
            ;;
    esac
    # -S prints each response's lines indented by two spaces, after a line of wget's own.
    # The status is the first line of the last such block: a header of the response that
    # looks like a status line must not pass for one.
    _status=$(printf '%s\n' "$_out" | awk '
        /^  / { if (!inblock) { first = $0; inblock = 1 }; next }
        { inblock = 0 }
        END { print first }')
    case "$_status" in
        "  HTTP/"*)
            _status=${_status#*HTTP/}
            _status=${_status#* }
            _status=${_status%%[!0-9]*}
            ;;
        *) _status="" ;;
    esac
    _err=$(printf '%s\n' "$_out" | grep -i -e 'failed' -e 'error' -e 'unable' -e 'not trusted' \
        -e 'timed out' | tail -n 2 | tr '\n' ' ')
    _issuer=$(printf '%s\n' "$_out" | sed -n "s/.*issued by [\`']\{0,1\}\([^']*\)'*.*/\1/p" \
        | head -n 1 | auditor_hex)
    # wget reports no timings; whole seconds are enough to tell a stall from a quick failure.
    _elapsed=$(($(date +%s) - _t0))
    auditor_emit T "$_idx" wget "$_rc" "${_status:-000}" 000 "" "" "" "" "$_elapsed" \
        "$_shown_proxy" "$_issuer" "$_err"
}

# python3 fallback: prints the curl-equivalent exit code so one classifier serves all tools.
# It runs isolated (-I: no PYTHON* variables, no user site; -S: no sitecustomize), so nothing
# on the host can swap the verifying TLS context for one that accepts any certificate. The
# proxy comes from the environment, as for curl and wget. SSL_CERT_FILE / SSL_CERT_DIR still
# choose the CA store (they name trusted CAs; they cannot switch verification off).
AUDITOR_PY='
import socket, ssl, sys, time, urllib.error, urllib.request
url, ct, mt = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
context = ssl.create_default_context()
context.check_hostname = True
context.verify_mode = ssl.CERT_REQUIRED
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
start = time.monotonic(); code, status, err = 0, "000", ""
try:
    with opener.open(urllib.request.Request(url, method="GET"), timeout=mt) as r:
        status = str(r.status)
except urllib.error.HTTPError as e:
    status = str(e.code)
except Exception as e:
    r = getattr(e, "reason", e); err = type(r).__name__ + ": " + str(r)
    if isinstance(r, socket.gaierror): code = 6
    elif isinstance(r, ConnectionRefusedError): code = 7
    elif isinstance(r, (socket.timeout, TimeoutError)): code = 28
    elif isinstance(r, ssl.SSLCertVerificationError): code = 60
    elif isinstance(r, ssl.SSLError): code = 35
    elif isinstance(r, OSError) and "Tunnel connection failed" in str(r): code = 56
    else: code = 1
print(code, status, "%.6f" % (time.monotonic() - start), err.replace("\t", " ").replace("\n", " ")[:300], sep="\t")
'

auditor_python() {
    _idx=$1
    _url=$2
    _out=$(python3 -I -S -c "$AUDITOR_PY" "$_url" "$AUDITOR_CT" "$AUDITOR_MT" 2>&1 | tail -n 1)
    _old_ifs=$IFS
    IFS=$AUDITOR_TAB
    # shellcheck disable=SC2086 # splitting on tabs is intended
    set -- $_out
    IFS=$_old_ifs
    auditor_emit T "$_idx" python3 "${1:-1}" "${2:-000}" 000 "" "" "" "" "${3:-}" \
        "$_shown_proxy" "" "${4:-$_out}"
}

auditor_one() {
    # The proxy the tool will use, as set: the parser masks its credentials.
    auditor_env_proxy "$2"
    _shown_proxy=$_env_proxy
    "auditor_$AUDITOR_TOOL" "$1" "$2"
}

# Report every proxy setting of the host (variables the tools legitimately use).
auditor_proxies() {
    for _name in http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY \
        no_proxy NO_PROXY; do
        eval "_value=\${$_name:-}"
        [ -z "$_value" ] || auditor_emit P "$_name" "$_value"
    done
}

# The curl version in _ver ("curl 7.88.1") from $1, the first line of `curl --version`;
# AUDITOR_CERTS=1 for 7.88 and later, which name a
# certificate's issuer in a structured field.
auditor_curl_version() {
    # "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/..." -> "curl 7.88.1"
    _ver=${1%%"$AUDITOR_NL"*}
    case "$_ver" in *" "*)
        _rest=${_ver#* }
        _ver="${_ver%%" $_rest"} ${_rest%% *}"
        ;;
    esac
    _v=${_ver#curl }
    _maj=${_v%%.*}
    _min=${_v#*.}
    _min=${_min%%.*}
    case "$_maj.$_min" in
        *[!0-9.]* | .* | *.) ;;
        *)
            if [ "$_maj" -gt 7 ] || { [ "$_maj" -eq 7 ] && [ "$_min" -ge 88 ]; }; then
                AUDITOR_CERTS=1
            fi
            ;;
    esac
    AUDITOR_CURL_VER=$_ver
}

auditor_facts() {
    # The kernel's node name, as hostname(1) prints it, read without starting hostname.
    _host=""
    if [ -r /proc/sys/kernel/hostname ]; then
        IFS= read -r _host </proc/sys/kernel/hostname || :
    fi
    [ -n "$_host" ] || _host=$(hostname 2>/dev/null || uname -n 2>/dev/null)
    _os=""
    if [ -r /etc/os-release ]; then
        while IFS= read -r _l || [ -n "$_l" ]; do
            case "$_l" in PRETTY_NAME=*)
                _os=${_l#PRETTY_NAME=}
                break
                ;;
            esac
        done </etc/os-release
        _os=${_os#[\"\']}
        _os=${_os%[\"\']}
    fi
    [ -n "$_os" ] || _os=$(uname -sr 2>/dev/null)
}

auditor_emit_facts() {
    case "$AUDITOR_TOOL" in
        curl)
            if [ -z "$AUDITOR_CURL_VER" ]; then
                auditor_curl_version "$(curl --version 2>/dev/null)"
            fi
            _ver=$AUDITOR_CURL_VER
            ;;
        wget) _ver=$(wget --version 2>/dev/null | head -n 1) ;;
        python) _ver=$(python3 --version 2>&1) ;;
        *) _ver="" ;;
    esac
    auditor_emit H "$_host" "$_os" "$AUDITOR_TOOL" "$_ver"
}

# --- Every URL in one curl process ----------------------------------------------------------
# One line per transfer: which URL of the command line (urlnum), then what the per-URL path
# reads (exit code, status, CONNECT status, address, timings, curl's error message: the same
# text it prints as "curl: (N) text"). Not %{json}: it makes curl collect and print every
# certificate of the chain, a cost on every host for a version string.
AUDITOR_WPAR='\nAUDW %{urlnum}|%{exitcode}|%{http_code}|%{http_connect}|%{remote_ip}|%{time_namelookup}|%{time_connect}|%{time_appconnect}|%{time_total}|%{errormsg}\n'

# Fetches the targets in $2 ("idx url" lines, at most AUDITOR_PARALLEL) in one curl process,
# with the options after them, and sets ${1}idx to "exit|http|connect|ip|dns|conn|tls|total|
# error" for every target curl reported. --create-file-mode is new in curl 7.75, as are the
# urlnum, exitcode and errormsg fields: an older curl refuses the command line before any
# request is made, and reports nothing. (It applies to files a transfer creates remotely,
# which an HTTP GET never does.)
auditor_batch() {
    _prefix=$1
    _br=$2
    shift 2
    _k=0
    while [ -n "$_br" ]; do
        _be=${_br%%"$AUDITOR_NL"*}
        _br=${_br#*"$AUDITOR_NL"}
        eval "_B_$_k=\${_be%% *}"
        set -- "$@" -o /dev/null --url "${_be#* }"
        _k=$((_k + 1))
    done
    # -q first: the login user's ~/.curlrc must not decide the verdict. All transfers start
    # at once (--parallel-immediate, as many as there are URLs), so none waits for, or reuses,
    # another's connection.
    _bo=$(curl -q -s --parallel --parallel-immediate --parallel-max "$_k" \
        --create-file-mode 0600 --globoff --connect-timeout "$AUDITOR_CT" \
        --max-time "$AUDITOR_MT" -w "$AUDITOR_WPAR" "$@" 2>/dev/null)
    while [ -n "$_bo" ]; do
        _bl=${_bo%%"$AUDITOR_NL"*}
        case "$_bo" in
            *"$AUDITOR_NL"*) _bo=${_bo#*"$AUDITOR_NL"} ;;
            *) _bo="" ;;
        esac
        case "$_bl" in
            "AUDW "*)
                _bl=${_bl#AUDW }
                _u=${_bl%%|*}
                case "$_u" in '' | *[!0-9]*) continue ;; esac
                if [ "${#_u}" -gt 3 ] || [ "$_u" -ge "$_k" ]; then
                    continue
                fi
                _bi=""
                eval "_bi=\$_B_$_u"
                # The first line for a transfer counts.
                eval "[ -z \"\${$_prefix$_bi+x}\" ]" || continue
                eval "$_prefix$_bi=\${_bl#*|}"
                ;;
        esac
    done
}

# auditor_batch $1 over every target in $2, AUDITOR_PARALLEL at a time.
auditor_batches() {
    _entries=$2
    while [ -n "$_entries" ]; do
        _chunk=""
        _bn=0
        while [ -n "$_entries" ] && [ "$_bn" -lt "$AUDITOR_PARALLEL" ]; do
            _chunk="$_chunk${_entries%%"$AUDITOR_NL"*}$AUDITOR_NL"
            _entries=${_entries#*"$AUDITOR_NL"}
            _bn=$((_bn + 1))
        done
        auditor_batch "$1" "$_chunk"
    done
}

# Did the request whose fields are $1 fail at the proxy itself: its name (5), its port (7),
# or a connect to it that never completed (28 with a zero time_connect)? As
# auditor_curl_at_proxy.
auditor_fields_at_proxy() {
    case "${1%%|*}" in
        5 | 7) return 0 ;;
        28)
            _w=${1#*|*|*|*|*|}
            _w=${_w%%|*}
            case "${_w#0.}" in
                *[!0]*) return 1 ;;
                *) return 0 ;;
            esac
            ;;
    esac
    return 1
}

# Every target in _targets with one curl process per AUDITOR_PARALLEL URLs; then, for each
# URL, what the per-URL path does after its request: the agent's next proxy where the proxy
# failed (all targets at one proxy go together), its CA bundle where the chain failed, the
# issuer where TLS failed. A target curl reported nothing for goes the per-URL way (in the
# background; the caller waits for it).
auditor_curl_all() {
    _todo=$_targets
    _left=$AUDITOR_AGENT_REST
    _tries=1
    _ar=$_todo
    while [ -n "$_ar" ]; do
        _ae=${_ar%%"$AUDITOR_NL"*}
        _ar=${_ar#*"$AUDITOR_NL"}
        # The proxy the tool will use, as set: the parser masks its credentials.
        auditor_env_proxy "${_ae#* }"
        eval "_P_${_ae%% *}=\$_env_proxy"
    done
    _round=0
    while [ -n "$_todo" ]; do
        _round=$((_round + 1))
        auditor_batches _R_ "$_todo"
        # The version, for the report and for the issuer look-up below.
        [ -n "$AUDITOR_CURL_VER" ] || auditor_curl_version "$(curl --version 2>/dev/null)"
        _next=""
        _slow=""
        _ar=$_todo
        while [ -n "$_ar" ]; do
            _ae=${_ar%%"$AUDITOR_NL"*}
            _ar=${_ar#*"$AUDITOR_NL"}
            _ai=${_ae%% *}
            eval "_fields=\${_R_$_ai-}"
            if [ -z "$_fields" ]; then
                if [ "$_round" = 1 ]; then
                    # Never reported: per URL, from the start.
                    _slow="$_slow$_ae$AUDITOR_NL"
                else
                    # A fail-over round that reported nothing: the earlier answer stands.
                    eval "_R_$_ai=\$_O_$_ai _P_$_ai=\$_OP_$_ai"
                fi
                continue
            fi
            if [ -n "$_left" ] && [ "$_tries" -lt 5 ] && auditor_fields_at_proxy "$_fields"; then
                _next="$_next$_ae$AUDITOR_NL"
                unset "_R_$_ai"
                eval "_O_$_ai=\$_fields _OP_$_ai=\${_P_$_ai-}"
                continue
            fi
            case "$AUDITOR_TRUST_AGENT:${_fields%%|*}" in
                1:35 | 1:60 | 1:77 | 1:83 | 1:90 | 1:91)
                    # The agent trusts its proxy CA bundle as well as the system's CAs: a
                    # chain the system refused gets a second look with the bundle (for the
                    # origin, and for an HTTPS proxy). Only a success replaces the first answer.
                    auditor_batch _S_ "$_ae$AUDITOR_NL" --cacert "$AUDITOR_AGENT_CA" \
                        --proxy-cacert "$AUDITOR_AGENT_CA"
                    _x=""
                    eval "_x=\${_S_$_ai-}"
                    unset "_S_$_ai"
                    case "$_x" in "0|"*)
                        _fields=$_x
                        eval "_R_$_ai=\$_x"
                        ;;
                    esac
                    ;;
            esac
            # The TLS failure codes: the same list as the auditor's classifier.
            case "${_fields%%|*}" in
                35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91)
                    auditor_curl_issuer "${_ae#* }"
                    eval "_I_$_ai=\$_issuer"
                    ;;
            esac
        done
        if [ -n "$_slow" ]; then
            # This curl could not take them in one process (older than 7.75): one process
            # per URL, as before.
            auditor_per_url "$_slow"
        fi
        # The agent tries its proxies in order, the next when one cannot be used (up to five
        # in all): so does the probe, for the targets that failed at the proxy, and the
        # record names the proxy that answered.
        _todo=""
        while [ -n "$_next" ] && [ -n "$_left" ]; do
            _p=${_left%%;*}
            case "$_left" in
                *";"*) _left=${_left#*;} ;;
                *) _left="" ;;
            esac
            _p=${_p#"${_p%%[![:space:]]*}"}
            _p=${_p%"${_p##*[![:space:]]}"}
            [ -n "$_p" ] || continue
            _tries=$((_tries + 1))
            https_proxy=$_p
            http_proxy=$_p
            _ar=$_next
            while [ -n "$_ar" ]; do
                _ae=${_ar%%"$AUDITOR_NL"*}
                _ar=${_ar#*"$AUDITOR_NL"}
                eval "_P_${_ae%% *}=\$_p"
            done
            _todo=$_next
        done
        if [ -z "$_todo" ] && [ -n "$_next" ]; then
            # No proxy left to try: the last answers stand.
            _ar=$_next
            while [ -n "$_ar" ]; do
                _ae=${_ar%%"$AUDITOR_NL"*}
                _ar=${_ar#*"$AUDITOR_NL"}
                eval "_R_${_ae%% *}=\$_O_${_ae%% *}"
            done
        fi
    done
    _ar=$_targets
    while [ -n "$_ar" ]; do
        _ae=${_ar%%"$AUDITOR_NL"*}
        _ar=${_ar#*"$AUDITOR_NL"}
        _ai=${_ae%% *}
        eval "_fields=\${_R_$_ai-}"
        [ -n "$_fields" ] || continue
        eval "_shown_proxy=\${_P_$_ai-} _issuer=\${_I_$_ai-}"
        # curl's message may hold '|': it is everything after the eighth.
        _err=${_fields#*|*|*|*|*|*|*|*|}
        _old_ifs=$IFS
        IFS='|'
        # shellcheck disable=SC2086 # splitting the fields on '|' is intended
        set -- ${_fields%"|$_err"}
        IFS=$_old_ifs
        auditor_emit T "$_ai" curl "${1:-}" "${2:-000}" "${3:-000}" "${4:-}" "${5:-}" "${6:-}" \
            "${7:-}" "${8:-}" "$_shown_proxy" "$_issuer" "$_err"
    done
}

# One process per URL (curl older than 7.75, wget, python3): up to AUDITOR_PARALLEL at once,
# each in the background. POSIX sh cannot wait for "any" child, so a full set waits for its
# oldest member, which started first and so is the likeliest to end first. The caller waits
# for the rest ($_running).
auditor_per_url() {
    _pr=$1
    while [ -n "$_pr" ]; do
        _pe=${_pr%%"$AUDITOR_NL"*}
        _pr=${_pr#*"$AUDITOR_NL"}
        if [ "$_nrun" -ge "$AUDITOR_PARALLEL" ]; then
            _oldest=${_running%% *}
            _running=${_running#* }
            wait "$_oldest"
            _nrun=$((_nrun - 1))
        fi
        auditor_one "${_pe%% *}" "${_pe#* }" &
        _running="$_running$! "
        _nrun=$((_nrun + 1))
    done
}

# When the auditor gives up on this host (deadline, Ctrl-C) it signals the session: end every
# curl of this probe at once instead of letting them run to --max-time. The session is its
# own process group (sshd or the local transport start it with setsid).
auditor_stop() {
    trap - TERM HUP INT
    kill -TERM 0 2>/dev/null
    exit 143
}

auditor_main() {
    trap auditor_stop TERM HUP INT
    _count=0
    _targets=""
    while IFS= read -r _line; do
        case "$_line" in
            "nonce "*) AUDITOR_NONCE=${_line#nonce } ;;
            "connect_timeout "*) AUDITOR_CT=${_line#connect_timeout } ;;
            "max_time "*) AUDITOR_MT=${_line#max_time } ;;
            "agent_proxy "*) AUDITOR_AGENT_PROXY=${_line#agent_proxy } ;;
            "per_url 1") AUDITOR_ONE_PROCESS=0 ;;
            "target "*)
                _entry=${_line#target }
                # The index names shell variables: digits only.
                case "${_entry%% *}" in '' | *[!0-9]*) continue ;; esac
                _count=$((_count + 1))
                _targets="$_targets$_entry$AUDITOR_NL"
                ;;
        esac
    done
    # The host's own proxy settings first, before the agent's proxy may replace them.
    auditor_proxies
    auditor_agent
    if command -v curl >/dev/null 2>&1; then
        AUDITOR_TOOL=curl
    elif command -v wget >/dev/null 2>&1; then
        AUDITOR_TOOL=wget
    elif command -v python3 >/dev/null 2>&1; then
        AUDITOR_TOOL=python
    else
        auditor_emit U "no curl, wget or python3 on PATH ($PATH)"
        return 0
    fi
    auditor_facts
    # A watchdog: once the auditor has gone (deadline, Ctrl-C, lost connection) the session's
    # output is closed, the next write fails, and every curl of this probe is ended at once
    # instead of running on to --max-time. (OpenSSH ignores signal requests from clients.)
    # Its sleep must not hold the session's output open: the session ends when the last
    # holder of stdout closes it, and a sleeping watchdog would add up to a second per host.
    (
        trap '' PIPE
        while sleep 1 >/dev/null 2>&1; do
            printf '\n' || { kill -TERM 0; exit 0; }
        done
    ) &
    _watchdog=$!
    _running=""
    _nrun=0
    if [ "$AUDITOR_TOOL" = curl ] && [ "$AUDITOR_ONE_PROCESS" = 1 ]; then
        auditor_curl_all
    else
        [ "$AUDITOR_TOOL" != curl ] || auditor_curl_version "$(curl --version 2>/dev/null)"
        auditor_per_url "$_targets"
    fi
    auditor_emit_facts
    # Never a bare `wait`: it would wait for the watchdog too.
    # shellcheck disable=SC2086 # one PID per word
    [ -z "$_running" ] || wait $_running
    kill "$_watchdog" 2>/dev/null
    auditor_emit D "$_count"
}
