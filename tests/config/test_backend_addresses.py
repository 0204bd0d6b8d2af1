"""A config's backend addresses: an http(s) base URL meshlite's HTTP clients can send to,
or ``host[:port]`` for a call function. Anything else is refused by ``meshlite check``,
at load and at hot reload (where the running config stays), naming the backend's path."""

from __future__ import annotations

import asyncio
import io
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.cli import main
from meshlite.config._check import EXIT_INVALID, EXIT_OK, run_check
from meshlite.config._load import load_config

BAD = {
    "ftp://x": "has the scheme 'ftp', not http or https",
    "http//x": "is neither an http(s) URL",
    "localhost:99999": "has a port that is not a number in 1..65535",
    "127.0.0.1:0": "has a port that is not a number in 1..65535",
    "http://127.0.0.1:0": "has a port that is not a number in 1..65535",
    "http://127.0.0.1:8001/v1?tenant=a": "has a query or fragment",
    "http://127.0.0.1:8001/#top": "has a query or fragment",
    "127.0.0.1:8001/v1": "is neither an http(s) URL",
    "http://exa mple:8001": "has the host 'exa mple', which is not a host name",
    ":8001": "has no host",
    "0[": "has an unbalanced [ or ] (an IPv6 host is written [::1])",
    "http://999.1.1.1:8001": "has the host '999.1.1.1', which is not a host name",
}

GOOD = ["http://127.0.0.1:8001", "https://users.internal", "http://127.0.0.1:8001/api/v2/",
        "http://[::1]:8001", "127.0.0.1:8001", "[::1]:9000", "::1", "grpc-node-1",
        "users.internal:7000"]


def config(address: str) -> str:
    # The bad one second, so the path names its index.
    return f"""
        services:
          users:
            backends: ["http://127.0.0.1:8000", {{url: "{address}", weight: 2}}]
    """


@pytest.mark.parametrize("address", list(BAD))
def test_check_refuses_an_address_no_client_can_use(write_config: Any, address: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(config(address))
    assert main(["check", path]) == EXIT_INVALID
    text = capsys.readouterr()
    shown = text.out + text.err
    assert "services.users.backends[1].url: must be an http(s) base URL" in shown
    assert "or host[:port] for mesh.call()" in shown
    assert BAD[address] in shown
    assert f"got {address!r}" in shown


@pytest.mark.parametrize("address", list(BAD))
def test_loading_refuses_it_with_every_problem_named(write_config: Any, address: str) -> None:
    path = write_config(config(address))
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ={})
    [error] = info.value.errors
    assert error.startswith("services.users.backends[1].url: must be ")
    assert BAD[address] in error
    with pytest.raises(ml.ConfigError, match=r"backends\[1\]\.url"):
        ml.Mesh.from_config(path, environ={})


@pytest.mark.parametrize("address", GOOD)
def test_urls_and_host_port_forms_are_accepted(write_config: Any, address: str) -> None:
    path = write_config(config(address))
    assert run_check(path, io.StringIO(), environ={}) == EXIT_OK
    mesh = ml.Mesh.from_config(path, environ={})
    assert [b.address for b in mesh.service("users").backends][1] == address


def test_an_address_from_the_environment_is_checked_and_stays_masked(
        write_config: Any) -> None:
    path = write_config(config("${USERS_ADDRESS}"))
    out = io.StringIO()
    assert run_check(path, out, environ={"USERS_ADDRESS": "ftp://files.internal"}) \
        == EXIT_INVALID
    assert "services.users.backends[1].url: must be an http(s) base URL" in out.getvalue()
    assert "files.internal" not in out.getvalue()


async def test_a_reload_with_a_bad_address_keeps_the_running_config(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(textwrap.dedent(config("http://127.0.0.1:8001")) + "hot_reload: true\n",
                    encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path))
    async with mesh:
        before = mesh.service("users")
        path.write_text(path.read_text(encoding="utf-8").replace(
            "http://127.0.0.1:8001", "localhost:99999"), encoding="utf-8")
        deadline = time.monotonic() + 10.0  # a bound: a reload takes tens of ms
        while not mesh.reload_errors:
            assert time.monotonic() < deadline, "the reload was not refused"
            await asyncio.sleep(0.01)
        [error] = mesh.reload_errors
        assert any(e.startswith("services.users.backends[1].url: must be an http(s) base "
                                "URL") and "localhost:99999" in e for e in error.errors)
        assert mesh.config_version == 0
        assert mesh.service("users") is before
        assert [b.address for b in before.backends] == ["http://127.0.0.1:8000",
                                                         "http://127.0.0.1:8001"]
