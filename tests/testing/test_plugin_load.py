"""What installing meshlite costs a test suite that does not use it: pytest loads the
plugin (the ``pytest11`` entry point) in every session of the environment, so loading
it must import no more than ``import meshlite`` does; the fixtures import the kit when
a test uses them (tests/testing/test_plugin.py runs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_loading_the_plugin_imports_nothing_beyond_the_core() -> None:
    # Every module imported here is also parsed anew and assert-rewritten by pytest
    # in each session where bytecode is not cached (PYTHONDONTWRITEBYTECODE, a
    # read-only site-packages): the whole kit made a one-test session 4-6 times as
    # long to start.
    pytest.importorskip("pytest_asyncio")  # a test dependency: the plugin looks for it
    code = ("import json, sys, pytest, pytest_asyncio\n"
            "import meshlite\n"
            "core = set(sys.modules)\n"
            "import meshlite.testing._plugin\n"
            "print(json.dumps(sorted(set(sys.modules) - core)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = json.loads(done.stdout)
    assert loaded == ["meshlite.testing", "meshlite.testing._plugin"]


def test_the_plugin_loads_with_the_hook_options_of_pluggy_1_0() -> None:
    # pytest 7 allows pluggy 1.0, whose hookimpl marker takes no `wrapper=` (1.2 added
    # it): a plugin using it would stop every suite of such an environment from
    # starting, meshlite's fixtures used or not. The marker here takes pluggy 1.0's
    # options only, as that version's does (pytest-asyncio, whose releases that use
    # `wrapper=` require a pluggy that has it, is imported before).
    code = ("import contextlib, pytest\n"
            "with contextlib.suppress(ImportError):\n"
            "    import pytest_asyncio\n"
            "real = pytest.hookimpl\n"
            "def hookimpl(function=None, hookwrapper=False, optionalhook=False,\n"
            "             tryfirst=False, trylast=False, specname=None):\n"
            "    return real(function, hookwrapper=hookwrapper, optionalhook=optionalhook,\n"
            "                tryfirst=tryfirst, trylast=trylast, specname=specname)\n"
            "pytest.hookimpl = hookimpl\n"
            "import meshlite.testing._plugin as plugin\n"
            "print(plugin.pytest_runtest_protocol.pytest_impl['hookwrapper'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
