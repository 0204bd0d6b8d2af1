"""A config file parsed for a reload, each service's section pickled apart: the
bytes are both what a separate parsing process sends back (``_child``) and the
fingerprint a reload compares with the plan in force (``ServicePlan.raw``). Equal
bytes mean equal data of equal types (``1``, ``1.0`` and ``true`` differ).

Imports little: the separate process imports only this and ``_source``; pickle is
imported on the first reload (start-up does not pay for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._problems import Problems
from ._source import Document, read_document

__all__ = ["Parsed", "fingerprint", "parse"]


def fingerprint(section: Any) -> bytes:
    """A service's section data (as read, before the schema) as bytes."""
    import pickle

    return pickle.dumps(section, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class Parsed:
    """A file read into a document, before the schema; with ``services`` set, the
    document's ``services`` are left out and each section is there, pickled."""

    document: Document
    problems: Problems
    services: dict[str, bytes] | None


def parse(path: str, text: str, environ: Mapping[str, str] | None,
          profile: str | None) -> Parsed:
    """``read_document`` of ``text``, each service's section pickled apart.

    Raises:
        ConfigError: the text does not parse, is too large or too deep, or is empty
            (a file truncated by a save that writes in place is seen empty for a
            moment: applied, it would remove every service).
    """
    document, problems = read_document(path, environ=environ, profile=profile, text=text,
                                       allow_empty=False)
    raw = document.data.get("services")
    if not isinstance(raw, dict):
        return Parsed(document, problems, None)
    services = {str(name): fingerprint(section) for name, section in raw.items()}
    document.data["services"] = {}
    return Parsed(document, problems, services)
