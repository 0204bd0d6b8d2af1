"""The one error for a feature used without its optional extra installed.

``import meshlite`` and the core features import no optional library; a feature
that needs one imports it when it is used, inside :func:`requires_extra`, so that
a missing library is reported once, at the call the user made, with the command
that installs it (not as a bare ``ModuleNotFoundError`` from deep inside).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["DISTRIBUTION", "install_command", "is_missing_extra", "missing_extra",
           "requires_extra"]

DISTRIBUTION = "meshlite-mesh"
"""The name meshlite is installed by (``pip install meshlite-mesh``)."""


def missing_extra(feature: str, extra: str, error: ImportError) -> ModuleNotFoundError:
    """The error for ``feature`` used without the library ``error`` failed to import.

    Args:
        feature: What the user called (``"mesh.http()"``).
        extra: The extra that brings the library (``"http"``), or several, comma
            separated (``"http,dashboard"``).
        error: The failed import.

    Returns:
        A ``ModuleNotFoundError`` (so ``except ImportError`` still catches it) with the
        missing module's ``name`` and a message naming the extra to install.
    """
    missing = error.name or str(error)
    noun = "extras" if "," in extra else "extra"
    return ModuleNotFoundError(
        f"{feature} needs the {extra!r} {noun}, and {missing!r} is not installed: "
        f"{install_command(extra)}", name=error.name)


def install_command(extra: str) -> str:
    """The command that installs ``extra`` (``pip install 'meshlite-mesh[http]'``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def is_missing_extra(error: ModuleNotFoundError) -> bool:
    """Whether ``error`` is a library that is not installed (not one of meshlite's
    own modules, which would be a bug): what a command reports in one line."""
    return error.name is not None and error.name.split(".")[0] != "meshlite"


@contextlib.contextmanager
def requires_extra(feature: str, extra: str) -> Iterator[None]:
    """Turn a third-party import that fails inside the block into
    :func:`missing_extra`'s error; a failing import of meshlite's own modules (a bug,
    not a missing extra) passes through unchanged.

    Raises:
        ModuleNotFoundError: a library of ``extra`` is not installed.
    """
    try:
        yield
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        raise missing_extra(feature, extra, error) from None
