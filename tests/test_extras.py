"""A feature used without its optional extra fails with one clear error naming it.

Each case runs in a fresh interpreter whose extra's libraries are blocked
(``sys.modules[name] = None`` makes ``import name`` fail as for a package that is
not installed); the error must be one ``ModuleNotFoundError`` (no chained
traceback) whose message is the ``pip install`` line to run. A base install from the
wheel is covered by tests/test_wheel.py.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from _extras_probe import EXTRAS as _EXTRA_FEATURES
from _system import require_program
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from state.redis_server import RedisServer

import meshlite as ml
from meshlite._extras import missing_extra, requires_extra

ROOT = Path(__file__).resolve().parent.parent

# The import names each extra of pyproject.toml brings.
EXTRAS = {
    "http": ("httpx", "aiohttp", "urllib3"),
    "aiohttp": ("aiohttp",),
    "dashboard": ("starlette", "uvicorn", "websockets", "httptools"),
    "prometheus": ("prometheus_client",),
}

MESH = ("import asyncio, meshlite as ml\n"
        "mesh = ml.Mesh([ml.Service('users', backends=['http://127.0.0.1:9']")

CASES = {
    "mesh.http()": ("http", MESH + ")])\nmesh.http('users')"),
    "mesh.http_sync()": ("http", MESH + ")])\nmesh.http_sync('users')"),
    "meshlite.http": ("http", "import meshlite.http"),
    "mesh.aiohttp()": ("aiohttp", MESH + """)])
async def main():
    mesh.aiohttp('users')
asyncio.run(main())"""),
    "HttpHealthCheck": ("http", MESH + """,
                                  health_check=ml.HttpHealthCheck(interval=1.0))])
async def main():
    async with mesh:
        pass
asyncio.run(main())"""),
    "the dashboard": ("dashboard", MESH + """)])
async def main():
    await mesh.serve_dashboard(port=0)
asyncio.run(main())"""),
    "AsgiServer": ("dashboard", """import asyncio
from meshlite.testing import AsgiServer
async def main():
    async with AsgiServer(lambda scope, receive, send: None):
        pass
asyncio.run(main())"""),
    "Recorder.transport()": ("http", """from meshlite.testing import Recorder
Recorder('cassette.json').transport()"""),
    "PrometheusCollector": ("prometheus", MESH + """)])
from meshlite.observability import PrometheusCollector
PrometheusCollector(mesh)"""),
}


def _run(code: str, blocked: tuple[str, ...], cwd: Path, timeout: float = 60
         ) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor _name in {blocked!r}:\n    sys.modules[_name] = None\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHLITE_", "OTEL_"))}
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("feature", list(CASES))
def test_a_feature_without_its_extra_names_the_extra(feature: str, tmp_path: Path) -> None:
    extra, code = CASES[feature]
    done = _run(code, EXTRAS[extra], tmp_path)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ModuleNotFoundError: {feature} needs the '{extra}' extra"), last
    assert last.endswith(f"pip install 'meshlite-mesh[{extra}]'"), last
    assert done.stderr.count("Traceback") == 1, done.stderr  # one error, no chain


@pytest.mark.parametrize(("extra", "section", "blocked"), [
    ("dashboard", "dashboard:\n  port: 0\n  max_connections: 10\n", EXTRAS["dashboard"]),
    ("otlp", "telemetry:\n  service_name: shop\n  otlp_endpoint: http://127.0.0.1:4318\n",
     ("opentelemetry.sdk", "opentelemetry.exporter")),
])
def test_a_section_whose_extra_is_missing_is_a_problem_of_the_config(
        extra: str, section: str, blocked: tuple[str, ...], tmp_path: Path) -> None:
    # check says so (it said "valid", and the mesh then failed to start), and so does
    # from_config, before it starts anything.
    (tmp_path / "mesh.yaml").write_text(
        "services:\n  users:\n    backends: ['http://127.0.0.1:9']\n" + section,
        encoding="utf-8")
    code = "from meshlite.cli import main\nsys.exit(main(['check', 'mesh.yaml']))"
    done = _run(code, blocked, tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert line.startswith(f"  - {section.split(':')[0]}: needs the "), line
    assert line.endswith(f"pip install 'meshlite-mesh[{extra}]'"), line
    code = ("import meshlite as ml\n"
            "try:\n    ml.Mesh.from_config('mesh.yaml')\n"
            "except ml.ConfigError as error:\n    print(error)\n")
    done = _run(code, blocked, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'meshlite-mesh[{extra}]'" in done.stdout, done.stdout


def test_the_dashboard_command_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(
        "services:\n  users:\n    backends: ['http://127.0.0.1:9']\n", encoding="utf-8")
    code = ("from meshlite.cli import main\n"
            "sys.exit(main(['dashboard', 'mesh.yaml', '--port', '0']))")
    done = _run(code, EXTRAS["dashboard"], tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()  # no traceback
    assert line.startswith("meshlite dashboard: the dashboard needs the 'dashboard' extra")
    assert line.endswith("pip install 'meshlite-mesh[dashboard]'")


def test_the_demo_without_the_http_extra_runs_its_policy_part(tmp_path: Path) -> None:
    code = "from meshlite.cli import main\nsys.exit(main(['demo']))"
    done = _run(code, EXTRAS["http"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "circuit_breaker" in done.stdout   # the policy part ran
    assert done.stdout.rstrip().endswith(
        "The routing part of the demo needs the 'http' extra, and 'httpx' is not installed: "
        "pip install 'meshlite-mesh[http]'"), done.stdout


def test_the_services_demo_without_its_extras_says_what_to_install(tmp_path: Path) -> None:
    code = "from meshlite.cli import main\nsys.exit(main(['demo', '--services']))"
    done = _run(code, EXTRAS["http"] + EXTRAS["dashboard"], tmp_path)
    assert done.returncode == 1
    assert done.stderr == (
        "meshlite demo --services needs the 'http,dashboard,otlp' extras, and 'httpx' is not "
        "installed: pip install 'meshlite-mesh[http,dashboard,otlp]'\n")


def test_requires_extra_passes_meshlite_s_own_import_errors_through() -> None:
    own = ModuleNotFoundError("No module named 'meshlite._gone'", name="meshlite._gone")
    with pytest.raises(ModuleNotFoundError) as raised, requires_extra("x", "http"):
        raise own
    assert raised.value is own


def test_missing_extra_keeps_the_module_name() -> None:
    error = missing_extra("mesh.http()", "http", ModuleNotFoundError("no", name="httpx"))
    assert isinstance(error, ImportError)
    assert error.name == "httpx"
    assert str(error) == ("mesh.http() needs the 'http' extra, and 'httpx' is not installed: "
                          "pip install 'meshlite-mesh[http]'")


def test_import_meshlite_loads_no_library_of_any_extra() -> None:
    extras = sorted({name for names in EXTRAS.values() for name in names} | {
        "redis", "jwt", "prometheus_client", "tenacity", "pybreaker", "aiolimiter",
        "opentelemetry.sdk", "opentelemetry.exporter"})
    code = f"import meshlite\nprint([m for m in {extras!r} if m in sys.modules])"
    done = _run(code, (), Path.cwd())
    assert done.stdout.strip() == "[]", done.stderr


def test_the_jwt_extra_brings_what_the_default_algorithms_need() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]
    brings = [r.replace(" ", "").lower() for r in extras["jwt"]]
    assert any(r.startswith(("pyjwt[crypto]", "cryptography")) for r in brings), brings
    default = ml.asgi.jwt_verifier.__kwdefaults__["algorithms"]
    assert {a[:2] for a in default} <= {"RS", "ES"}  # the ones cryptography verifies


def test_jwt_without_cryptography_names_the_extra(tmp_path: Path) -> None:
    code = ("import meshlite.asgi\n"
            "meshlite.asgi.jwt_verifier('-----BEGIN PUBLIC KEY-----')")
    done = _run(code, ("cryptography",), tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("meshlite._errors.ConfigError: jwt_verifier: algorithms must be"), last
    assert last.endswith("pip install 'meshlite-mesh[jwt]', got ['RS256', 'ES256']"), last


# -- each extra alone ----------------------------------------------------------------

PROBE = ROOT / "tests" / "_extras_probe.py"
NOT_FOR_USERS = ("all", "docs", "dev")  # `all` names the others; docs and dev: this project's


def _extras() -> dict[str, list[Requirement]]:
    """Each extra of pyproject.toml users install (and "": the core), with the
    requirements it brings, the core's included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = [Requirement(r) for r in project["dependencies"]]
    extras = {"": core}
    for extra, requirements in project["optional-dependencies"].items():
        if extra not in NOT_FOR_USERS:
            extras[extra] = core + [Requirement(r) for r in requirements]
    return extras


def _installed(requirements: list[Requirement]) -> set[str]:
    """The distributions ``requirements`` install, theirs included (as installed
    here), by canonical name."""
    found: set[str] = set()
    todo = [(r, {""} | r.extras) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        try:
            needs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # for another platform (a marker); an installed one is checked
        found.add(name)
        for line in needs:
            need = Requirement(line)
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in extras):
                todo.append((need, {""} | need.extras))
    return found


def _modules(distribution: str) -> set[str]:
    """The dotted names of the modules a distribution installs."""
    modules = set()
    for file in importlib.metadata.distribution(distribution).files or ():
        parts = file.parts
        if ".." in parts or parts[0].endswith((".dist-info", ".data")):
            continue
        if file.suffix in (".py", ".so", ".pyd"):
            stem = parts[-1].split(".")[0]
            path = parts[:-1] if stem == "__init__" else (*parts[:-1], stem)
            if path and not path[0].startswith("__editable__"):
                modules.add(".".join(path))
    return modules


def _blocked(extra: str, extras: dict[str, list[Requirement]]) -> list[str]:
    """What ``meshlite-mesh[extra]`` does not install of what the other extras do:
    the top-most module names that only those bring (``opentelemetry.sdk``, not
    ``opentelemetry``, whose API is the core's)."""
    mine = _installed(extras[extra]) | {"meshlite-mesh"}
    others = set().union(*(_installed(r) for r in extras.values())) - mine
    kept = {".".join(m.split(".")[:i + 1]) for d in mine for m in _modules(d)
            for i in range(m.count(".") + 1)}
    names = set()
    for module in (m for d in others for m in _modules(d)):
        parts = module.split(".")
        prefixes = (".".join(parts[:i + 1]) for i in range(len(parts)))
        names.add(next((p for p in prefixes if p not in kept), module))
    return sorted(n for n in names if n not in kept
                  and not any(n.startswith(f"{o}.") for o in names))


def test_the_probe_uses_every_extra() -> None:
    assert set(_EXTRA_FEATURES) == set(_extras())


@pytest.mark.parametrize("extra", list(_EXTRA_FEATURES))
def test_each_extra_alone_is_enough_for_its_features(extra: str, tmp_path: Path) -> None:
    # What a user has after `pip install 'meshlite-mesh[redis]'` (say): the libraries
    # of the other extras cannot be imported, and each feature of this one works.
    blocked = _blocked(extra, _extras())
    assert blocked, extra  # (the others do bring something)
    redis = None
    if extra == "redis":
        redis = RedisServer(require_program("redis-server", "redis-server")).start()
    try:
        url = redis.url if redis is not None else "redis://127.0.0.1:9"
        done = _run(f"import runpy\nsys.argv = [{str(PROBE)!r}, {url!r}, "
                    f"*{_EXTRA_FEATURES[extra]!r}]\n"
                    f"runpy.run_path(sys.argv[0], run_name='__main__')", tuple(blocked),
                    tmp_path, timeout=120)
    finally:
        if redis is not None:
            redis.close()
    lines = done.stdout.splitlines()
    assert lines == [f"{name}: ok" for name in _EXTRA_FEATURES[extra]], (
        done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr   # a failed close, say
