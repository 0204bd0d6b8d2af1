"""Every code block of README.md and docs/ runs as written (see tests/_docblocks.py).

One test per block, with ids like ``docs/mesh.md:42``; a block marked
``<!-- not-run: REASON -->`` is not run; a test checks that each such marker gives its reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _docblocks import (
    ROOT,
    Block,
    all_blocks,
    blocks_of,
    commands_of,
    is_mesh_config,
    kind,
    page_files,
    placeholder_env,
    squash,
)
from _system import require_program
from state.redis_server import RedisServer

from meshlite.config._check import EXIT_OK, run_check

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if kind(b) is not None]
# Blocks marked not-run are not test items (a skip fails under CI=true); the test
# below checks that each one says why.
RUN = [b for b in RUNNABLE if b.not_run is None]
TIMEOUT = 90
PYTEST_INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESHLITE_", "OTEL_", "PYTEST_", "REDIS_"))}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def _workdir(block: Block, tmp_path: Path) -> Path:
    for name, text in page_files(block.page).items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return tmp_path


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=_env(env or {}), capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


@contextlib.contextmanager
def _services(block: Block) -> Iterator[dict[str, str]]:
    """What a ``<!-- needs: redis -->`` block gets: a redis-server, as ``REDIS_URL``."""
    needs = set(block.markers.get("needs", "").replace(",", " ").split())
    unknown = needs - {"redis"}
    assert not unknown, f"{block.id}: unknown needs {unknown} (known: redis)"
    if "redis" not in needs:
        yield {}
        return
    server = RedisServer(require_program("redis-server", "redis-server")).start()
    try:
        yield {"REDIS_URL": server.url}
    finally:
        server.close()


def _run_python(block: Block, cwd: Path) -> None:
    script = cwd / "doc_block.py"
    script.write_text(block.text, encoding="utf-8")
    with _services(block) as env:
        done = _run([sys.executable, str(script)], cwd, env)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"


def _run_pytest(block: Block, cwd: Path) -> None:
    (cwd / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    (cwd / "test_doc_block.py").write_text(block.text, encoding="utf-8")
    with _services(block) as env:
        done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     "test_doc_block.py"], cwd, env)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
    assert " passed" in done.stdout, done.stdout
    assert " skipped" not in done.stdout, done.stdout


def _check_config(block: Block, cwd: Path) -> None:
    ext = "yaml" if block.lang == "yml" else block.lang
    path = cwd / (block.file_name or f"mesh.{ext}")
    path.write_text(block.text, encoding="utf-8")
    out = io.StringIO()
    code = run_check(str(path), out, environ=placeholder_env(block.text))
    assert code == EXIT_OK, f"{block.id} is not a valid mesh config:\n{out.getvalue()}"


def _config_above(block: Block) -> Block | None:
    """The nearest mesh config block above ``block`` on its page."""
    above = [b for b in blocks_of(ROOT / block.page) if b.line < block.line and is_mesh_config(b)]
    return above[-1] if above else None


def _run_commands(block: Block, cwd: Path) -> None:
    for command in commands_of(block):
        if command.argv[0] == "check" and len(command.argv) > 1:
            target = cwd / command.argv[-1]
            config = _config_above(block)
            if not target.exists() and config is not None:   # no `file:` block of that name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(config.text, encoding="utf-8")
        done = _run([sys.executable, "-m", "meshlite", *command.argv], cwd)
        printed = {squash(line) for line in (done.stdout + done.stderr).splitlines()}
        if not command.shown:
            assert done.returncode == 0, f"meshlite {command.argv}: {done.stderr}"
        missing = [line for line in command.shown if squash(line) not in printed]
        assert not missing, (f"{block.id}: `meshlite {' '.join(command.argv)}` did not "
                             f"print {missing}; it printed:\n{done.stdout}{done.stderr}")


RUNNERS = {"python": _run_python, "pytest": _run_pytest, "config": _check_config,
           "commands": _run_commands}


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_doc_block(block: Block, tmp_path: Path) -> None:
    block_kind = kind(block)
    assert block_kind is not None
    RUNNERS[block_kind](block, _workdir(block, tmp_path))


def test_every_not_run_marker_gives_a_reason() -> None:
    unexplained = [b.id for b in BLOCKS if "not-run" in b.markers and not b.not_run]
    assert not unexplained, f"<!-- not-run: REASON --> needs a reason: {unexplained}"


def test_every_python_block_is_collected() -> None:
    python = [b for b in BLOCKS if b.lang == "python"]
    assert len(python) > 50
    assert all(b in RUNNABLE for b in python)
    assert {b.page for b in python} >= {"README.md", "docs/mesh.md", "docs/testing.md"}


SAMPLE = '''# A page

<!-- not-run: needs a database -->
```python
import db
```

<!-- file: mesh.yaml -->
```yaml
services:
  users: {backends: ["http://127.0.0.1:8001"]}
```

- in a list:

  ```python
  print("indented")
  ```

```console
$ docker run jaeger
$ meshlite check mesh.yaml
mesh.yaml: valid,   1 service
$ meshlite demo
```

```yaml
alerts: {rules: []}
```

```yaml
services:
  app: {image: "shop:1.0", ports: ["8000:8000"]}
```
'''


def test_the_collector_reads_markers_kinds_and_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(SAMPLE, encoding="utf-8")
    skipped, config, indented, console, fragment, compose = blocks_of(page, "docs/page.md")
    assert skipped.id == "docs/page.md:4"
    assert skipped.not_run == "needs a database"
    assert (kind(config), config.file_name) == ("config", "mesh.yaml")
    assert (kind(indented), indented.text) == ("python", 'print("indented")\n')
    (command,) = commands_of(console)          # docker and demo are not run
    assert command.argv == ["check", "mesh.yaml"]
    assert [squash(line) for line in command.shown] == ["mesh.yaml: valid, 1 service"]
    assert kind(fragment) is None              # no `services`: not a complete config
    assert kind(compose) is None               # a Docker Compose file


def test_placeholders_fit_hosts_and_tokens() -> None:
    env = placeholder_env("url: http://${USERS_HOST}:8001\ntoken: ${DASHBOARD_TOKEN:-x}")
    assert env["USERS_HOST"] == "127.0.0.1"
    assert len(env["DASHBOARD_TOKEN"]) >= 16
    assert " " not in env["DASHBOARD_TOKEN"]
