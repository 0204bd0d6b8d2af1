"""meshlite.testing: tools for testing code that uses meshlite.

- :class:`FakeClock`: pass ``clock=`` to any policy; no real time passes.
"""

from ._clock import FakeClock

__all__ = ["FakeClock"]
