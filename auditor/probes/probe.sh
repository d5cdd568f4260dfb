# shellcheck shell=sh
# The Linux/Unix probe: POSIX sh, sent on stdin to `/bin/sh -s`, never written to disk.
#
# The auditor appends a call `auditor_main <<'AUDITOR_END_<nonce>'` followed by data lines
# (settings and validated URLs). Data only ever arrives through that quoted here-document,
# so nothing user-supplied is parsed as shell. Every record printed starts with
# "AUD1 <nonce>" and is one line of tab-separated fields, written in one write.
#
# Each process the probe starts costs the host a fork and an exec, and the probe runs on every
# host of a fleet: text is handled with the shell's own expansions wherever POSIX allows.
#
# Records:  H hostname os tool tool_version   (host facts)
#           T idx tool exit http connect_code remote_ip t_dns t_connect t_tls t_total proxy issuer error
#           U reason                          (no usable HTTP client: probe unavailable)
#           D count                           (done; its absence means the output was cut)

AUDITOR_NONCE=""
AUDITOR_CT=5
AUDITOR_MT=10
AUDITOR_AGENT_PROXY=0
AUDITOR_TAB=$(printf '\t')
AUDITOR_SEP=$(printf '\001')
AUDITOR_NL='
'
# 400 '?': a pattern that matches a field's first 400 characters.
AUDITOR_Q400='????????????????????????????????????????'
AUDITOR_Q400=$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400$AUDITOR_Q400
AUDITOR_Q400=$AUDITOR_Q400$AUDITOR_Q400

auditor_emit() {
    # $1 = kind, rest = fields. Each field is cut to 400 characters; then one pass over the
    # whole record drops control characters, makes tabs and line breaks inside a field
    # spaces, and turns the separators into tabs. cut ends the line, and the record leaves
    # in one write that the parallel targets' records cannot interleave with.
    _line="AUD1 $AUDITOR_NONCE$AUDITOR_SEP$1"
    shift
    for _f in "$@"; do
        if [ ${#_f} -gt 400 ]; then
            # shellcheck disable=SC2295 # the 400 '?' are meant as a pattern
            _rest=${_f#$AUDITOR_Q400}
            _f=${_f%"$_rest"}
        fi
        _line="$_line$AUDITOR_SEP$_f"
    done
    printf '%s' "$_line" | tr -d '\000\002-\010\013-\037\177' | tr '\t\n\001' '  \t' \
        | cut -c1-4000
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

# The proxy the Qualys agent is configured with (RPM and Debian families), if any.
auditor_agent_proxy() {
    for _file in /etc/sysconfig/qualys-cloud-agent /etc/default/qualys-cloud-agent; do
        [ -r "$_file" ] || continue
        _p=$(sed -n -e 's/^[[:space:]]*qualys_https_proxy[[:space:]]*=[[:space:]]*//p' \
                    -e 's/^[[:space:]]*https_proxy[[:space:]]*=[[:space:]]*//p' "$_file" \
             | head -n 1 | tr -d "\"'")
        if [ -n "$_p" ]; then
            printf '%s' "$_p"
            return 0
        fi
    done
    return 1
}

# The proxy curl will use for URL $1, from the environment (for the report), in _env_proxy.
auditor_env_proxy() {
    case "$1" in
        https:*) _env_proxy=${https_proxy:-${HTTPS_PROXY:-${all_proxy:-${ALL_PROXY:-}}}} ;;
        *) _env_proxy=${http_proxy:-${all_proxy:-${ALL_PROXY:-}}} ;;
    esac
}

auditor_curl() {
    _idx=$1
    _url=$2
    _proxy=$3
    if [ -n "$_proxy" ]; then
        set -- --proxy "$_proxy"
    else
        set --
    fi
    _out=$(curl -sS -v -o /dev/null --globoff --connect-timeout "$AUDITOR_CT" \
        --max-time "$AUDITOR_MT" "$@" \
        -w '\nAUDW %{http_code}|%{http_connect}|%{remote_ip}|%{time_namelookup}|%{time_connect}|%{time_appconnect}|%{time_total}\n' \
        -- "$_url" 2>&1)
    _rc=$?
    auditor_last_line "$_out" "AUDW "
    _w=$_last
    # curl's own message: the last "curl: (N) text" line, without its "curl: (N) ".
    auditor_last_line "$_out" "curl: ("
    _err=${_last#*) }
    # curl quotes a proxy URL it cannot parse, password and all: show the masked one.
    while [ -n "$_raw_proxy" ] && [ "$_raw_proxy" != "$_shown_proxy" ]; do
        case "$_err" in
            *"$_raw_proxy"*) _err="${_err%%"$_raw_proxy"*}$_shown_proxy${_err#*"$_raw_proxy"}" ;;
            *) break ;;
        esac
    done
    _issuer=""
    case "$_rc" in
        35|51|53|58|59|60|66|77|80|82|83|90|91)
            # Verification failed before curl could show the chain; look once more without
            # verifying, only to name the issuer (an interception product names itself there).
            _issuer=$(curl -sS -v -k -I -o /dev/null --globoff --connect-timeout "$AUDITOR_CT" \
                --max-time "$AUDITOR_MT" "$@" -- "$_url" 2>&1 \
                | sed -n 's/^\*[[:space:]]*issuer:[[:space:]]*//p' | head -n 1)
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
    _proxy=$3
    _t0=$(date +%s)
    if [ -n "$_proxy" ]; then
        _out=$(https_proxy=$_proxy http_proxy=$_proxy wget -S -O /dev/null --tries=1 \
            --max-redirect=0 --timeout="$AUDITOR_MT" -- "$_url" 2>&1)
    else
        _out=$(wget -S -O /dev/null --tries=1 --max-redirect=0 --timeout="$AUDITOR_MT" \
            -- "$_url" 2>&1)
    fi
    _rc=$?
    _status=$(printf '%s\n' "$_out" | sed -n 's/^[[:space:]]*HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' \
        | tail -n 1)
    _err=$(printf '%s\n' "$_out" | grep -i -e 'failed' -e 'error' -e 'unable' -e 'not trusted' \
        -e 'timed out' | tail -n 2 | tr '\n' ' ')
    _issuer=$(printf '%s\n' "$_out" | sed -n "s/.*issued by [\`']\{0,1\}\([^']*\)'*.*/\1/p" \
        | head -n 1)
    # wget reports no timings; whole seconds are enough to tell a stall from a quick failure.
    _elapsed=$(($(date +%s) - _t0))
    auditor_emit T "$_idx" wget "$_rc" "${_status:-000}" 000 "" "" "" "" "$_elapsed" \
        "$_shown_proxy" "$_issuer" "$_err"
}

# python3 fallback: prints the curl-equivalent exit code so one classifier serves all tools.
AUDITOR_PY='
import socket, ssl, sys, time, urllib.error, urllib.request
url, ct, mt, proxy = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
opener = urllib.request.build_opener(*handlers)
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
    _proxy=$3
    _out=$(python3 -c "$AUDITOR_PY" "$_url" "$AUDITOR_CT" "$AUDITOR_MT" "$_proxy" 2>&1 | tail -n 1)
    _old_ifs=$IFS
    IFS=$AUDITOR_TAB
    # shellcheck disable=SC2086 # splitting on tabs is intended
    set -- $_out
    IFS=$_old_ifs
    auditor_emit T "$_idx" python3 "${1:-1}" "${2:-000}" 000 "" "" "" "" "${3:-}" \
        "$_shown_proxy" "" "${4:-$_out}"
}

auditor_one() {
    _idx=$1
    _url=$2
    _proxy=""
    if [ "$AUDITOR_AGENT_PROXY" = 1 ]; then
        _proxy=$(auditor_agent_proxy) || _proxy=""
    fi
    auditor_env_proxy "$_url"
    _raw_proxy=${_proxy:-$_env_proxy}
    _shown_proxy=$_raw_proxy
    # Show the proxy without any user:password@ part: reports must never carry secrets.
    # Everything up to the authority's last '@' goes, since a password may hold an '@'.
    case "$_shown_proxy" in
        *@*)
            _scheme=""
            _after=$_shown_proxy
            case "$_shown_proxy" in *//*)
                _scheme=${_shown_proxy%%//*}//
                _after=${_shown_proxy#*//}
                ;;
            esac
            _authority=${_after%%/*}
            case "$_authority" in *@*)
                _shown_proxy="$_scheme***@${_authority##*@}${_after#"$_authority"}"
                ;;
            esac
            ;;
    esac
    "auditor_$AUDITOR_TOOL" "$_idx" "$_url" "$_proxy"
}

auditor_facts() {
    _host=$(hostname 2>/dev/null || uname -n 2>/dev/null || cat /proc/sys/kernel/hostname)
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
    case "$AUDITOR_TOOL" in
        curl)
            # "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/..." -> "curl 7.88.1"
            _ver=$(curl --version 2>/dev/null)
            _ver=${_ver%%"$AUDITOR_NL"*}
            case "$_ver" in *" "*)
                _rest=${_ver#* }
                _ver="${_ver%%" $_rest"} ${_rest%% *}"
                ;;
            esac
            ;;
        wget) _ver=$(wget --version 2>/dev/null | head -n 1) ;;
        python) _ver=$(python3 --version 2>&1) ;;
        *) _ver="" ;;
    esac
    auditor_emit H "$_host" "$_os" "$AUDITOR_TOOL" "$_ver"
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
            "target "*)
                _count=$((_count + 1))
                _targets="$_targets${_line#target }
"
                ;;
        esac
    done
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
    # Every URL at once: the host's wall time is the slowest URL, not the sum.
    _pids=""
    _rest=$_targets
    while [ -n "$_rest" ]; do
        _entry=${_rest%%
*}
        _rest=${_rest#*
}
        auditor_one "${_entry%% *}" "${_entry#* }" &
        _pids="$_pids $!"
    done
    # shellcheck disable=SC2086 # one PID per word
    wait $_pids
    kill "$_watchdog" 2>/dev/null
    auditor_emit D "$_count"
}
