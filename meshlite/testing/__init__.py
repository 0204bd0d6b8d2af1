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
the record/replay transports).
"""

from ._asgi import AsgiServer
from ._backend import BackendStats, FakeBackend
from ._cassette import CassetteError, CassetteMiss, ReplayedError
from ._clock import FakeClock
from ._fixtures import BackendFactory, Chaos, InjectedFault, MeshFactory
from ._http11 import ReceivedRequest
from ._record import (
    DEFAULT_MAX_BODY,
    DEFAULT_REDACTED_HEADERS,
    DEFAULT_REDACTED_PARAMS,
    REDACTED,
    Recorder,
)
from ._replay import Replayer, replay
from ._scripted import ScriptedCall, ScriptedService, ScriptExhausted, Step, step

__all__ = [
    # time
    "FakeClock",
    # a real HTTP backend
    "FakeBackend",
    "ReceivedRequest",
    "BackendStats",
    # any ASGI app under uvicorn on a loopback port
    "AsgiServer",
    # in-process fake services
    "ScriptedService",
    "ScriptedCall",
    "ScriptExhausted",
    "Step",
    "step",
    # record and replay
    "Recorder",
    "Replayer",
    "replay",
    "CassetteError",
    "CassetteMiss",
    "ReplayedError",
    "REDACTED",
    "DEFAULT_REDACTED_HEADERS",
    "DEFAULT_REDACTED_PARAMS",
    "DEFAULT_MAX_BODY",
    # what the pytest plugin's fixtures hand out
    "BackendFactory",
    "MeshFactory",
    "Chaos",
    "InjectedFault",
]
