# Fleet allow-list auditor: the Windows probe (Windows PowerShell 5.1 and PowerShell 7).
#
# Runs `Invoke-WebRequest -UseBasicParsing` for every target in parallel runspaces, under one
# per-host deadline, and prints one record per target. Read-only: it writes no file and
# changes no setting beyond this process. It gathers evidence only (what the exception and
# the response said); the auditor decides the verdict from it, with the same rules for every
# platform.
#
# Data in: the builder (auditor/probes/powershell.py) replaces the single placeholder in the
# AuditorData line below with base64 of a UTF-8 JSON document:
#   {"nonce": "...", "timeout": N, "connect_ms": N, "parallel": N, "deadline": N,
#    "targets": [{"url": "https://...", "expect": [200, 200, 301, 302]}, ...]}
# where "expect" lists the statuses that count as reachable as inclusive ranges, flattened.
# Nothing from the data is ever spliced into source: the literal is base64 only.
#
# Records out, one per line on stdout:  AUDITOR-PS1 <nonce> <base64 of UTF-8 JSON>
#   {"kind":"facts", "hostname", "os", "os_version", "ps_version", "ps_edition"}
#   {"kind":"agent", "installed", "version", "source", "service", "values", "winhttp", "path"}
#        the Qualys Cloud Agent, raw and bounded (the auditor parses and masks it):
#        installed  yes / no / '' (could not tell); version and source (uninstall entry or
#        service); service  the QualysAgent service's status; values  [{key, name, value}]
#        of the Qualys registry hive whose names speak of a proxy, PAC or WPAD (the names
#        QualysProxy.exe writes are not public: unverified); winhttp  hex of the WinHTTP
#        proxy settings blob; path  agent_proxy when the requests go through the agent's
#        proxy, else session
#   {"kind":"target", "i", "status", "type", "reason", "msg", "inner", "sock", "tls",
#    "tunnel", "issuer", "proxy", "ms"}     one per target, in completion order:
#        status  HTTP status of the response (0: none); type: the exception's full type name;
#        reason  WebException.Status (5.1) or HttpRequestException.HttpRequestError (7.4+);
#        msg / inner  the exception's message and its innermost cause's;
#        sock    a SocketException's SocketErrorCode found in the chain;
#        tls     an exception in the chain came from the TLS layer;
#        tunnel  the proxy's answer to the probe's own CONNECT, asked only for a proxied
#                HTTPS 403: granted, denied or no_answer ('' when not asked);
#        issuer  the certificate's issuer, read again without verifying after a TLS error
#   {"kind":"target", "i", "msg"}           a worker failed before it could report
#   {"kind":"target", "i", "deadline"}      no answer before the per-host deadline
#   {"kind":"unavailable", "ps"}            Invoke-WebRequest is missing (PowerShell 2.0)
#   {"kind":"fatal", "msg"}                 the probe itself failed
#   {"kind":"done", "count"}                last line: its absence means truncated output
# base64 keeps whatever a server or an exception says inert: no text from the network can
# forge or break a record, and the nonce stops other output on the host passing for one.
#
# Build-time rules (the builder minifies this file): comments are whole lines that start
# with '#', there are no block comments and no here-strings, and indentation is cosmetic.

# Progress records would go to stderr as CLIXML and slow 5.1's Invoke-WebRequest badly.
$ProgressPreference = 'SilentlyContinue'
$AuditorData = '@@AUDITOR_DATA@@'
$json = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($AuditorData))
# Taken with a regex so that even PowerShell 2.0 (no ConvertFrom-Json) can sign its record.
$nonce = [regex]::Match($json, '"nonce":"(\w+)"').Groups[1].Value

function Send-Record([string]$body) {
    $b64 = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($body))
    [Console]::Out.WriteLine('AUDITOR-PS1 ' + $nonce + ' ' + $b64)
}

# Invoke-WebRequest arrived with PowerShell 3.0; without it the host cannot be audited.
if (-not (Get-Command Invoke-WebRequest -ErrorAction SilentlyContinue)) {
    Send-Record ('{"kind":"unavailable","ps":"' + $PSVersionTable.PSVersion + '"}')
    exit 3
}

trap {
    Send-Record (@{ kind = 'fatal'; msg = "$_" } | ConvertTo-Json -Compress)
    exit 4
}

$cfg = ConvertFrom-Json $json
$targets = @($cfg.targets)

$os = ''
$osVersion = ''
try {
    $w = Get-CimInstance Win32_OperatingSystem -ErrorAction Stop
    $os = $w.Caption
    $osVersion = $w.Version
} catch {
    $os = [Environment]::OSVersion.VersionString
    $osVersion = [string][Environment]::OSVersion.Version
}
Send-Record (@{
    kind = 'facts'
    hostname = [Environment]::MachineName
    os = $os
    os_version = $osVersion
    ps_version = [string]$PSVersionTable.PSVersion
    ps_edition = [string]$PSVersionTable.PSEdition
} | ConvertTo-Json -Compress)

# The Qualys Cloud Agent. Verified: the service is QualysAgent and the agent keeps its
# settings under HKLM\SOFTWARE\Qualys (vendor's Windows "Anti-Virus and HIPS Exclusions"
# page); its proxy is set there by QualysProxy.exe, else the system (WinHTTP) proxy applies
# (Windows install guide, "Proxy Configuration"). The value names are not public, so every
# value whose name speaks of a proxy, PAC or WPAD is sent, bounded, for the auditor to read.
$agent = [ordered]@{
    kind = 'agent'; installed = ''; version = ''; source = ''; service = ''
    values = @(); winhttp = ''; path = 'session'
}
$agentProxy = ''
try {
    $un = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*', 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*')
    $hit = Get-ItemProperty $un -ErrorAction SilentlyContinue | Where-Object { [string]$_.DisplayName -like 'Qualys Cloud*Agent*' } | Select-Object -First 1
    if ($hit) {
        $agent.installed = 'yes'
        $agent.version = [string]$hit.DisplayVersion
        $agent.source = 'uninstall'
    }
    $svc = Get-Service -Name QualysAgent -ErrorAction SilentlyContinue
    if ($svc) {
        $agent.service = [string]$svc.Status
        if (-not $agent.installed) {
            $agent.installed = 'yes'
            $agent.source = 'service'
        }
    } elseif (-not $agent.installed) {
        $agent.installed = 'no'
    }
    foreach ($k in @(Get-ChildItem 'HKLM:\SOFTWARE\Qualys' -Recurse -ErrorAction SilentlyContinue | Select-Object -First 50) + @(Get-Item 'HKLM:\SOFTWARE\Qualys' -ErrorAction SilentlyContinue)) {
        if (-not $k) {
            continue
        }
        foreach ($n in $k.GetValueNames()) {
            if ($n -match 'proxy|pac|wpad' -and $agent.values.Count -lt 20) {
                $v = [string]$k.GetValue($n)
                $agent.values += [ordered]@{ key = [string]$k.Name; name = $n; value = $v.Substring(0, [Math]::Min($v.Length, 2000)) }
                if (-not $agentProxy -and $n -notmatch 'pac|wpad|user|pass|cred|auth' -and $v -match '^\s*(https?://)?[^\s;/]+:\d+') {
                    $agentProxy = ($v -split ';')[0].Trim()
                }
            }
        }
    }
    $wh = (Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections' -Name WinHttpSettings -ErrorAction SilentlyContinue).WinHttpSettings
    if ($wh) {
        $agent.winhttp = (($wh | Select-Object -First 4096 | ForEach-Object { $_.ToString('x2') }) -join '')
        # The blob: struct size, counter, flags (3: a proxy is set), proxy length, proxy.
        # The list's entries are [scheme=][scheme://]server[:port], split by ';' or spaces
        # (WINHTTP_PROXY_INFO): for https:// URLs an https= entry, else one without a scheme.
        if (-not $agentProxy -and $wh.Length -ge 16 -and ($wh[8] -band 2)) {
            $len = [BitConverter]::ToInt32($wh, 12)
            if ($len -gt 0 -and 16 + $len -le $wh.Length) {
                $list = @([Text.Encoding]::ASCII.GetString($wh, 16, $len) -split '[;\s]+' | Where-Object { $_ })
                $pick = @($list | Where-Object { $_ -match '^https=.' }) + @($list | Where-Object { $_ -notmatch '^\w+=' })
                if ($pick.Count -gt 0) {
                    $agentProxy = ([string]$pick[0]) -replace '^https=', ''
                }
            }
        }
    }
} catch {
}
if ($agentProxy -and $agentProxy -notmatch '^https?://') {
    $agentProxy = 'http://' + $agentProxy
}
if ($cfg.agent_path -and $agent.installed -eq 'yes' -and $agentProxy) {
    $agent.path = 'agent_proxy'
} else {
    $agentProxy = ''
}
Send-Record ($agent | ConvertTo-Json -Compress -Depth 4)

# 5.1's HttpWebRequest offers only SSL3/TLS 1.0 unless told otherwise (3072 = Tls12, written
# as a number so that .NET 4.0's enum without the name still accepts it). PS 7 asks the OS.
if ($PSVersionTable.PSVersion.Major -lt 6) {
    try {
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor 3072
    } catch {
    }
}

# One target, run inside a runspace: every name it uses is defined here.
$work = {
    param($i, $u, $expect, $sec, $ms, $ap)
    $ProgressPreference = 'SilentlyContinue'
    # CONNECT to the URL's host and port over a stream already open to its proxy; true when
    # the proxy grants the tunnel (it is then open on that stream).
    function Request-Tunnel($s, $uri) {
        $hp = $uri.Host + ':' + $uri.Port
        $q = [Text.Encoding]::ASCII.GetBytes("CONNECT $hp HTTP/1.1`r`nHost: $hp`r`n`r`n")
        $s.Write($q, 0, $q.Length)
        $hdr = ''
        $one = New-Object byte[] 1
        while (-not $hdr.EndsWith("`r`n`r`n") -and $hdr.Length -lt 4096 -and $s.Read($one, 0, 1) -gt 0) {
            $hdr += [char]$one[0]
        }
        return ($hdr -match '^HTTP/\S+ 200')
    }
    $r = [ordered]@{
        kind = 'target'; i = $i; status = 0; type = ''; reason = ''
        msg = ''; inner = ''; sock = ''; tls = $false; tunnel = ''; issuer = ''; proxy = ''; ms = 0
    }
    $uri = [Uri]$u
    # The proxy this URL goes through, as the cmdlet will pick it: WinINET/WinHTTP settings
    # via DefaultWebProxy on 5.1, HttpClient.DefaultProxy (env vars, then system) on PS 7.
    try {
        if ($PSVersionTable.PSVersion.Major -ge 6) {
            $wp = [Net.Http.HttpClient]::DefaultProxy
        } else {
            $wp = [Net.WebRequest]::DefaultWebProxy
        }
        if ($wp -and -not $wp.IsBypassed($uri)) {
            $r.proxy = [string]$wp.GetProxy($uri)
        }
    } catch {
    }
    # Probing the agent's path: its proxy, whatever the session's would be.
    $via = @{}
    if ($ap) {
        $via['Proxy'] = $ap
        $r.proxy = [string]([Uri]$ap)
    }
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $e = $null
    try {
        # SilentlyContinue: with -MaximumRedirection 0, 5.1 writes the 3xx response AND a
        # non-terminating "maximum redirection" error; Stop would lose the response.
        # Real failures are terminating errors and land in the catch below either way.
        $resp = Invoke-WebRequest -UseBasicParsing -Uri $u -TimeoutSec $sec -MaximumRedirection 0 -ErrorAction SilentlyContinue @via
        if ($resp) {
            $r.status = [int]$resp.StatusCode
        }
    } catch {
        $e = $_.Exception
    }
    $r.ms = $sw.ElapsedMilliseconds
    $tls = $false
    $sock = ''
    if ($e) {
        $r.type = $e.GetType().FullName
        $r.msg = $e.Message
        # 5.1: WebException.Status; 7.4+: HttpRequestException.HttpRequestError.
        $r.reason = [string]$e.Status
        if (-not $r.reason) {
            $r.reason = [string]$e.HttpRequestError
        }
        if ($e.Response) {
            try {
                $r.status = [int]$e.Response.StatusCode
            } catch {
            }
        }
        # Read by type and typed fields: the (localised) message text is only shown.
        $x = $e
        while ($x) {
            if ($x -is [Net.Sockets.SocketException]) {
                $sock = [string]$x.SocketErrorCode
            }
            if ($x -is [Security.Authentication.AuthenticationException]) {
                $tls = $true
            }
            if ($x.TargetSite -and ([string]$x.TargetSite.DeclaringType) -like 'System.Net.Security.*') {
                $tls = $true
            }
            if ($x -ne $e) {
                $r.inner = $x.Message
            }
            $x = $x.InnerException
        }
        $r.sock = $sock
        $r.tls = $tls
    }
    $why = $r.reason
    $code = $r.status
    # 5.1 (and 7.0/7.1) hand a proxy's refusal of CONNECT to the request as if the origin had
    # answered it, so a 403 seen through a proxy is ambiguous. Ask the proxy for the tunnel
    # directly: only if it grants it did the 403 come from the origin.
    if ($code -eq 403 -and $r.proxy -and $uri.Scheme -eq 'https') {
        $r.tunnel = 'no_answer'
        $pu = [Uri]$r.proxy
        $c = New-Object Net.Sockets.TcpClient
        try {
            if ($c.ConnectAsync($pu.Host, $pu.Port).Wait($ms)) {
                $s = $c.GetStream()
                $s.ReadTimeout = $ms
                $s.WriteTimeout = $ms
                if (Request-Tunnel $s $uri) {
                    $r.tunnel = 'granted'
                } else {
                    $r.tunnel = 'denied'
                }
            }
        } catch {
        } finally {
            $c.Close()
        }
    }
    # After a TLS error, connect again accepting any certificate, only to read who issued it:
    # an intercepting proxy names itself there.
    $tlsError = $why -match '^(TrustFailure|SecureChannelFailure|SecureConnectionError)$' -or ($tls -and $code -eq 0)
    if ($tlsError -and $uri.Scheme -eq 'https') {
        $c = New-Object Net.Sockets.TcpClient
        try {
            $th = $uri.Host
            $tp = $uri.Port
            if ($r.proxy) {
                $th = ([Uri]$r.proxy).Host
                $tp = ([Uri]$r.proxy).Port
            }
            if ($c.ConnectAsync($th, $tp).Wait($ms)) {
                $s = $c.GetStream()
                $s.ReadTimeout = $ms
                $s.WriteTimeout = $ms
                $ok = $true
                if ($r.proxy) {
                    $ok = Request-Tunnel $s $uri
                }
                if ($ok) {
                    $cb = [Net.Security.RemoteCertificateValidationCallback]{ $true }
                    $ssl = New-Object Net.Security.SslStream($s, $false, $cb)
                    if ($PSVersionTable.PSVersion.Major -ge 6) {
                        $ssl.AuthenticateAsClient($uri.Host)
                    } else {
                        $ssl.AuthenticateAsClient($uri.Host, $null, [Security.Authentication.SslProtocols]'Tls12,Tls11,Tls', $false)
                    }
                    $r.issuer = $ssl.RemoteCertificate.Issuer
                }
            }
        } catch {
        } finally {
            $c.Close()
        }
    }
    $r | ConvertTo-Json -Compress
}

$pool = [RunspaceFactory]::CreateRunspacePool(1, [Math]::Max(1, [Math]::Min($targets.Count, [int]$cfg.parallel)))
$pool.Open()
$jobs = @()
for ($i = 0; $i -lt $targets.Count; $i++) {
    $ps = [PowerShell]::Create()
    $ps.RunspacePool = $pool
    [void]$ps.AddScript($work.ToString()).AddArgument($i).AddArgument([string]$targets[$i].url).AddArgument(@($targets[$i].expect)).AddArgument([int]$cfg.timeout).AddArgument([int]$cfg.connect_ms).AddArgument($agentProxy)
    $jobs += @{ i = $i; ps = $ps; h = $ps.BeginInvoke(); done = $false }
}

# Records go out as each target finishes, so a cut-off run still keeps what it learnt.
$deadline = [DateTime]::UtcNow.AddSeconds([double]$cfg.deadline)
$left = $jobs.Count
while ($left -gt 0 -and [DateTime]::UtcNow -lt $deadline) {
    foreach ($j in $jobs) {
        if (-not $j.done -and $j.h.IsCompleted) {
            $j.done = $true
            $left--
            $out = $null
            $werr = 'no output'
            try {
                $out = @($j.ps.EndInvoke($j.h))
            } catch {
                $werr = "$_"
            }
            if ($out -and $out.Count -gt 0) {
                Send-Record ([string]$out[-1])
            } else {
                Send-Record (@{ kind = 'target'; i = $j.i; msg = "probe worker failed: $werr" } | ConvertTo-Json -Compress)
            }
            $j.ps.Dispose()
        }
    }
    Start-Sleep -Milliseconds 50
}
foreach ($j in $jobs) {
    if (-not $j.done) {
        Send-Record (@{ kind = 'target'; i = $j.i; deadline = $true } | ConvertTo-Json -Compress)
    }
}
Send-Record (@{ kind = 'done'; count = $targets.Count } | ConvertTo-Json -Compress)
if ($left -gt 0) {
    # A request stuck past the deadline would keep the runspace pool, and the process, alive.
    [Environment]::Exit(0)
}
$pool.Close()
exit 0
