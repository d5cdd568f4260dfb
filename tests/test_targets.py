"""Targets: the catalog, URL validation and targets files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.targets import (
    TargetLimits,
    catalog_targets,
    default_targets,
    load_targets_file,
    platform_targets,
    select_targets,
    validate_url,
)


def test_the_default_is_the_vendors_own_check_url() -> None:
    (target,) = default_targets()
    assert target.url == "https://cask.qg3.apps.qualys.com/status"
    assert target.verified


def test_catalog_marks_inferred_entries_and_names_sources() -> None:
    targets = catalog_targets()
    assert any(not t.verified for t in targets)
    assert all(t.source for t in targets)
    assert {t.category for t in targets} == {"CDN", "agent platform"}


def test_platform_selection_gives_cdn_and_agent_server() -> None:
    urls = [t.url for t in platform_targets("eu1")]
    assert urls == [
        "https://cask.qg1.apps.qualys.eu/status",
        "https://qagpublic.qg1.apps.qualys.eu/CloudAgent/",
    ]


def test_unknown_platform_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown platform 'XX1'"):
        platform_targets("XX1")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example/",
        "https://",
        "https://exa mple.com/",
        "https://example.com/\n",
        "https://example.com/$(id)\u200b",
        "https://user:pw@example.com/",
        "https://ex\u0430mple.com/",  # Cyrillic look-alike
        "https://example.com/'quote",
        'https://example.com/"q',
        "https://example.com/`id`",
        "https://bad_host!.com/",
        "javascript:alert(1)",
        "",
    ],
)
def test_bad_urls_are_refused_naming_them(url: str) -> None:
    with pytest.raises(InputError) as info:
        validate_url(url)
    assert str(info.value).startswith("--url: bad URL")


def test_targets_file_loads_with_expected_statuses(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(
        "- name: CDN\n  url: https://cask.qg3.apps.qualys.com/status\n  category: CDN\n"
        "- url: https://example.com/\n  expected_status: [200, '3xx']\n"
        "- https://plain.example.com/x\n"
    )
    a, b, c = load_targets_file(path)
    assert a.name == "CDN" and a.expected_status == (200,)
    assert b.expected_status[0] == 200 and 301 in b.expected_status
    assert c.url == "https://plain.example.com/x"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("- url: https://ok.example/\n- url: 'https://bad host/'\n", 2, "bad URL"),
        ("- url: https://ok.example/\n  colour: red\n", 1, "unknown target field"),
        ("- name: x\n", 1, "no 'url'"),
        ("- url: https://ok.example/\n  expected_status: 99\n", 1, "bad expected status"),
        ("targets: [\n", 2, "not valid YAML"),
    ],
)
def test_bad_targets_files_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_targets_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_unreadable_and_binary_targets_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_targets_file(tmp_path / "missing.yml")
    blob = tmp_path / "blob.yml"
    blob.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        load_targets_file(blob)


def test_selection_combines_and_dedupes_in_order() -> None:
    got = select_targets(
        ["US3"], ["https://cask.qg3.apps.qualys.com/status", "https://x.example/"], []
    )
    assert [t.url for t in got] == [
        "https://cask.qg3.apps.qualys.com/status",
        "https://qagpublic.qg3.apps.qualys.com/CloudAgent/",
        "https://x.example/",
    ]


def test_a_targets_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    line = "- https://example.com/" + "a" * 100 + "\n"
    path.write_text(line * (1024 * 1024 // len(line) + 1))
    with pytest.raises(InputError, match=r"big.yml: larger than 1048576 bytes"):
        load_targets_file(path)
    small = TargetLimits(max_file_bytes=len(line) * 3)
    path.write_text(line * 3)
    assert len(load_targets_file(path, small)) == 3
    path.write_text(line * 4)
    with pytest.raises(InputError, match="--max-targets-file-size"):
        load_targets_file(path, small)


def test_more_targets_than_the_cap_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.yml"
    path.write_text("".join(f"- https://h{i}.example/\n" for i in range(1001)))
    with pytest.raises(InputError, match=r"many.yml: more than 1000 targets"):
        load_targets_file(path)
    with pytest.raises(InputError, match="at most 2"):
        select_targets(
            [],
            ["https://a.example/", "https://b.example/", "https://c.example/"],
            [],
            TargetLimits(max_targets=2),
        )


def test_a_fifo_as_targets_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_targets_file(fifo)


def test_a_huge_bad_value_gives_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("- url: https://example.com/\n  expected_status: [" + "[1], " * 5000 + "]\n")
    with pytest.raises(InputError) as info:
        load_targets_file(path)
    assert len(str(info.value)) < 200 + len(str(path))
