"""``meshlite dashboard CONFIG`` takes its tokens from environment variables and
files, not only flags, and never repeats a token in an error."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meshlite.cli import ADMIN_TOKEN_VARIABLE, TOKEN_VARIABLE, main

READ = "cli-read-token-0123456789abcdef"
ADMIN = "cli-admin-token-0123456789abcdef"
CONFIG = "services:\n  users: {backends: ['http://127.0.0.1:80']}\n"
_TLS = ssl.create_default_context()
_MAIN = "import sys; from meshlite.cli import main; sys.exit(main())"


def test_tokens_from_the_environment_and_a_file(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    admin_file = tmp_path / "admin-token"
    admin_file.write_text(ADMIN + "\n")
    env = {**os.environ, TOKEN_VARIABLE: READ}
    env.pop(ADMIN_TOKEN_VARIABLE, None)
    argv = [sys.executable, "-c", _MAIN, "dashboard", str(config), "--port", "0",
            "--admin-token-file", str(admin_file)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("meshlite dashboard on http://127.0.0.1:"), line
            url = line.split()[3]
            with httpx.Client(base_url=url, trust_env=False, verify=_TLS) as c:
                assert c.get("/api/services").status_code == 401
                read = {"Authorization": f"Bearer {READ}"}
                admin = {"Authorization": f"Bearer {ADMIN}"}
                assert c.get("/api/services", headers=read).status_code == 200
                assert c.post("/api/admin/reload", headers=read).status_code == 403
                assert c.post("/api/admin/reload", headers=admin).status_code == 200
            child.send_signal(signal.SIGINT)
            out, errors = child.communicate(timeout=10)
            assert child.returncode == 0, errors
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    for text in (line, out, errors):
        assert READ not in text
        assert ADMIN not in text


def test_bad_tokens_exit_2_without_echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    monkeypatch.delenv(ADMIN_TOKEN_VARIABLE, raising=False)
    monkeypatch.setenv(TOKEN_VARIABLE, "short-secret")
    assert main(["dashboard", str(config), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{TOKEN_VARIABLE}: the token it gives must be" in err  # names where it was
    assert "short-secret" not in err

    monkeypatch.delenv(TOKEN_VARIABLE)
    missing = tmp_path / "nope"
    assert main(["dashboard", str(config), "--port", "0", "--token-file", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("short-secret\n")
    assert main(["dashboard", str(config), "--port", "0", "--token-file", str(short)]) == 2
    assert f"--token-file {short}: the token it gives must be" in capsys.readouterr().err
    assert main(["dashboard", str(config), "--port", "0", "--token", "short-secret"]) == 2
    assert "meshlite dashboard: --token: the token must be" in capsys.readouterr().err

    both = ["--token", READ, "--token-file", str(missing)]
    assert main(["dashboard", str(config), "--port", "0", *both]) == 2
    err = capsys.readouterr().err
    assert "meshlite dashboard: give --token or --token-file, not both" in err  # said once
    assert READ not in err

    monkeypatch.setenv(TOKEN_VARIABLE, READ)
    monkeypatch.setenv(ADMIN_TOKEN_VARIABLE, READ)
    assert main(["dashboard", str(config), "--port", "0"]) == 2
    err = capsys.readouterr().err  # named by where each came from, not by the API's names
    assert (f"meshlite dashboard: {TOKEN_VARIABLE} and {ADMIN_TOKEN_VARIABLE} give the "
            "same token") in err
    assert READ not in err
    admin_file = tmp_path / "admin"
    admin_file.write_text(READ + "\n")
    monkeypatch.delenv(ADMIN_TOKEN_VARIABLE)
    assert main(["dashboard", str(config), "--port", "0", "--token", READ,
                 "--admin-token-file", str(admin_file)]) == 2
    err = capsys.readouterr().err
    assert f"--token and --admin-token-file {admin_file} give the same token" in err
    assert READ not in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_by_a_signal_it_closes_the_mesh_and_exits_0(
        tmp_path: Path, stop: signal.Signals) -> None:
    # uvicorn raises the SIGTERM it shut down on again, whose default action would
    # kill the process before the mesh closes (no drain, no telemetry flush): -15.
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    argv = [sys.executable, "-c", _MAIN, "dashboard", str(config), "--port", "0"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().startswith("meshlite dashboard on ")
            child.send_signal(stop)
            _, errors = child.communicate(timeout=30)
            assert child.returncode == 0, errors
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_a_busy_port_exits_1_with_one_line_naming_the_address(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-c", _MAIN, "dashboard", str(config),
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    # Was "meshlite dashboard: [Errno 98] Address already in use": no address.
    assert done.stderr == (f"meshlite dashboard: cannot listen on 127.0.0.1:{port}: Address "
                           "already in use; pick another --port (0 picks a free one)\n")
