"""Fixtures shared by the whole suite.

`lab` is the test fleet (see `auditor_lab`): real network namespaces with their own sshd,
built once per session on first use and always removed at the end. Labs are machine-wide
(one bridge, one subnet), so a session holds a lock on the lab while it uses one, and tests
marked `lab_exclusive` (they build and remove labs of their own) run before the shared lab
exists.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings
from hypothesis.errors import InvalidArgument

if TYPE_CHECKING:
    from auditor_lab import LabInfo

LAB_LOCK = Path("/run/auditor-lab/tests.lock")
LOCK_WAIT = 600.0
EXCLUSIVE = "lab_exclusive"

_shared_lab_up = False

# Property tests: a bounded run in `make test`, a long one with HYPOTHESIS_PROFILE=fuzz
# (`make fuzz`).
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
try:
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except InvalidArgument:
    settings.load_profile("ci")


_DATA_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Every `audit` a test runs records into a history; without this it would be the
    # developer's own ($XDG_DATA_HOME or ~/.local/share). Subprocesses inherit it.
    import tempfile

    _DATA_HOME.append(tempfile.mkdtemp(prefix="auditor-tests-data-"))
    os.environ["XDG_DATA_HOME"] = _DATA_HOME[0]
    config.addinivalue_line(
        "markers",
        f"{EXCLUSIVE}: builds and removes labs of its own (runs before the shared lab exists)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    for path in _DATA_HOME:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: exclusive lab tests first, everything else in its usual order. The
    # shared lab is built lazily, so these never tear it down under another test.
    items.sort(key=lambda item: item.get_closest_marker(EXCLUSIVE) is None)


@pytest.fixture(scope="session")
def lab_machine() -> Iterator[None]:
    """This machine's lab, for this session alone; skips where the lab cannot run."""
    from auditor_lab import preflight

    problems = preflight()
    if problems:
        pytest.skip("the lab cannot run here: " + "; ".join(problems))
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LAB_LOCK, "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held the lab for {LOCK_WAIT:.0f}s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def lab(lab_machine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """The design fleet, up for the whole session (see `auditor_lab.spec.design_hosts`)."""
    global _shared_lab_up
    from auditor_lab import lab_down, lab_up

    directory = tmp_path_factory.mktemp("lab")
    done = False

    def down() -> None:
        nonlocal done
        if not done:
            done = True
            lab_down(directory)

    # Belt and braces: the finally below runs on failures and Ctrl-C; atexit covers an
    # interpreter that stops without finishing fixture teardown.
    atexit.register(down)
    _shared_lab_up = True
    try:
        yield lab_up(directory)
    finally:
        _shared_lab_up = False
        down()
        atexit.unregister(down)


@pytest.fixture
def lab_slot(lab_machine: None) -> None:
    """For `lab_exclusive` tests: the machine's lab, with no shared lab up to disturb."""
    if _shared_lab_up:
        pytest.skip("the shared lab is up; lab_exclusive tests must run before it is built")
