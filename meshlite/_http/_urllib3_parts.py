"""What the sync wire changes of urllib3 to send and read as httpx does: the request
target httpx encoded is sent as it is (:class:`Target`), a response is the final
answer, past any informational one, a pool knows the connections it has lent
out, so that closing it can cut them and wake the requests waiting for a free one,
and gets back the connection of a response dropped unclosed (:func:`pool_classes`,
:func:`give_back`), and the timeouts of a request with a deadline are read from it
when used (:class:`DeadlineTimeout`)."""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import weakref
from collections import deque
from typing import Any

import urllib3
from urllib3 import connection as _urllib3_connection
from urllib3 import connectionpool as _connectionpool
from urllib3.exceptions import ClosedPoolError, EmptyPoolError

from .._clock import Clock
from .._fork import fork_safe

__all__ = ["DeadlineTimeout", "Target", "cut", "give_back", "in_use", "pool_classes"]


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


_SPENT = 1e-6
"""The connect timeout once the deadline has passed: a socket given 0 would not
block (a connect or send failing with ``BlockingIOError``, not a timeout)."""


class DeadlineTimeout(urllib3.Timeout):
    """The timeouts of one request with a deadline: its connect and read timeouts (at
    most the time left when the attempt began) are cut to the time left before
    ``deadline`` (on ``clock``) when urllib3 reads them, after the wait for a free
    connection, not when the attempt began. Given to ``urlopen`` as the pool timeout
    too (the wait is ``pool``, at most the time left): a pool of :func:`pool_classes`
    hands a connection got once the deadline has passed back unused, and fails as
    when no connection came (``EmptyPoolError``), the request unsent."""

    def __init__(self, connect: float, read: float, pool: float, deadline: float,
                 clock: Clock) -> None:
        # Not urllib3's __init__: it validates each value (about 100 bytecodes), and the
        # wire gives numbers it computed. `total` stays None, so start_connect() is a
        # no-op and read_timeout ignores it.
        self._connect = self.connect = connect
        self._read = self.read = read
        self.total = None
        self._start_connect = None
        self.pool = pool
        self.deadline = deadline
        self.clock = clock

    def clone(self) -> DeadlineTimeout:
        # urllib3 clones a timeout for each request (a copy of urllib3's class, which
        # would lose the deadline): this one is made for one request already.
        return self

    def start_connect(self) -> float:
        return 0.0  # no `total` to time

    @property
    def connect_timeout(self) -> float:
        left = self.deadline - self.clock.monotonic()
        given = self.connect
        return given if given < left else left if left > _SPENT else _SPENT

    @property
    def read_timeout(self) -> float:
        # 0 once the deadline has passed: urllib3 then raises its read timeout
        # (ReadTimeoutError) without waiting for the answer.
        left = self.deadline - self.clock.monotonic()
        given = self.read
        return given if given < left else left if left > 0.0 else 0.0


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
        if not self.length and not self.chunked:
            self._check_framing()

    def _check_framing(self) -> None:
        """Refuse the framing headers httpx refuses: http.client reads the body of a
        ``Transfer-Encoding`` other than ``chunked`` (``gzip, chunked``), or of a
        ``Content-Length`` that is no number (``-1``), until the connection closes,
        the chunks' framing in it. Checked for answers with no length (a body read
        so, or none: HEAD, 204, 304, ``Content-Length: 0``), as a valid length or
        ``chunked`` rules the two out."""
        coding = self.headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            raise http.client.HTTPException(
                f"Transfer-Encoding {coding!r} is not supported: only chunked is")
        length = self.headers.get("content-length")
        if length is not None and not (length.isascii() and length.strip().isdigit()):
            raise http.client.HTTPException(f"bad Content-Length {length!r}")

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


_LOCK_WAIT = 0.005
"""Seconds a dropped response's finalizer waits for each lock of its pool: held a few
microseconds by another thread, or for good by its own thread when a garbage
collection ran the finalizer inside the pool's locked code (then the slot goes back
with the pool's next request). Short, as the finalizer may run inside any request."""


def _free(lock: Any) -> bool:
    """Whether ``lock`` could be taken within :data:`_LOCK_WAIT` (it is released again)."""
    if lock.acquire(timeout=_LOCK_WAIT):
        lock.release()
        return True
    return False


class _Lends:
    """What a pool of the wire adds to urllib3's: the connections it has lent out (a
    request on its way, or a response body still being read), which urllib3 does not
    track, and the slots of responses dropped before they gave their connection back
    (:meth:`give_back`). A dropped response's connection leaves with it (weakly held)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lent: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lent_lock = fork_safe(threading.Lock())
        self._owed: deque[Any] = deque()  # dropped responses whose slot is still out
        super().__init__(*args, **kwargs)

    def _get_conn(self, timeout: Any = None) -> Any:
        if self._owed:
            self._repay()
        try:
            if type(timeout) is DeadlineTimeout:  # the request's own, from the sync wire
                conn = self._get_conn_by(timeout)
            else:
                conn = super()._get_conn(timeout)  # type: ignore[misc]
        except EmptyPoolError as error:
            raise self._exhausted(error, timeout) from None
        with self._lent_lock:
            self._lent.add(conn)
        return conn

    def _exhausted(self, error: EmptyPoolError, timeout: Any) -> EmptyPoolError:
        """urllib3's error for a wait for a free connection that timed out, saying
        why (urllib3's: "Pool is empty and a new connection can't be opened due to
        blocking mode")."""
        if type(timeout) is DeadlineTimeout:
            if timeout.clock.monotonic() >= timeout.deadline:
                return error  # (_get_conn_by's, or the wait ended at the deadline)
            timeout = timeout.pool
        free = self.pool  # type: ignore[attr-defined]
        if free is None or timeout is None:  # (closed meanwhile; a wait never ends)
            return error
        return EmptyPoolError(
            self,  # type: ignore[arg-type]  # (a pool of the wire's: a ConnectionPool)
            f"no free connection within the pool timeout ({timeout:g} s): all {free.maxsize} "
            "connections to the backend (http_pool limits max_connections) are in use; "
            "raise max_connections or the client's pool timeout, or lower the load")

    def give_back(self, response: Any) -> None:
        """Close the connection of ``response``, dropped while it still held it (its
        body neither read to the end nor closed), and give its slot back: the pool,
        which every client of the service shares, would otherwise have one connection
        less for good, and none after ``max_connections`` such responses.

        Runs in a finalizer, which a garbage collection may start on a thread inside
        this pool's own locked code: when a lock of the pool is not free within
        :data:`_LOCK_WAIT`, the slot goes back with the pool's next request."""
        response.close()  # its socket (takes no lock)
        free = self.pool  # type: ignore[attr-defined]
        if _free(self._lent_lock) and (free is None or _free(free.mutex)):
            response.release_conn()
        else:
            self._owed.append(response)

    def close(self) -> None:
        """Close the pool, and wake the threads waiting for a free connection, which
        would wait out their pool timeout (for good without one): each finds the pool
        closed (:meth:`_new_conn`) and wakes the next."""
        waited = self.pool  # type: ignore[attr-defined]
        super().close()  # type: ignore[misc]
        if waited is not None:
            self._waited_on = waited
            with contextlib.suppress(queue.Full):  # (never: close() emptied it)
                waited.put(None, block=False)

    _waited_on: Any = None
    """The queue of free connections of the pool before it closed."""

    def _new_conn(self) -> Any:
        if self.pool is None:  # type: ignore[attr-defined]  # closed while waiting
            if self._waited_on is not None:
                with contextlib.suppress(queue.Full):
                    self._waited_on.put(None, block=False)  # the next waiter's turn
            raise ClosedPoolError(
                self,  # type: ignore[arg-type]  # (a pool of the wire's: a ConnectionPool)
                "the pool closed while the request waited for a free connection")
        return super()._new_conn()  # type: ignore[misc]

    def _repay(self) -> None:
        """Give back the slots :meth:`give_back` could not."""
        while self._owed:
            try:
                response = self._owed.popleft()
            except IndexError:  # another thread took the last one
                return
            response.release_conn()

    def _get_conn_by(self, timeout: DeadlineTimeout) -> Any:
        """A connection for a request whose deadline is ``timeout``'s: none once the
        deadline has passed, while waiting for it (a request got so would not have
        the time to be sent and answered)."""
        conn = super()._get_conn(timeout.pool)  # type: ignore[misc]
        if timeout.clock.monotonic() >= timeout.deadline:
            super()._put_conn(conn)  # type: ignore[misc]  # (never lent out)
            raise EmptyPoolError(
                self,  # type: ignore[arg-type]  # (a pool of the wire's: a ConnectionPool)
                "the deadline passed while waiting for a free connection: the request "
                "was not sent")
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            with self._lent_lock:
                self._lent.discard(conn)
        super()._put_conn(conn)  # type: ignore[misc]

    def in_use(self) -> bool:
        """Whether a connection lent out is still open (closing now would cut it)."""
        with self._lent_lock:
            return any(conn.sock is not None for conn in self._lent)

    def cut(self) -> None:
        """Shut down the sockets of the connections lent out: a thread blocked on one
        (reading a body, waiting for an answer) wakes with the end of the stream
        instead of waiting for its read timeout, or for good without one. A socket
        closed from another thread would not wake it. The plain socket's shutdown,
        also for TLS: ``SSLSocket.shutdown`` drops the TLS object under the reader."""
        with self._lent_lock:
            lent = list(self._lent)
        for conn in lent:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # closed meanwhile
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Pool(_Lends, urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(_Lends, urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _UnverifiedPool(_TLSPool):
    """The pool of a service that turned verification off (``TLS(verify=False)``):
    that was its choice, so no ``InsecureRequestWarning`` on every request."""

    def _validate_conn(self, conn: Any) -> None:
        urllib3.HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


def give_back(response: urllib3.BaseHTTPResponse) -> None:
    """Give back the connection (and pool slot) ``response`` still holds, as it is
    dropped unclosed (see :meth:`_Lends.give_back`)."""
    pool = getattr(response, "_pool", None)
    if isinstance(pool, _Lends):
        pool.give_back(response)


def in_use(pool: urllib3.HTTPConnectionPool) -> bool:
    """Whether ``pool`` (one of :func:`pool_classes`') has a connection lent out."""
    return isinstance(pool, _Lends) and pool.in_use()


def cut(pool: urllib3.HTTPConnectionPool) -> None:
    """Cut the connections ``pool`` has lent out (see :meth:`_Lends.cut`)."""
    if isinstance(pool, _Lends):
        pool.cut()


def pool_classes(verify: bool) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """urllib3's pool classes by scheme, for a manager that ``verify``-ies TLS or not."""
    return {"http": _Pool, "https": _TLSPool if verify else _UnverifiedPool}
