"""meshlite as a user's type checker sees it: ``mypy --strict`` on a typed user program
(tests/typing_user/, which pytest does not collect), with meshlite read from this
checkout as mypy reads an installed, typed package.

The program asserts both ways: what must type-check (``assert_type``, ``reveal_type``
with the expected type beside it) and what must be rejected (``# type: ignore[code]``
under ``warn_unused_ignores``: a line that stops being an error fails the run).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER = ROOT / "tests" / "typing_user"
PROGRAMS = [USER / "user_program.py", USER / "star_import.py"]

# The packages whose names load on first use (a module __getattr__ type checkers must
# not see): every name of their __all__ must be a real name to mypy.
LAZY_PACKAGES = ["meshlite", "meshlite.routing", "meshlite.config", "meshlite.discovery",
                 "meshlite.state", "meshlite.telemetry"]

_REVEALED = re.compile(r'^(?P<file>[^:\n]+):(?P<line>\d+): note: Revealed type is "(?P<type>.*)"$',
                       re.MULTILINE)
_ERROR = re.compile(r"^[^:\n]+:\d+: error: .*$", re.MULTILINE)
_QUALIFIED = re.compile(r"\b(?:builtins|typing)\.")  # mypy before 2 wrote builtins.str


def _shown(type_: str) -> str:
    return _QUALIFIED.sub("", type_)


def _names_programs(directory: Path) -> list[Path]:
    """One module per lazy package naming each name of its ``__all__``, as an attribute
    and as what ``from package import *`` gives (an undefined one is an error)."""
    made = []
    for package in LAZY_PACKAGES:
        names = importlib.import_module(package).__all__
        path = directory / f"names_{package.replace('.', '_')}.py"
        path.write_text("".join([f"import {package}\nfrom {package} import *\n\n",
                                 *(f"{package}.{n}\n" for n in names),
                                 # (a type checker's star import leaves out the _
                                 # names, __version__, where it sees no __all__)
                                 *(f"{n}\n" for n in names if not n.startswith("_"))]),
                        encoding="utf-8")
        made.append(path)
    return made


def _expected_reveals() -> dict[tuple[str, int], str]:
    """Each ``reveal_type(...)  # revealed: TYPE`` line of the programs, and its TYPE."""
    expected = {}
    for path in PROGRAMS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "reveal_type(" in line and "# revealed: " in line:
                expected[(path.name, number)] = _shown(line.split("# revealed: ", 1)[1])
    return expected


def test_a_strict_user_program_type_checks_as_written(tmp_path: Path) -> None:
    # One mypy run (so two xdist workers do not make two): ~7 s with a cold cache, as
    # it reads all of meshlite, ~1 s with a warm one (kept in the repo's .mypy_cache).
    names = _names_programs(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--verbose", "--config-file", str(USER / "mypy.ini"),
         "--cache-dir", str(ROOT / ".mypy_cache" / "typing_user"),
         *map(str, PROGRAMS), *map(str, names)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    # meshlite is this checkout's, not an installed copy
    init = re.escape(str(ROOT / "meshlite" / "__init__.py"))
    assert re.search(rf"{init} \(meshlite\)", done.stderr), done.stderr[-2000:]
    # what must type-check does, and each line marked as rejected is
    errors = _ERROR.findall(done.stdout)
    assert errors == [], "\n".join(errors)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    # and the revealed types are the ones written beside them
    revealed = {(Path(m["file"]).name, int(m["line"])): _shown(m["type"])
                for m in _REVEALED.finditer(done.stdout)}
    expected = _expected_reveals()
    assert len(expected) >= 5
    assert revealed == expected


def test_routes_typed_constructor_is_the_dataclass_one() -> None:
    # Route's __init__ under TYPE_CHECKING (wider types for methods and scopes) must
    # take exactly the parameters of the one the dataclass makes, with its defaults.
    from meshlite.asgi import Route

    source = (ROOT / "meshlite" / "_inbound" / "_routes.py").read_text(encoding="utf-8")
    cls = next(n for n in ast.parse(source).body
               if isinstance(n, ast.ClassDef) and n.name == "Route")
    guard = next(n for n in cls.body if isinstance(n, ast.If)
                 and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING")
    init = next(n for n in guard.body if isinstance(n, ast.FunctionDef))
    args = init.args
    typed = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, ast.literal_eval(d))
             for a, d in zip(args.args[1:], args.defaults, strict=True)]
    typed += [(a.arg, inspect.Parameter.KEYWORD_ONLY, ast.literal_eval(d))
              for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d]
    assert len(typed) == len(args.args) - 1 + len(args.kwonlyargs)
    real = [(p.name, p.kind, p.default) for p in inspect.signature(Route).parameters.values()]
    assert typed == real
