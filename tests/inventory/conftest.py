"""Fixtures for the inventory tests: hypothesis profiles and the ansible-core oracle."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.errors import InvalidArgument

from tests.inventory.oracle import AnsibleWorker


def _register_profile(name: str, **options: object) -> None:
    # Another conftest may have registered it already; never overwrite theirs.
    try:
        settings.get_profile(name)
    except InvalidArgument:
        settings.register_profile(name, **options)  # type: ignore[arg-type]


# `HYPOTHESIS_PROFILE=fuzz` (make fuzz) runs the property tests far longer.
_register_profile("fuzz", max_examples=5000, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    try:
        settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
    except InvalidArgument:
        pass


@pytest.fixture(scope="session")
def ansible_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME for ansible-core with no configuration in it."""
    return tmp_path_factory.mktemp("ansible-home")


@pytest.fixture(scope="session")
def ansible_worker(ansible_home: Path) -> Iterator[AnsibleWorker]:
    """ansible-core reading INI inventories."""
    worker = AnsibleWorker(ansible_home / "worker-ini", "ini")
    yield worker
    worker.close()


@pytest.fixture(scope="session")
def ansible_yaml_worker(ansible_home: Path) -> Iterator[AnsibleWorker]:
    """ansible-core reading YAML inventories."""
    worker = AnsibleWorker(ansible_home / "worker-yaml", "yaml")
    yield worker
    worker.close()


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide directory for files the property tests write (hypothesis reuses
    one test function for many examples, so function-scoped tmp_path does not fit)."""
    return tmp_path_factory.mktemp("inventory-scratch")
