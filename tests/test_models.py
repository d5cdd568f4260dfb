"""`auditor.models`: a host's variables are a compact read-only mapping."""

from __future__ import annotations

import pytest

from auditor.models import Host, HostVars


def test_a_hosts_variables_read_back_as_given_and_cannot_be_changed() -> None:
    given = {"ansible_host": "10.0.0.1", "ansible_user": "root", "ansible_port": 2222}
    host = Host.from_vars("web-1", ("web",), given)
    assert dict(host.vars) == given and list(host.vars) == list(given)
    assert host.vars.get("ansible_password") is None and "ansible_user" in host.vars
    with pytest.raises(TypeError):
        host.vars["ansible_user"] = "admin"  # type: ignore[index]
    given["ansible_user"] = "admin"  # the host keeps what it was built with
    assert host.vars["ansible_user"] == "root"


def test_hosts_with_the_same_variable_names_share_them_and_keep_their_own_values() -> None:
    one = HostVars({"ansible_host": "10.0.0.1", "ansible_user": "a"})
    two = HostVars({"ansible_host": "10.0.0.2", "ansible_user": "b"})
    assert one._index is two._index  # one name table for the fleet
    assert (one["ansible_host"], two["ansible_host"]) == ("10.0.0.1", "10.0.0.2")
    with pytest.raises(AttributeError):
        Host.from_vars("x", (), {}).__dict__  # noqa: B018 - slotted: no per-host dict
