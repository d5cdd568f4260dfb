"""The corpus read by us and by the real `ansible-inventory` gives the same inventory.

Each corpus file is run once through `ansible-inventory -i FILE --list` (and a few through
`--graph` and `--list --limit`); all runs start together on a thread pool when the module
starts, as each costs about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from auditor.inventory import load_inventory
from tests.inventory.oracle import AnsibleWorker, assert_same_listing, run_cli

CORPUS = Path(__file__).with_name("corpus")
EXAMPLES = Path(__file__).parents[2] / "inventories"
# The corpus, and the example inventories shipped to users.
FILES = [
    *sorted(p for p in CORPUS.iterdir() if p.suffix in (".ini", ".yml", ".yaml", ".json")),
    EXAMPLES / "example.ini",
    EXAMPLES / "example.yml",
]
GRAPH_FILES = ["03_nested_children.ini", "30_basic.yml"]
LIMIT_FILE = "03_nested_children.ini"
LIMITS = [
    "web",  # a group: its hosts and its children's
    "db1.dc1.example.com",  # a host
    "web0*",  # a glob over host names
    "dc1_db:canary",  # union with ':'
    "dc1_db,db2.dc2.example.com",  # union with ','
    "web:&dc2",  # intersection
    "prod:!dc1_web",  # exclusion
    "~^db[0-9]",  # a regex
    "dc1_web[1:2]",  # a subscript
    "!web",  # only an exclusion: from all
]
# The command itself checks a few; the in-process worker (same ansible-core code) all.
CLI_LIMITS = ["web:&dc2", "prod:!dc1_web", "~^db[0-9]"]

Job = tuple[str, ...]


def _job_for(path: Path, *extra: str) -> tuple[str, Job]:
    """Which plugin reads `path`, and the arguments that list it."""
    if path.suffix == ".ini":
        return "ini", ("-i", str(path), *extra)
    if path.suffix == ".json":
        document = json.loads(path.read_text())
        if "_meta" in document or any(isinstance(v, list) for v in document.values()):
            # `--list` output is what an inventory script prints: run it as one.
            return "script", ("-i", str(path.with_suffix(".sh")), *extra)
    return "yaml", ("-i", str(path), *extra)


@pytest.fixture(scope="module")
def oracle(
    ansible_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Job, Future[subprocess.CompletedProcess[str]]]]:
    scripts = tmp_path_factory.mktemp("scripts")
    jobs: list[tuple[str, Job]] = []
    for path in FILES:
        if path.suffix == ".json":
            # An executable that prints the file, for the `script` inventory plugin.
            wrapper = scripts / path.with_suffix(".sh").name
            wrapper.write_text(f"#!/bin/sh\nexec cat '{path}'\n")
            wrapper.chmod(0o755)
        jobs.append(_job_for(path, "--list"))
    jobs += [_job_for(CORPUS / name, "--graph") for name in GRAPH_FILES]
    jobs += [_job_for(CORPUS / LIMIT_FILE, "--list", "--limit", limit) for limit in CLI_LIMITS]

    def script_path(args: Job) -> Job:
        return tuple(str(scripts / Path(a).name) if a.endswith(".sh") else a for a in args)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            args: pool.submit(run_cli, ansible_home / f"cli{n}", enabled, *script_path(args))
            for n, (enabled, args) in enumerate(jobs)
        }
        yield futures
        for future in futures.values():
            future.cancel()


def _ansible(oracle: dict[Job, Future[subprocess.CompletedProcess[str]]], job: Job) -> str:
    result = oracle[job].result()
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_listing_matches_ansible_inventory(
    path: Path, oracle: dict[Job, Future[subprocess.CompletedProcess[str]]]
) -> None:
    ours = load_inventory(path).to_ansible_list()
    theirs = json.loads(_ansible(oracle, _job_for(path, "--list")[1]))
    assert_same_listing(ours, theirs)


@pytest.mark.parametrize("name", GRAPH_FILES)
def test_graph_matches_ansible_inventory(
    name: str, oracle: dict[Job, Future[subprocess.CompletedProcess[str]]]
) -> None:
    path = CORPUS / name
    theirs = _ansible(oracle, _job_for(path, "--graph")[1])
    assert load_inventory(path).graph() == theirs.rstrip("\n")


@pytest.mark.parametrize("limit", CLI_LIMITS)
def test_limit_matches_ansible_inventory(
    limit: str, oracle: dict[Job, Future[subprocess.CompletedProcess[str]]]
) -> None:
    path = CORPUS / LIMIT_FILE
    ours = load_inventory(path).limit(limit).to_ansible_list()
    theirs = json.loads(_ansible(oracle, _job_for(path, "--list", "--limit", limit)[1]))
    assert_same_listing(ours, theirs)


@pytest.mark.parametrize("limit", LIMITS)
def test_limit_matches_ansible_subset(limit: str, ansible_worker: AnsibleWorker) -> None:
    path = CORPUS / LIMIT_FILE
    ours = load_inventory(path).limit(limit).to_ansible_list()
    assert_same_listing(ours, ansible_worker.list(path, limit)["ok"])


def test_corpus_is_big_enough() -> None:
    assert sum(p.suffix == ".ini" for p in FILES) >= 15
    assert any(p.suffix == ".yml" for p in FILES)
    assert any(p.suffix == ".json" for p in FILES)


def test_worker_answers_like_the_command(
    ansible_worker: AnsibleWorker, oracle: dict[Job, Future[subprocess.CompletedProcess[str]]]
) -> None:
    """The in-process oracle the property tests use agrees with the real command."""
    for name in ("03_nested_children.ini", "10_literal_types.ini"):
        path = CORPUS / name
        theirs = json.loads(_ansible(oracle, _job_for(path, "--list")[1]))
        assert_same_listing(ansible_worker.list(path)["ok"], theirs)
