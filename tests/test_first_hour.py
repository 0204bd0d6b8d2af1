"""A new user's first hour: the wheel installed with no extra into a fresh virtual
environment, then what README.md and docs/getting-started.md show and the scripts of
examples/, each run as a file, as a reader pastes it.

A block or script that needs an extra must fail with the one error that names it, and
its page (the section above the block) or its docstring must have said which extra it
needs before the reader ran it. The pages name every extra, and say where the
commands they start with run. (tests/test_docs.py runs the same blocks with every
extra installed; tests/test_wheel.py checks the wheel's contents and its command.)
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from _docblocks import Block, blocks_of, is_pytest_module, page_files
from _system import on_ci
from _wheel import ROOT, build_wheel
from _wheel import run as _run

PAGES = ("README.md", "docs/getting-started.md")
"""What a new user reads, in this order, before the examples."""

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

MODULE_EXTRAS = {
    "httpx": "http", "urllib3": "http", "aiohttp": "aiohttp",
    "starlette": "dashboard", "uvicorn": "dashboard", "websockets": "dashboard",
    "httptools": "dashboard", "redis": "redis", "jwt": "jwt",
    "prometheus_client": "prometheus", "opentelemetry.sdk": "otlp",
    "tenacity": "interop", "pybreaker": "interop", "aiolimiter": "interop",
}
"""The extra that brings a module, for a block that imports one itself (``import
httpx``): its error names the module, not the extra."""

NOT_FOR_USERS = ("all", "docs", "dev")  # `all` names the others; docs and dev: the project's


def _user_extras() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [e for e in project["optional-dependencies"] if e not in NOT_FOR_USERS]


def _python_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks_of(ROOT / page)
            if b.lang == "python" and not b.not_run and "needs" not in b.markers
            and not is_pytest_module(b)]


def _section_above(block: Block) -> str:
    """The page's prose and blocks from the heading above ``block`` down to it."""
    lines = (ROOT / block.page).read_text(encoding="utf-8").splitlines()
    fenced = {n for b in blocks_of(ROOT / block.page)
              for n in range(b.line, b.line + len(b.text.splitlines()) + 2)}
    start = next((n for n in range(block.line - 1, 0, -1)
                  if n not in fenced and lines[n - 1].startswith("#")), 1)
    return "\n".join(lines[start - 1:block.line - 1])


def _says_it_needs(text: str, extra: str) -> bool:
    """Whether ``text`` tells the reader ``extra`` is needed (`` `http` extra``, ``the
    `dashboard` one``, ``meshlite-mesh[http,dashboard]``)."""
    name = re.escape(extra)
    return bool(re.search(rf"`+{name}`+ (extra|one)\b", text)
                or re.search(rf"meshlite-mesh\[[\w,]*\b{name}\b", text))


def _extras_wanted(stderr: str) -> set[str]:
    """The extras the last line of a failed run's error asks for: those it names
    (``pip install 'meshlite-mesh[http]'``), or the one bringing the module it could
    not import."""
    last = (stderr.strip().splitlines() or [""])[-1]
    if named := re.search(r"meshlite-mesh\[([\w,]+)\]", last):
        return set(named.group(1).split(","))
    if missing := re.search(r"^ModuleNotFoundError: No module named '([\w.]+)'$", last):
        module = missing.group(1)
        return {extra for name, extra in MODULE_EXTRAS.items()
                if module == name or module.startswith(f"{name}.")}
    return set()


@pytest.fixture(scope="module")
def base_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtual environment holding the wheel, no extra."""
    tmp = tmp_path_factory.mktemp("first_hour")
    wheel, _ = build_wheel(tmp)
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", venv], tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "--quiet", wheel], tmp, timeout=600)
    if installed.returncode != 0 and not on_ci():
        pytest.skip(f"cannot install the dependencies here: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    return python


def _check_run(done: subprocess.CompletedProcess[str], what: str, told: str) -> None:
    """``done`` succeeded, or failed for want of extras that ``told`` names."""
    if done.returncode == 0:
        return
    wanted = _extras_wanted(done.stderr)
    assert wanted, f"{what} fails without any extra missing:\n{done.stdout}{done.stderr}"
    assert not done.stderr.strip().splitlines()[-1].startswith("Traceback"), done.stderr
    unsaid = sorted(e for e in wanted if not _says_it_needs(told, e))
    assert not unsaid, (f"{what} needs the extras {unsaid} (its error says so), which the "
                        f"reader was not told before running it:\n{done.stderr}")


@pytest.mark.timeout(900)
def test_the_base_install_has_no_broken_requirements(base_python: Path, tmp_path: Path
                                                     ) -> None:
    done = _run([base_python, "-m", "pip", "check"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    imported = _run([base_python, "-W", "error", "-c", "import meshlite"], tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert not imported.stderr, imported.stderr  # no warning either


@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", _python_blocks(), ids=lambda b: b.id)
def test_a_page_block_runs_or_its_page_said_which_extra_it_needs(
        block: Block, base_python: Path, tmp_path: Path) -> None:
    for name, text in page_files(block.page).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "block.py").write_text(block.text, encoding="utf-8")
    done = _run([base_python, "block.py"], tmp_path, timeout=120)
    _check_run(done, block.id, _section_above(block))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_an_example_runs_or_its_docstring_says_which_extra_it_needs(
        script: Path, base_python: Path, tmp_path: Path) -> None:
    done = _run([base_python, script], tmp_path, timeout=120)
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    _check_run(done, f"examples/{script.name}", docstring)


def test_the_readme_lists_every_extra() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([\w-]+)` \|", readme, re.MULTILINE))
    assert sorted(set(_user_extras()) - rows) == []


def test_getting_started_names_every_extra() -> None:
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    install = page.split("## 1. Install")[1].split("\n## ")[0]
    assert sorted(e for e in _user_extras() if f"`{e}`" not in install) == []


def test_the_readme_says_where_its_make_commands_run() -> None:
    # The README is also the package index's page: there, `make demo` is a command
    # for a source checkout, and an installed package has its own.
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ")[0]
    prose = re.sub(r"```.*?```", "", head, flags=re.DOTALL)
    assert "source checkout" in prose
    assert "`meshlite demo`" in prose


def test_a_shop_service_started_without_its_port_says_how_to_set_it(tmp_path: Path) -> None:
    script = ROOT / "examples" / "shop" / "orders.py"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOP_", "MESHLITE_", "OTEL_", "PYTHONPATH"))}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"orders: set SHOP_PORT, the port to serve on; its callers "
                           f"expect 8102: SHOP_PORT=8102 python {script}\n")
