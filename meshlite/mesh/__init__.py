"""The mesh: service registry, lifecycle, overrides, and mesh calls.

``Mesh`` is also exported as ``meshlite.Mesh``.
"""

from ._mesh import DEFAULT_DRAIN_TIMEOUT, Mesh

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "Mesh"]
