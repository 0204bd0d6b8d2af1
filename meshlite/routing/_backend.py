"""Backends: where a service can send calls, as users write them.

A :class:`Backend` is an address, a weight, a zone and free-form metadata. It is
immutable and may appear in several services; each service wraps each of its backends
in an :class:`~meshlite.routing._endpoint.Endpoint`, which holds what routing learns
about it at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .._arguments import explained
from .._errors import ConfigError
from .._printable import url_shown
from .._validate import fail, positive

__all__ = ["Backend", "BackendLike", "as_backend", "as_backends"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@explained
@dataclass(frozen=True, slots=True, init=False)
class Backend:
    """One place a service can send calls to.

    Args:
        address: Where it is: a base URL (``"http://127.0.0.5:8000"``, optionally with a
            path prefix) for HTTP, or any string your call function understands.
        weight: Relative share of traffic, > 0 (used by the weighted balancers,
            ``random``, ``least_requests``, ``p2c_ewma`` and ``ring_hash``).
        zone: Free-form locality label (shown in snapshots).
        metadata: Free-form labels; stored read-only, not part of equality.

    Raises:
        ConfigError: an empty address or one with spaces around it, an
            ``http(s)://`` address without a host,
            with a bad port or with credentials (``user:password@``), or a weight
            that is not a finite number > 0.
    """

    address: str
    weight: float
    zone: str | None
    metadata: Mapping[str, Any] = field(compare=False, hash=False)

    def __init__(
        self,
        address: str,
        weight: float = 1.0,
        zone: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(address, str) or not address.strip():
            fail("Backend", "address", address, "a non-empty string")
        stripped = address.strip()
        if address != stripped:  # (" http://u:pw@h" passed the URL checks)
            start = address.index(stripped[0])
            fail("Backend", "address",
                 address[:start] + url_shown(stripped) + address[start + len(stripped):],
                 "an address without spaces around it")
        _check_url(address)
        if zone is not None and not isinstance(zone, str):
            fail("Backend", "zone", zone, "a string or None")
        if metadata is None:
            metadata = _EMPTY
        elif not isinstance(metadata, Mapping):
            fail("Backend", "metadata", metadata, "a mapping or None")
        elif not isinstance(metadata, MappingProxyType):
            metadata = MappingProxyType(dict(metadata))
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "weight", positive("Backend", "weight", weight))
        object.__setattr__(self, "zone", zone)
        object.__setattr__(self, "metadata", metadata)

    def __str__(self) -> str:
        return self.address


def _check_url(address: str) -> None:
    """An ``http(s)://`` address must be a URL that can be sent to (other addresses
    are the call function's business)."""
    if not address[:8].lower().startswith(("http://", "https://")):
        return
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018  # raises ValueError when out of range or not a number
    except ValueError:
        parts = None
    if parts is None or not parts.hostname:
        fail("Backend", "address", url_shown(address),  # (a password in it not shown)
             "an http(s) base URL with a host and a port in 1..65535")
    if "@" in parts.netloc:
        # Never sent as authentication by meshlite's clients, and the address is
        # shown in snapshots, metrics labels, logs and the dashboard.
        shown = f"{parts.scheme}://***@{parts.netloc.rpartition('@')[2]}{parts.path}"
        raise ConfigError(
            f"Backend: address {shown!r} carries credentials (user:password@), which "
            "would be shown in snapshots, metrics, logs and the dashboard and are not "
            "sent; give them as Service(headers={'Authorization': ...}) instead",
            policy="Backend")


BackendLike = Backend | str
"""What ``backends=`` accepts for each backend: a :class:`Backend` or its address."""


def as_backend(value: Any, owner: str = "Service") -> Backend:
    """``value`` as a :class:`Backend`; a plain string is a backend's address.

    Raises:
        ConfigError: ``value`` is neither a Backend nor a non-empty string.
    """
    if isinstance(value, str):
        return Backend(value)
    if not isinstance(value, Backend):
        fail(owner, "backends", value, "Backend objects or address strings")
    return value


def as_backends(value: Any, owner: str = "Service") -> list[Backend]:
    """``value`` (one backend or address, or an iterable of them) as Backends.

    Raises:
        ConfigError: ``value`` is not a backend, an address, or a list of them.
    """
    if isinstance(value, str | Backend):
        return [as_backend(value, owner)]
    if isinstance(value, Mapping | bytes) or not isinstance(value, Iterable):
        fail(owner, "backends", value, "a list of Backend objects or address strings")
    return [as_backend(b, owner) for b in value]
