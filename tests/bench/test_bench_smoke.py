"""Smoke tests of the benchmark harness's pure functions (no lab, no timing assertions).

The figures themselves come from `make bench`; these only check that the harness builds the
right inventories, rules, commands and tables, and reads reports and counters correctly.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

import pytest

from bench import measure, profiling, run, scale


def _m(
    label: str, wall: float, cpu: float, rss: float = 50.0, **extra: float
) -> measure.Measurement:
    return measure.Measurement(
        label=label,
        wall=wall,
        user=cpu * 0.75,
        system=cpu * 0.25,
        maxrss_mb=rss,
        tree_pss_mb=rss / 2,
        tree_procs=1,
        returncode=0,
        extra=dict(extra),
    )


# --- measure ---------------------------------------------------------------------------------


def test_parse_stat_survives_odd_command_names() -> None:
    # pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17) ... starttime(22)
    fields = ["S", "42"] + ["0"] * 9 + ["11", "12", "13", "14"] + ["0"] * 4 + ["999"]
    line = "1234 (sshd: root (priv) x) " + " ".join(fields) + " 0 0\n"
    assert measure.parse_stat(line) == (42, 11, 12, 13, 14, 999)


def test_median_and_summary() -> None:
    assert measure.median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        measure.median([])
    runs = [
        _m("a", 10.0, 2.0, server_cpu=20.0),
        _m("a", 12.0, 4.0, server_cpu=40.0),
        _m("a", 11.0, 3.0, server_cpu=30.0),
    ]
    s = measure.summarize(runs, hosts=200)
    assert s["wall"] == 11.0
    assert s["cpu"] == 3.0
    assert s["cpu_ms_per_host"] == 15.0
    assert s["server_cpu_ms_per_host"] == 150.0
    assert s["runs"] == 3
    d = runs[0].as_dict(200)
    assert d["cpu_ms_per_host"] == 10.0 and "stdout" not in d


def test_fixed_and_marginal_split() -> None:
    split = run.fixed_and_marginal(0.5, 10, 2.4, 200)
    assert split["marginal_ms_per_host"] == 10.0
    assert split["fixed_s"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        run.fixed_and_marginal(1.0, 10, 1.0, 10)


# --- the scale scenario ------------------------------------------------------------------------


def test_plan_hosts_spreads_lab_hosts_and_stays_in_the_lab_network() -> None:
    lab = [(f"scale-{i:04d}", f"10.213.2.{i}") for i in range(1, 21)]
    hosts = scale.plan_hosts(lab, 2000)
    assert len(hosts) == 2000
    kinds = {k: [h for h in hosts if h.kind == k] for k in ("lab", "refuse", "blackhole")}
    assert len(kinds["lab"]) == 20
    assert len(kinds["refuse"]) == len(kinds["blackhole"]) == 990
    assert len({h.name for h in hosts}) == len({h.address for h in hosts}) == 2000
    for h in hosts:
        address = ipaddress.ip_address(h.address)
        assert address in scale.LAB_NETWORK
        assert h.address.rsplit(".", 1)[1] not in ("0", "255")
    assert all(ipaddress.ip_address(h.address) in scale.REFUSE_NET for h in kinds["refuse"])
    assert all(ipaddress.ip_address(h.address) in scale.BLACKHOLE_NET for h in kinds["blackhole"])
    positions = [i for i, h in enumerate(hosts) if h.kind == "lab"]
    assert positions[0] == 0 and positions[-1] > 1800  # spread through the list, not bunched


def test_plan_hosts_full_size_fits_the_ranges() -> None:
    lab = [(f"scale-{i:04d}", f"10.213.2.{i}") for i in range(1, 201)]
    hosts = scale.plan_hosts(lab, 20000)
    assert sum(h.kind == "blackhole" for h in hosts) == 9900
    with pytest.raises(ValueError):
        scale.plan_hosts(lab, 100)


def test_inventory_text_loads_with_the_right_groups(tmp_path: Path) -> None:
    from auditor.inventory import load_inventory

    lab = [("scale-0001", "10.213.2.1"), ("scale-0002", "10.213.2.2")]
    hosts = scale.plan_hosts(lab, 10)
    path = tmp_path / "scale.ini"
    path.write_text(scale.inventory_text(hosts, "/lab/id_ed25519"))
    inv = load_inventory(str(path))
    assert [h.name for h in inv.hosts] == [h.name for h in hosts]
    assert len(inv.limit("lab_hosts").hosts) == 2
    assert len(inv.limit("refused").hosts) == 4
    assert len(inv.limit("blackholed").hosts) == 4
    first = inv.hosts[0]
    assert first.address == "10.213.2.1" and first.user == "root"


def test_nft_ruleset_is_swept_by_the_lab_and_confined_to_the_lab_network() -> None:
    text = scale.nft_ruleset()
    assert scale.NFT_TABLE.startswith("audlab")  # lab_down removes it should the bench die
    assert f"table inet {scale.NFT_TABLE}" in text
    assert "hook output" in text and "reject with tcp reset" in text and "drop" in text
    assert 'comment "leak"' in text and "hook postrouting" in text
    for net in (scale.REFUSE_NET, scale.BLACKHOLE_NET):
        assert net.subnet_of(scale.LAB_NETWORK)
        assert str(net) in text
    assert not scale.REFUSE_NET.overlaps(scale.BLACKHOLE_NET)


def test_counters_from_nft_json() -> None:
    doc = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "audlab_bench"}},
            {
                "rule": {
                    "comment": "refuse",
                    "expr": [
                        {"match": {}},
                        {"counter": {"packets": 7, "bytes": 420}},
                        {"reject": {}},
                    ],
                }
            },
            {"rule": {"comment": "leak", "expr": [{"counter": {"packets": 0, "bytes": 0}}]}},
        ]
    }
    assert scale.counters_from_json(doc) == {"refuse": 7, "leak": 0}


def test_count_names() -> None:
    c = scale.count_names(["a", "b", "b", "x"], ["a", "b", "c"])
    assert c == {"listed": 4, "distinct": 3, "duplicates": 1, "missing": 1, "unexpected": 1}
    assert scale.count_names(["a", "b"], ["b", "a"])["duplicates"] == 0


def test_report_readers(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(
        json.dumps({"hosts": [{"host": {"name": "a"}}, {"host": {"name": "b"}}]})
    )
    assert scale.json_report_names(tmp_path / "report.json") == ["a", "b"]
    (tmp_path / "report.csv").write_text(
        "host,url,outcome\r\na,u1,reachable\r\na,u2,reachable\r\nb,u1,\r\nb,u2,\r\nb,u2,\r\n"
    )
    names, bad = scale.csv_report_names(tmp_path / "report.csv", 2)
    assert bad == 2  # (b, u2) twice, and b has 3 rows
    assert scale.count_names(names, ["a", "b"])["duplicates"] == 1
    data = {"a": [["a", "10.0.0.1"]], "u": [["b", "10.0.0.2"]]}
    (tmp_path / "report.html").write_text(
        '<html><script type="application/json" id="audit-data">'
        + json.dumps(data).replace("<", "\\u003c")
        + "</script></html>"
    )
    assert scale.html_report_names(tmp_path / "report.html") == ["a", "b"]
    (tmp_path / "bare.html").write_text("<html></html>")
    assert scale.html_report_names(tmp_path / "bare.html") is None


# --- commands and checks ------------------------------------------------------------------------


def test_ansible_is_isolated_and_checks_host_keys(tmp_path: Path) -> None:
    env = run.ansible_env(tmp_path / "home", Path("/lab/known_hosts"))
    assert "ANSIBLE_CONFIG" not in env
    assert env["HOME"] == str(tmp_path / "home")
    assert env["ANSIBLE_LOCAL_TEMP"].startswith(str(tmp_path / "home"))
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    args = env["ANSIBLE_SSH_ARGS"]
    assert "UserKnownHostsFile=/lab/known_hosts" in args
    assert "StrictHostKeyChecking=yes" in args and "ControlMaster=no" in args
    argv = run.ansible_argv(Path("/lab/lab.ini"), "scale", 50, run.URL)
    assert argv[1:4] == ["all", "-i", "/lab/lab.ini"]
    assert argv[argv.index("-f") + 1] == "50" and argv[argv.index("-m") + 1] == "raw"
    assert argv[argv.index("--limit") + 1] == "scale"
    command = argv[argv.index("-a") + 1]
    assert command.startswith("curl ") and command.endswith(run.URL)
    assert "--connect-timeout 5" in command and "--max-time 10" in command


def test_audit_and_floor_commands(tmp_path: Path) -> None:
    argv = run.audit_argv(
        Path("/i.ini"), Path("/kh"), run.URLS_5, tmp_path, 50, "scale", ["--connect-timeout", "5"]
    )
    assert argv.count("--url") == 5
    assert argv[argv.index("-f") + 1] == "50" and "-q" in argv
    assert argv[-2:] == ["--connect-timeout", "5"]
    job = run.floor_job([run.URL])
    assert job["command"] == "/bin/sh -s"
    stdin = base64.b64decode(job["stdin_b64"]).decode()
    assert run.URL in stdin and job["marker"].split()[1].split("\t")[0] in stdin
    fargv = run.floor_argv(Path("/h"), Path("/j"), Path("/k"), Path("/kh"), 50)
    assert fargv[1].endswith("bench/floor.py") and fargv[-2:] == ["--forks", "50"]


def test_floor_arguments() -> None:
    from bench import floor

    args = floor.parse_args(["--hosts", "h", "--job", "j", "--key", "k", "--known-hosts", "kh"])
    assert args.forks == 50 and args.user == "root"


def test_checks(tmp_path: Path) -> None:
    out = "a | CHANGED | rc=0 >>\n200\nb | CHANGED | rc=0 >>\n200\n"
    assert run.check_ansible(out, 2)[0]
    assert not run.check_ansible(out.replace("200", "000", 1), 2)[0]
    assert run.check_floor('{"hosts": 2, "ok": 2, "failed": 0, "errors": {}}\n', 2)[0]
    assert not run.check_floor("Traceback", 2)[0]
    summary = {"hosts": 2, "audited": 2, "targets": [{"reachable": 2}]}
    (tmp_path / "report.json").write_text(json.dumps({"summary": summary, "run": {"duration": 1}}))
    ok, _, info = run.check_audit(tmp_path, 2, 1)
    assert ok and info["duration"] == 1
    assert not run.check_audit(tmp_path, 3, 1)[0]
    assert not run.check_audit(tmp_path / "missing", 2, 1)[0]


def test_config_from_env() -> None:
    full = run.config_from_env({})
    quick = run.config_from_env({"BENCH_QUICK": "1"})
    assert (full.lab_hosts, full.scale_total, full.scale_forks) == (200, 20000, 1000)
    assert quick.lab_hosts < full.lab_hosts and quick.scale_total < full.scale_total
    assert full.results_path.name == "results.json"
    assert quick.results_path.name == "results-quick.json"


def test_targets_and_table() -> None:
    med = {
        "wall": 10.0,
        "cpu": 3.0,
        "cpu_ms_per_host": 15.0,
        "maxrss_mb": 50.0,
        "tree_pss_mb": 40.0,
        "server_cpu_ms_per_host": 150.0,
        "machine_busy_pct": 95.0,
        "runs": 3,
    }
    results = {
        "quick": False,
        "total_seconds": 600.0,
        "machine": run.machine_info(),
        "versions": {"python": "3.11", "openssh": "OpenSSH_9.2p1"},
        "compare": {
            "hosts": 200,
            "small_hosts": 10,
            "forks": 50,
            "repeats": 3,
            "all_checks_ok": True,
            "median": {k: med for k in ("auditor", "floor", "ansible", "auditor_5url")},
            "fixed_and_marginal_cpu": {"auditor": {"fixed_s": 0.4, "marginal_ms_per_host": 5.0}},
            "unloaded_latency": {
                "1url": {"median_host_seconds": 0.15},
                "5url": {"median_host_seconds": 0.25},
            },
            "ratios": {
                "cpu_per_host_auditor_over_floor": 1.1,
                "cpu_per_host_auditor_over_ansible": 0.05,
                "cpu_per_host_ansible_over_auditor": 20.0,
                "wall_auditor_over_floor": 1.0,
                "wall_auditor_over_ansible": 0.4,
                "wall_ansible_over_auditor": 2.5,
                "wall_5url_over_1url": 2.0,
                "marginal_cpu_per_host_auditor_over_floor": 1.0,
                "sshd_cpu_5url_over_1url": 3.3,
                "latency_5url_over_1url": 1.67,
            },
        },
        "help": {"median_ms": 70.0, "python_startup_ms": 25.0},
    }
    targets = run.evaluate_targets(results)
    met = {t["target"]: t["met"] for t in targets}
    assert met["client CPU/host vs floor"] is True
    assert met["5 URLs vs 1 URL wall"] is False
    assert met["audit --help"] is True
    results["targets"] = targets
    table = run.render_table(results)
    assert "SERVER-BOUND" in table and "PREDICTS A REAL FLEET" in table
    assert "[MISS] 5 URLs vs 1 URL wall" in table
    assert "1.67x" in table  # the unloaded latency ratio is shown


def test_thin_timeline_keeps_the_peak() -> None:
    timeline = [(i * 0.5, 1024 * (100 if i == 37 else i % 10)) for i in range(200)]
    thin = measure._thin(timeline, 20)
    assert len(thin) <= 22 and (18.5, 100.0) in thin
    assert measure._thin([], 10) == []


def test_profile_areas() -> None:
    assert profiling.area_of("/x/site-packages/asyncssh/connection.py", "f").startswith("asyncssh")
    assert profiling.area_of("/x/site-packages/asyncssh/crypto/chacha.py", "f") == (
        "asyncssh crypto wrappers"
    )
    assert profiling.area_of("/src/project/auditor/reporters/html.py", "f") == "auditor.reporters"
    assert profiling.area_of("~", "<method 'poll' of 'select.epoll' objects>").startswith("sys")
