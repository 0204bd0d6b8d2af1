"""Credentials in an http(s) backend address (``http://user:password@host``) are
refused: meshlite's HTTP clients do not send them as authentication (aiohttp's wire
put them in the ``Host`` header), and the address is shown in snapshots, metrics
labels, logs, error messages and the dashboard."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import meshlite as ml
from meshlite.config._check import run_check

SECRET = "hunter2-not-for-logs"


@pytest.mark.parametrize("address", [
    f"http://app:{SECRET}@127.0.0.1:8001",
    f"https://{SECRET}@127.0.0.1:8443/v1",
    f"HTTP://app:{SECRET}@127.0.0.1",
])
def test_an_http_address_with_credentials_is_refused_without_showing_them(
        address: str) -> None:
    with pytest.raises(ml.ConfigError, match=r"Backend: address .*credentials") as info:
        ml.Backend(address)
    assert SECRET not in str(info.value)
    assert "headers=" in str(info.value)
    with pytest.raises(ml.ConfigError) as info:
        ml.Service("users", [address])
    assert SECRET not in str(info.value)


def test_other_addresses_are_the_call_functions_business() -> None:
    assert ml.Backend("postgres://app:pw@127.0.0.1/db").address.startswith("postgres://")
    assert ml.Backend("http://127.0.0.1:8001/a@b").address == "http://127.0.0.1:8001/a@b"


def test_a_config_with_credentials_in_a_backend_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("services:\n  users: {backends: [\"http://app:${PASSWORD}@127.0.0.5:8001\"]}\n")
    out = io.StringIO()
    assert run_check(str(path), out, environ={"PASSWORD": SECRET}) == 2
    assert "credentials" in out.getvalue()
    assert SECRET not in out.getvalue()
    with pytest.raises(ml.ConfigError) as info:
        ml.Mesh.from_config(path, environ={"PASSWORD": SECRET})
    assert SECRET not in str(info.value)
