"""What the sync wire changes of urllib3 to send and read as httpx does: the request
target httpx encoded is sent as it is (:class:`Target`), and a response is the final
answer, past any informational one (:func:`pool_classes`)."""

from __future__ import annotations

import http.client
from typing import Any

import urllib3
from urllib3 import connection as _urllib3_connection
from urllib3 import connectionpool as _connectionpool

__all__ = ["Target", "pool_classes"]


class Target(str):
    """A request target (path and query) httpx has encoded: sent as it is."""

    __slots__ = ()


def _keep_encoded_targets() -> None:
    """Make urllib3 send a :class:`Target` as it is. Its pools encode each target
    again (``_encode_target``): escapes in upper case (``%2f`` -> ``%2F``), ``[``,
    ``|``... escaped, and after one stray ``%`` every escape encoded twice
    (``/100%?q=%e2`` -> ``/100%25?q=%25E2``, another resource), where httpx sends
    what it encoded. Every other target is still urllib3's to encode."""
    encode = getattr(_connectionpool, "_encode_target", None)
    if encode is None or getattr(encode, "keeps_encoded", False):
        return

    def encode_target(target: str) -> str:
        return target if type(target) is Target else encode(target)

    encode_target.keeps_encoded = True  # type: ignore[attr-defined]
    _connectionpool._encode_target = encode_target  # type: ignore[attr-defined]


_keep_encoded_targets()


class _HeadReader:
    """A response's file while its head is read: notes the end of the stream, which
    http.client takes for the blank line that ends the head."""

    __slots__ = ("_fp", "ended")

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self.ended = False

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self._fp.readline(limit)
        if not line:
            self.ended = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, reading past every informational answer (1xx but
    101) to the final one, as httpx does: http.client skips ``100 Continue`` alone,
    so a ``103 Early Hints`` was taken for the answer and the real one left on the
    connection for the next request. A head the server cut short (closing before
    its blank line) is an error, as in httpx, not a whole answer with no body."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        fp = self.fp
        head = self.fp = _HeadReader(fp)
        try:
            super().begin()
        finally:
            if self.fp is head:
                self.fp = fp
        if head.ended:
            raise http.client.HTTPException(
                "the server closed the connection in the middle of the response head")

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 < status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the informational answer's, dropped


class _Connection(_urllib3_connection.HTTPConnection):
    response_class = _FinalResponse


class _TLSConnection(_urllib3_connection.HTTPSConnection):
    response_class = _FinalResponse


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _UnverifiedPool(_TLSPool):
    """The pool of a service that turned verification off (``TLS(verify=False)``):
    that was its choice, so no ``InsecureRequestWarning`` on every request."""

    def _validate_conn(self, conn: Any) -> None:
        urllib3.HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


def pool_classes(verify: bool) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """urllib3's pool classes by scheme, for a manager that ``verify``-ies TLS or not."""
    return {"http": _Pool, "https": _TLSPool if verify else _UnverifiedPool}
