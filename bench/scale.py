"""The scale scenario: a big inventory of real lab hosts among lab addresses that refuse or
black-hole SSH, made real with one nft table in the root namespace.

Every address used is inside the lab's 10.213.0.0/16, which the lab routes onto its own
bridge. The nft table rejects (tcp reset) or drops TCP 22 to the refusing and black-holed
ranges in the *output* hook, so the SYN is never sent; a catch-all rule drops anything else
to those ranges, and a postrouting counter proves that no packet to them got past output.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
REFUSE_NET = ipaddress.IPv4Network("10.213.64.0/18")
BLACKHOLE_NET = ipaddress.IPv4Network("10.213.128.0/18")
NFT_FAMILY = "inet"
NFT_TABLE = "audlab_bench"
"""Starts with the lab prefix, so `lab_down` sweeps it too should the bench die."""
PER_SUBNET = 250  # x.y.z.1 .. x.y.z.250: no .0 or .255 look-alikes


@dataclass(frozen=True)
class ScaleHost:
    name: str
    address: str
    kind: str  # "lab", "refuse" or "blackhole"


def _address(network: ipaddress.IPv4Network, index: int) -> str:
    base = int(network.network_address)
    value = base + (index // PER_SUBNET) * 256 + 1 + index % PER_SUBNET
    address = ipaddress.IPv4Address(value)
    if address not in network:
        raise ValueError(f"index {index} does not fit in {network}")
    return str(address)


def plan_hosts(lab: Sequence[tuple[str, str]], total: int) -> list[ScaleHost]:
    """`total` hosts: the given (name, address) lab hosts spread evenly through the list, and
    the rest alternating refuse / black-hole (so half each, give or take one)."""
    if total < len(lab):
        raise ValueError("total must be at least the number of lab hosts")
    others = total - len(lab)
    kinds: list[ScaleHost] = []
    refuse = blackhole = 0
    for i in range(others):
        if i % 2 == 0:
            kinds.append(ScaleHost(f"rf-{refuse + 1:05d}", _address(REFUSE_NET, refuse), "refuse"))
            refuse += 1
        else:
            kinds.append(
                ScaleHost(
                    f"bh-{blackhole + 1:05d}", _address(BLACKHOLE_NET, blackhole), "blackhole"
                )
            )
            blackhole += 1
    hosts: list[ScaleHost] = []
    step = total / len(lab) if lab else 0.0
    slots = {round(k * step) for k in range(len(lab))}
    lab_iter = iter(lab)
    other_iter = iter(kinds)
    for position in range(total):
        if position in slots:
            name, address = next(lab_iter)
            hosts.append(ScaleHost(name, address, "lab"))
        else:
            hosts.append(next(other_iter))
    return hosts


CAPACITY = (REFUSE_NET.num_addresses // 256) * PER_SUBNET
"""Distinct addresses per range; a bigger fleet reuses them (one address, several names)."""


def plan_mix(refuse: int, blackhole: int) -> list[ScaleHost]:
    """`refuse` refusing and `blackhole` black-holed hosts and no real ones, the black holes
    spread evenly through the list; addresses repeat once a range is used up (a host's
    name, not its address, makes it a host of the inventory)."""
    total = refuse + blackhole
    step = total / blackhole if blackhole else 0.0
    slots = {round(k * step) for k in range(blackhole)}
    hosts: list[ScaleHost] = []
    made = {"refuse": 0, "blackhole": 0}
    for position in range(total):
        kind = "blackhole" if position in slots else "refuse"
        index = made[kind]
        made[kind] += 1
        net, prefix = (BLACKHOLE_NET, "bh") if kind == "blackhole" else (REFUSE_NET, "rf")
        hosts.append(ScaleHost(f"{prefix}-{index + 1:06d}", _address(net, index % CAPACITY), kind))
    return hosts


GROUPS = {"lab": "lab_hosts", "refuse": "refused", "blackhole": "blackholed"}


def inventory_text(hosts: Sequence[ScaleHost], key: str, user: str = "root") -> str:
    """An Ansible INI inventory: every host (in order) in [fleet], plus one group per kind."""
    lines = ["# bench scale scenario, written by bench/run.py", "[fleet]"]
    lines += [f"{h.name} ansible_host={h.address}" for h in hosts]
    for kind, group in GROUPS.items():
        lines += ["", f"[{group}]"]
        lines += [h.name for h in hosts if h.kind == kind]
    lines += [
        "",
        "[fleet:vars]",
        f"ansible_user={user}",
        "ansible_connection=ssh",
        f"ansible_ssh_private_key_file={key}",
    ]
    return "\n".join(lines) + "\n"


def nft_ruleset() -> str:
    """The bench's root-namespace table (loaded with `nft -f -`)."""
    both = f"{{ {REFUSE_NET}, {BLACKHOLE_NET} }}"
    return (
        f"table {NFT_FAMILY} {NFT_TABLE} {{\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority 0; policy accept;\n"
        f'\t\tip daddr {REFUSE_NET} tcp dport 22 counter reject with tcp reset comment "refuse"\n'
        f'\t\tip daddr {BLACKHOLE_NET} tcp dport 22 counter drop comment "blackhole"\n'
        f'\t\tip daddr {both} counter drop comment "catchall"\n'
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype filter hook postrouting priority 100; policy accept;\n"
        f'\t\tip daddr {both} counter drop comment "leak"\n'
        "\t}\n"
        "}\n"
    )


def _nft(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nft", *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


def route_device(address: str) -> str:
    """The device the kernel would send `address` through (`ip route get`)."""
    out = subprocess.run(
        ["ip", "-j", "route", "get", address],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    try:
        return str(json.loads(out.stdout)[0].get("dev", ""))
    except (ValueError, IndexError, KeyError):
        return ""


def apply_rules(bridge: str) -> None:
    """Install the table, after checking both ranges are routed onto the lab bridge."""
    for net in (REFUSE_NET, BLACKHOLE_NET):
        dev = route_device(str(net.network_address + 1))
        if dev != bridge:
            raise RuntimeError(f"{net} routes via {dev!r}, not the lab bridge {bridge}; refusing")
    remove_rules()
    done = _nft(["-f", "-"], nft_ruleset())
    if done.returncode != 0:
        raise RuntimeError(f"nft -f failed: {done.stderr.strip()}")


def remove_rules() -> None:
    _nft(["delete", "table", NFT_FAMILY, NFT_TABLE])


def counters_from_json(doc: dict[str, Any]) -> dict[str, int]:
    """Packets counted by each commented rule of `nft -j list table`."""
    found: dict[str, int] = {}
    for item in doc.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule:
            continue
        comment = rule.get("comment", "")
        for expr in rule.get("expr", []):
            if isinstance(expr, dict) and "counter" in expr:
                found[comment] = int(expr["counter"].get("packets", 0))
    return found


def read_counters() -> dict[str, int]:
    out = _nft(["-j", "list", "table", NFT_FAMILY, NFT_TABLE])
    if out.returncode != 0:
        return {}
    return counters_from_json(json.loads(out.stdout))


def neighbours() -> int:
    """Neighbour (ARP) entries for the two ranges: none may exist, as nothing was sent."""
    count = 0
    for net in (REFUSE_NET, BLACKHOLE_NET):
        out = subprocess.run(
            ["ip", "neigh", "show", "to", str(net)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        count += len([line for line in out.stdout.splitlines() if line.strip()])
    return count


# --- checking the reports ----------------------------------------------------------------------


def count_names(names: Sequence[str], expected: Sequence[str]) -> dict[str, int]:
    """How `names` (one per host, as a report lists them) match the inventory's."""
    from collections import Counter

    seen = Counter(names)
    want = set(expected)
    return {
        "listed": len(names),
        "distinct": len(seen),
        "duplicates": sum(1 for c in seen.values() if c > 1),
        "missing": len(want - set(seen)),
        "unexpected": len(set(seen) - want),
    }


def json_report_names(path: Path) -> list[str]:
    doc = json.loads(path.read_text())
    return [h["host"]["name"] for h in doc["hosts"]]


def csv_report_names(path: Path, targets: int) -> tuple[list[str], int]:
    """One name per host from report.csv (which has one row per host x URL), and the number
    of (host, url) rows that are not exactly once. Read row by row; only counters are kept."""
    import csv
    from collections import Counter

    pairs: Counter[tuple[str, str]] = Counter()
    per_host: Counter[str] = Counter()
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            pairs[(row["host"], row["url"])] += 1
            per_host[row["host"]] += 1
    bad_pairs = sum(1 for c in pairs.values() if c != 1)
    bad_hosts = sum(1 for c in per_host.values() if c != targets)
    names = list(per_host)
    # a host listed with the wrong number of rows shows up as a duplicate
    names += [n for n, c in per_host.items() if c != targets]
    return names, bad_pairs + bad_hosts


def junit_report_names(path: Path, urls: Sequence[str]) -> dict[str, list[str]]:
    """Per URL testsuite of junit.xml, the testcase names (read element by element)."""
    import xml.etree.ElementTree as ET

    found: dict[str, list[str]] = {url: [] for url in urls}
    suite: str | None = None
    # The auditor's own output, written by this bench run: not untrusted input.
    for event, element in ET.iterparse(path, events=("start", "end")):  # noqa: S314
        if event == "start" and element.tag == "testsuite":
            suite = element.get("name")
        elif event == "end" and element.tag == "testcase":
            if suite in found:
                found[suite].append(element.get("name", ""))
            element.clear()
    return found


def html_report_names(path: Path) -> list[str] | None:
    """Host names from the HTML report's embedded data (None if the page has none)."""
    text = path.read_text(encoding="utf-8")
    start_tag = '<script type="application/json" id="audit-data">'
    start = text.find(start_tag)
    if start < 0:
        return None
    end = text.find("</script>", start)
    data = json.loads(text[start + len(start_tag) : end])
    return [row[0] for row in data.get("a", [])] + [row[0] for row in data.get("u", [])]
