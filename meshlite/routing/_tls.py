"""Per-service TLS settings and static request headers, checked when a Service is
built; the TLS context is built once per service, on first HTTP use.

No HTTP library here: the HTTP layer turns these into its wires' options.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._arguments import explained
from .._errors import ConfigError
from .._validate import fail

if TYPE_CHECKING:
    import ssl


__all__ = [
    "DEFAULT_TLS_VERIFY",
    "TLS",
    "Headers",
    "build_ssl_context",
    "check_headers",
    "check_tls",
]

DEFAULT_TLS_VERIFY = True
"""Verify the server's certificate and host name."""

Headers = tuple[tuple[str, str], ...]
"""Static request headers as ``(name, value)`` pairs, in the order given."""

_PathLike = str | os.PathLike[str]
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_OWNER = "TLS"


def _path(name: str, value: Any, *, directory_ok: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        fail(_OWNER, name, value, "a file path or None")
    path = os.fspath(value)
    if not (os.path.isfile(path) or (directory_ok and os.path.isdir(path))):
        kind = "an existing file or directory" if directory_ok else "an existing file"
        fail(_OWNER, name, path, f"{kind} (PEM)")
    return path


@explained
@dataclass(frozen=True, slots=True, kw_only=True)
class TLS:
    """How a service's HTTP transports speak TLS to its ``https://`` backends.

    Args:
        verify: Verify the server's certificate chain and host name (False turns
            both off: for tests only).
        ca_bundle: PEM file (or directory of hashed certificates, as for
            ``openssl rehash``) of the CAs to trust instead of the default bundle.
        client_cert: PEM client certificate (with its chain) for mutual TLS.
        client_key: PEM private key of ``client_cert``, when not in the same file.
        key_password: Password of an encrypted ``client_key`` (never shown).

    Raises:
        ConfigError: a path that does not exist, ``client_key`` or ``key_password``
            without ``client_cert``, or ``ca_bundle`` with ``verify=False`` (each
            named).
    """

    verify: bool = DEFAULT_TLS_VERIFY
    ca_bundle: _PathLike | None = None
    client_cert: _PathLike | None = None
    client_key: _PathLike | None = None
    key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.verify, bool):
            fail(_OWNER, "verify", self.verify, "True or False")
        ca = _path("ca_bundle", self.ca_bundle, directory_ok=True)
        if ca is not None and not self.verify:
            fail(_OWNER, "ca_bundle", ca, "None when verify=False (nothing is verified)")
        cert = _path("client_cert", self.client_cert)
        key = _path("client_key", self.client_key)
        if key is not None and cert is None:
            fail(_OWNER, "client_key", key, "given with client_cert")
        if self.key_password is not None:
            if not isinstance(self.key_password, str):
                raise ConfigError("TLS: key_password must be a string or None (the value "
                                  "is not shown)", policy=_OWNER)
            if cert is None:
                raise ConfigError("TLS: key_password must be given with client_cert",
                                  policy=_OWNER)
        for name, value in (("ca_bundle", ca), ("client_cert", cert), ("client_key", key)):
            object.__setattr__(self, name, value)

    def build(self) -> ssl.SSLContext:
        """A new ``ssl.SSLContext`` for these settings (loads the files now).

        A Service builds one on first use and shares it among its transports; call
        this yourself to check the files early (a deploy check, say).

        Raises:
            ConfigError: a file is not valid PEM, or the key does not match the
                certificate (naming the field).
        """
        return build_ssl_context(self, _OWNER)

    def __repr__(self) -> str:
        parts = [f"verify={self.verify!r}"]
        parts += [f"{n}={v!r}" for n in ("ca_bundle", "client_cert", "client_key")
                  if (v := getattr(self, n)) is not None]
        if self.key_password is not None:
            parts.append("key_password='***'")
        return f"TLS({', '.join(parts)})"


def _default_cafile() -> str | None:
    try:  # the bundle httpx itself trusts by default
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def build_ssl_context(tls: TLS, owner: str) -> ssl.SSLContext:
    """Build the client ``SSLContext`` of ``tls``; ``owner`` prefixes errors.

    Raises:
        ConfigError: a file could not be loaded (naming the field).
    """
    import ssl  # here, not at import: only services with TLS settings need it

    if not tls.verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca = os.fspath(tls.ca_bundle) if tls.ca_bundle is not None else None
        try:
            if ca is not None and os.path.isdir(ca):
                context = ssl.create_default_context(capath=ca)
            else:
                context = ssl.create_default_context(cafile=ca or _default_cafile())
        except (ssl.SSLError, OSError) as error:
            raise _load_error(owner, "ca_bundle", error) from None
    if tls.client_cert is not None:
        try:
            context.load_cert_chain(os.fspath(tls.client_cert),
                                    os.fspath(tls.client_key) if tls.client_key else None,
                                    tls.key_password)
        except (ssl.SSLError, OSError) as error:
            raise _load_error(owner, "client_cert/client_key", error) from None
    return context


def _load_error(owner: str, name: str, error: Exception) -> ConfigError:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or \
        type(error).__name__
    return ConfigError(f"{owner}: tls.{name} could not be loaded ({reason}); check it is "
                       "PEM, readable, and (for a key) matches the certificate and its "
                       "password", policy="tls")


def check_headers(owner: str, headers: Any) -> Headers:
    """``headers`` (a mapping of name to value) as pairs. Values are secrets: no
    message shows them.

    Raises:
        ConfigError: not a mapping, a name that is not an HTTP token or that routing
            or framing sets (``Host``, ``Content-Length``...), or a value that is not
            a string without line breaks.
    """
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise ConfigError(f"{owner}: headers must be a mapping of header name to value, "
                          f"got a {type(headers).__name__} (the value is not shown)",
                          policy="tls")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            fail(owner, "headers", name, "keyed by HTTP header names")
        if name.lower() in _RESERVED:
            fail(owner, "headers", name, "free of headers the mesh sets itself ("
                 + ", ".join(sorted(_RESERVED)) + ")")
        if name.lower() in seen:
            fail(owner, "headers", name, "free of names repeated in another letter case")
        seen.add(name.lower())
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{owner}: headers[{name!r}] must be a string without line "
                              "breaks (the value is not shown)", policy="tls")
        pairs.append((name, value))
    return tuple(pairs)


def check_tls(owner: str, tls: Any, http_pool: Mapping[str, Any]) -> TLS | None:
    """``tls`` checked against the service's other transport options.

    Raises:
        ConfigError: ``tls`` is not a ``TLS`` or None, or ``http_pool`` also sets
            ``verify`` or ``cert``.
    """
    if tls is None:
        return None
    if not isinstance(tls, TLS):
        fail(owner, "tls", tls, "an ml.TLS(...) or None")
    clash = [k for k in ("verify", "cert") if k in http_pool]
    if clash:
        raise ConfigError(f"{owner}: tls= and http_pool[{clash[0]!r}] both set TLS "
                          "options; give them in tls= only", policy="tls")
    return tls
