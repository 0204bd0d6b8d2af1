"""meshlite's pytest plugin, loaded through the ``pytest11`` entry point
(``meshlite = "meshlite.testing._plugin"``) once meshlite is installed.

Fixtures (all function-scoped, everything they make closed at teardown):

- ``fake_clock``: a fresh :class:`~meshlite.testing.FakeClock`; its
  ``autojump_threshold`` from the marker ``@pytest.mark.meshlite_autojump_threshold(s)``,
  else the ini option ``meshlite_autojump_threshold``, else the clock's default.
- ``fake_backend``: a factory of started :class:`~meshlite.testing.FakeBackend` s.
- ``mesh``: a factory of isolated :class:`meshlite.Mesh` es.
- ``chaos``: fault injection into a service of the test's mesh.

Marker ``@pytest.mark.meshlite_no_sleep`` (or the ini option ``meshlite_no_sleep =
true`` for a whole suite): testing mode (``ml.is_testing()``) while the test runs, so
backoff between retries does not sleep for real; a retry given a ``FakeClock``
still sleeps on it (fake time moves, ``.sleeps`` records the backoff).

With pytest-asyncio installed, ``mesh`` is an async fixture run on the test's
event loop, so an async test's HTTP connection pools are closed on the loop that
opened them; sync tests can use it all the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .._errors import ConfigError
from .._switches import no_real_sleeps

# pytest loads this module in every session of an environment meshlite is installed
# in, used or not: the kit is imported by the fixtures, when a test asks for one
# (tests/testing/test_plugin_load.py).
if TYPE_CHECKING:
    from ..mesh._mesh import Mesh
    from ._clock import FakeClock
    from ._fixtures import BackendFactory, Chaos, MeshFactory

__all__ = ["AUTOJUMP", "MARKER", "chaos", "fake_backend", "fake_clock"]

MARKER = "meshlite_no_sleep"
"""The marker (and ini option) that turns testing mode on for a test: sleeps on the
system clock are skipped, those on a ``FakeClock`` are not."""

AUTOJUMP = "meshlite_autojump_threshold"
"""The marker (and ini option) that sets the ``fake_clock`` fixture's ``autojump_threshold``."""

_MESHES = pytest.StashKey["MeshFactory"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(MARKER, type="bool", default=False,
                  help="meshlite: run every test in testing mode (no real backoff sleeps)")
    parser.addini(AUTOJUMP, type="string", default="",
                  help="meshlite: the fake_clock fixture's autojump_threshold, in real seconds "
                       "(inf: never jump)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: run the test in testing mode (ml.is_testing()): retry "
        "backoff does not sleep for real (on a FakeClock it does, in fake time)")
    config.addinivalue_line(
        "markers", f"{AUTOJUMP}(seconds): the fake_clock fixture's autojump_threshold "
        "(real seconds of quiet before it jumps; math.inf: never)")


# An old-style wrapper: pytest loads this plugin in every session of an environment
# meshlite is in, and `wrapper=True` is refused by pluggy before 1.2 (pytest 7 allows
# pluggy 1.0), which would stop a suite that never asked for meshlite from starting.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, None]:
    # Around setup, call and teardown alike, so fixtures that retry do not sleep either.
    # Real sleeps only: ml.set_testing(True) skipped a FakeClock's too, so under the
    # ini option no test could assert a backoff schedule on `fake_clock.sleeps`.
    if item.get_closest_marker(MARKER) is None and not item.config.getini(MARKER):
        yield
        return
    with no_real_sleeps():
        yield


@pytest.fixture
def fake_clock(request: pytest.FixtureRequest) -> FakeClock:
    """A fresh :class:`~meshlite.testing.FakeClock` at 0.0 (pass it as ``clock=``).

    Its ``autojump_threshold`` comes from ``@pytest.mark.meshlite_autojump_threshold(s)``,
    else from the ini option ``meshlite_autojump_threshold``, else the clock's default."""
    from ._clock import FakeClock

    marker = request.node.get_closest_marker(AUTOJUMP)
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            raise ConfigError(f"@pytest.mark.{AUTOJUMP} takes one argument, the threshold "
                              f"in real seconds, got {marker.args!r} {marker.kwargs!r}")
        return FakeClock(autojump_threshold=marker.args[0])
    text = str(request.config.getini(AUTOJUMP)).strip()
    if not text:
        return FakeClock()
    try:
        threshold = float(text)
    except ValueError:
        raise ConfigError(f"ini option {AUTOJUMP} must be a number of real seconds >= 0 "
                          f"(or inf), got {text!r}") from None
    return FakeClock(autojump_threshold=threshold)


@pytest.fixture
def fake_backend() -> Iterator[BackendFactory]:
    """A factory: ``fake_backend(latency=0.0, error_rate=0.0, ..., **behaviour)``
    returns a started :class:`~meshlite.testing.FakeBackend` (serving on its own
    thread); every one is stopped, and its thread joined, when the test ends."""
    from ._fixtures import BackendFactory

    factory = BackendFactory()
    try:
        yield factory
    finally:
        factory.close()


def _meshes(request: pytest.FixtureRequest) -> Sequence[Mesh]:
    factory = request.node.stash.get(_MESHES, None)
    return () if factory is None else tuple(factory.meshes)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is a test dependency of meshlite

    @pytest.fixture(name="mesh")
    def mesh_sync(request: pytest.FixtureRequest, fake_backend: BackendFactory
                  ) -> Iterator[MeshFactory]:
        """A factory: ``mesh(*services, **options)`` returns a new, unopened
        :class:`meshlite.Mesh`; each is closed when the test ends (before the
        ``fake_backend`` backends stop)."""
        from ._fixtures import MeshFactory

        factory = request.node.stash[_MESHES] = MeshFactory()
        try:
            yield factory
        finally:
            factory.close()

else:

    @pytest_asyncio.fixture(name="mesh")
    async def mesh_async(request: pytest.FixtureRequest, fake_backend: BackendFactory
                         ) -> AsyncIterator[MeshFactory]:
        """A factory: ``mesh(*services, **options)`` returns a new, unopened
        :class:`meshlite.Mesh`; each is closed when the test ends (before the
        ``fake_backend`` backends stop), on the test's event loop."""
        from ._fixtures import MeshFactory

        factory = request.node.stash[_MESHES] = MeshFactory()
        try:
            yield factory
        finally:
            await factory.aclose()


@pytest.fixture
def chaos(request: pytest.FixtureRequest, mesh: Any) -> Iterator[Chaos]:
    """Fault injection: ``chaos("users", rate=0.5, error=ConnectionError)`` injects
    an ``ml.FaultInjection`` into service ``users`` (of the ``mesh`` fixture's
    meshes, or ``mesh=``) until the test ends; returns an ``InjectedFault``."""
    from ._fixtures import Chaos

    controller = Chaos(lambda: _meshes(request))
    try:
        yield controller
    finally:
        controller.clear()
