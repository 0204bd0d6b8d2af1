"""The package version: one place, imported by modules that need it (not the root package).

``pyproject.toml`` reads it from here too (``[tool.setuptools.dynamic]``).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
