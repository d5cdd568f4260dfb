"""The design table and the files rendered from it (pure: no root, no lab needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from auditor_lab import render
from auditor_lab.services import load_config
from auditor_lab.spec import (
    CATALOG_NAMES,
    CDN_ADDRESS,
    INTERCEPT_ADDRESS,
    MAX_EXTRA_HOSTS,
    NETWORK,
    PLATFORM_DOMAINS,
    design_hosts,
    fleet,
    scale_hosts,
)

from auditor.outcomes import HostOutcome, Outcome

REPO = Path(__file__).resolve().parents[2]


def test_design_has_one_host_per_outcome_it_promises() -> None:
    outcomes = {h.name: h.outcome for h in design_hosts()}
    assert outcomes == {
        "direct": Outcome.REACHABLE,
        "jump": Outcome.REACHABLE,
        "reject": Outcome.REFUSED,
        "blackhole": Outcome.TIMEOUT,
        "nodns": Outcome.DNS_FAILURE,
        "viaproxy": Outcome.REACHABLE,
        "proxydeny": Outcome.PROXY_DENIED,
        "intercept": Outcome.TLS_FAILURE,
        "http503": Outcome.HTTP_ERROR,
        "nocurl": HostOutcome.PROBE_UNAVAILABLE,
        "sshdown": HostOutcome.UNREACHABLE,
        "noauth": HostOutcome.AUTH_FAILED,
        "rekeyed": HostOutcome.HOST_KEY_CHANGED,
        "pwauth": Outcome.REACHABLE,
    }
    assert all(h.address.startswith("10.213.1.") for h in design_hosts())


def test_addresses_are_unique_and_inside_the_lab_network() -> None:
    hosts = fleet(MAX_EXTRA_HOSTS)
    addresses = [h.address for h in hosts]
    assert len(set(addresses)) == len(addresses)
    assert len({h.name for h in hosts}) == len(hosts)
    assert all(h.address in map(str, NETWORK.hosts()) for h in hosts[:300])
    assert {CDN_ADDRESS, INTERCEPT_ADDRESS}.isdisjoint(addresses)
    assert not any(a.endswith((".0", ".255")) for a in addresses)
    with pytest.raises(ValueError):
        scale_hosts(MAX_EXTRA_HOSTS + 1)


def test_catalog_names_cover_cask_and_qagpublic_on_every_platform() -> None:
    for domain in PLATFORM_DOMAINS.values():
        assert f"cask.{domain}" in CATALOG_NAMES
        assert f"qagpublic.{domain}" in CATALOG_NAMES
    assert len(PLATFORM_DOMAINS) == 13
    assert "cdn.lab.test" in CATALOG_NAMES


def test_committed_lab_inventory_matches_the_design() -> None:
    committed = (REPO / "inventories" / "lab.ini").read_text()
    _header, body = committed.split("\n\n", 1)
    assert body == render.inventory(design_hosts(), "lab/id_ed25519")


def test_nft_rules_make_each_firewall_condition() -> None:
    rules = {h.name: render.nft_ruleset(h) for h in design_hosts() if h.nft_rules}
    assert set(rules) == {"reject", "blackhole", "viaproxy"}
    assert "ip daddr 10.213.0.1 tcp dport 443 reject with tcp reset" in rules["reject"]
    assert "ip daddr 10.213.0.1 tcp dport 443 drop" in rules["blackhole"]
    assert all("table inet audlab" in r for r in rules.values())


def test_services_refuse_to_bind_or_dial_outside_the_lab(tmp_path: Path) -> None:
    config = {
        "log": "x",
        "pid_file": "x",
        "ready_file": "x",
        "listeners": [{"name": "cdn", "kind": "http", "address": "127.0.0.1", "port": 443}],
    }
    path = tmp_path / "services.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="outside the lab network"):
        load_config(path)
    config["listeners"] = [
        {
            "name": "proxy",
            "kind": "connect-proxy",
            "address": "10.213.0.1",
            "port": 3128,
            "upstream": "192.0.2.1:443",
        }
    ]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"upstream: 192\.0\.2\.1 is outside"):
        load_config(path)


def test_lab_serves_every_host_name_in_the_built_in_catalog() -> None:
    targets = pytest.importorskip("auditor.targets")
    names = {t.hostname for t in targets.catalog_targets()}
    assert names and names <= set(CATALOG_NAMES)
