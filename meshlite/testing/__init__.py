"""meshlite.testing: tools for testing code that uses meshlite.

- :class:`FakeClock`: pass ``clock=`` to any policy; no real time passes.
- :class:`FakeBackend`: a real HTTP server on a loopback port whose latency,
  errors, hangs, resets and outages a test sets at runtime.
- :class:`AsgiServer`: any ASGI app served by uvicorn on a free loopback port.
- :class:`ScriptedService` and :func:`step`: an in-process fake service that
  answers from a script or at (seeded) random, and logs every call.
- :class:`Recorder` and :func:`replay`: record real calls and HTTP exchanges to a
  JSON cassette once, then serve them offline.
- The pytest plugin (entry point ``pytest11``; :mod:`meshlite.testing._plugin`):
  fixtures ``fake_clock``, ``fake_backend``, ``mesh``, ``chaos`` and the marker
  ``meshlite_no_sleep``; :class:`BackendFactory`, :class:`MeshFactory`,
  :class:`Chaos` and :class:`InjectedFault` are what those fixtures hand out.

Importing this module imports no optional library (httpx is imported only by
the record/replay transports), and none of the kit: each name loads its module on
first use, so that pytest, which loads the plugin in every session of an environment
meshlite is installed in, costs a suite that does not use it no more than
``import meshlite``.
"""

from typing import TYPE_CHECKING

from .._lazy import declared_exports

# The one declaration of the public names: type checkers read it, and
# `declared_exports` reads it to know where each name lives.
if TYPE_CHECKING:
    from ._asgi import AsgiServer as AsgiServer
    from ._backend import BackendStats as BackendStats
    from ._backend import FakeBackend as FakeBackend
    from ._cassette import CassetteError as CassetteError
    from ._cassette import CassetteMiss as CassetteMiss
    from ._cassette import ReplayedError as ReplayedError
    from ._clock import FakeClock as FakeClock
    from ._fixtures import BackendFactory as BackendFactory
    from ._fixtures import Chaos as Chaos
    from ._fixtures import InjectedFault as InjectedFault
    from ._fixtures import MeshFactory as MeshFactory
    from ._http11 import ReceivedRequest as ReceivedRequest
    from ._record import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY
    from ._record import DEFAULT_REDACTED_HEADERS as DEFAULT_REDACTED_HEADERS
    from ._record import DEFAULT_REDACTED_PARAMS as DEFAULT_REDACTED_PARAMS
    from ._record import REDACTED as REDACTED
    from ._record import Recorder as Recorder
    from ._replay import Replayer as Replayer
    from ._replay import replay as replay
    from ._scripted import ScriptedCall as ScriptedCall
    from ._scripted import ScriptedService as ScriptedService
    from ._scripted import ScriptExhausted as ScriptExhausted
    from ._scripted import Step as Step
    from ._scripted import step as step

# Type checkers see neither __getattr__ nor the computed __all__ (see meshlite/__init__.py).
if not TYPE_CHECKING:
    __getattr__, __dir__, __all__ = declared_exports(__name__, __file__, globals())
