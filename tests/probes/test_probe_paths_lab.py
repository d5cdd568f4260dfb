"""The POSIX probe's two ways of running curl, on real lab hosts (real sshd, real curl,
real refusals, interception, missing names, proxies and agent proxies): every URL in one
curl process, and one curl process per URL (the way a curl older than 7.75 goes), must give
every URL the same observation."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from auditor_lab import PROBE_URL, LabInfo
from auditor_lab.spec import CDN_ADDRESS, INTERCEPT_ADDRESS

from auditor.models import Connection, Host, Observation, Platform, Target
from auditor.outcomes import Outcome
from auditor.probes import ProbeSettings
from auditor.probes.posix import build_posix_job, parse_posix
from auditor.transports.base import SettingsSource
from auditor.transports.options import SSHSettings
from auditor.transports.ssh import SSHTransport

# Five URLs whose outcomes differ on one host: the CDN, a second CDN name, plain HTTP, a
# port where nothing listens, a name no hosts file holds, and the intercepting endpoint.
URLS = (
    PROBE_URL,
    "https://cdn.lab.test/status",
    "http://cask.qg1.apps.qualys.com/status",
    f"https://{CDN_ADDRESS}:3130/",
    "https://nowhere.lab.test/status",
    f"https://{INTERCEPT_ADDRESS}/status",
)
HOSTS = (
    "direct",
    "reject",
    "nodns",
    "intercept",
    "viaproxy",
    "proxydeny",
    "http503",
    "agentproxy",
    "agentdead",
    "agentfailover",
    "agentcreds",
)


def _facts(o: Observation) -> tuple[Any, ...]:
    # curl quotes milliseconds in some messages: different on every run.
    return (
        o.outcome,
        re.sub(r"\d+ (ms|milliseconds)", r"N \1", o.detail),
        o.http_status,
        o.exit_code,
        o.tool,
        o.tls_issuer,
        o.proxy,
        o.at_proxy,
        o.remote_ip,
        o.time_total is not None,
    )


def _probe(lab: LabInfo, names: tuple[str, ...], per_url: bool) -> dict[str, list[Observation]]:
    targets = [Target(url=u, name=u) for u in URLS]
    settings = ProbeSettings(connect_timeout=3, max_time=4, per_url=per_url)
    job = build_posix_job(targets, settings)
    hosts = [
        Host(
            name=n,
            address=lab.host(n).address,
            connection=Connection.SSH,
            platform=Platform.LINUX,
        )
        for n in names
    ]
    transport = SSHTransport(SSHSettings(user="root", keys=(lab.key,), known_hosts=lab.known_hosts))
    transport.prepare(hosts, SettingsSource())

    async def main() -> list[Any]:
        try:
            return list(await asyncio.gather(*(transport.run_job(h, job, 60) for h in hosts)))
        finally:
            await transport.close()

    raws = asyncio.run(main())
    return {
        n: list(parse_posix(raw, targets, settings.nonce).observations)
        for n, raw in zip(names, raws, strict=True)
    }


def test_one_process_and_per_url_give_every_url_the_same_observation(lab: LabInfo) -> None:
    one = _probe(lab, HOSTS, per_url=False)
    per_url = _probe(lab, HOSTS, per_url=True)
    for name in HOSTS:
        assert [_facts(o) for o in one[name]] == [_facts(o) for o in per_url[name]], name
    # The mix is real: each path saw every kind of answer these hosts give.
    seen = {o.outcome for obs in one.values() for o in obs}
    assert {
        Outcome.REACHABLE,
        Outcome.REFUSED,
        Outcome.DNS_FAILURE,
        Outcome.TLS_FAILURE,
        Outcome.PROXY_DENIED,
        Outcome.HTTP_ERROR,
    } <= seen
    direct = [o.outcome for o in one["direct"]]
    assert direct == [
        Outcome.REACHABLE,
        Outcome.REACHABLE,
        Outcome.REACHABLE,
        Outcome.REFUSED,
        Outcome.DNS_FAILURE,
        Outcome.TLS_FAILURE,
    ]
    assert "Contoso SSL Inspection CA" in one["direct"][5].tls_issuer
    # The agent's second proxy answered where its first is down, on both paths.
    assert "proxy 2 of 2" in one["agentfailover"][0].detail
    assert one["agentdead"][0].at_proxy
