from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest


class DnsServer:
    """A tiny authoritative DNS server on 127.0.0.1 (UDP, a free port), in a thread.

    ``records[(name, type)] = (ttl, [rdata text...])``; SRV answers carry the A
    records of their targets in the additional section when ``glue`` is on. ``mode``
    is ``"answer"``, ``"servfail"`` or ``"drop"`` (no reply at all).
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self.glue = True
        self.mode = "answer"
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set(self, name: str, rdtype: str, ttl: int, *texts: str) -> None:
        self.records[(name, rdtype)] = (ttl, list(texts))

    def count(self, name: str, rdtype: str) -> int:
        return self.queries.count((name, rdtype))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(dns.message.from_wire(data))
            if reply is not None:
                self._sock.sendto(reply.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if self.mode == "drop":
            return None
        reply = dns.message.make_response(query)
        if self.mode == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        entry = self.records.get((name, rdtype))
        if entry is None:
            if not any(n == name for n, _ in self.records):
                reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        ttl, texts = entry
        reply.answer.append(dns.rrset.from_text_list(question.name, ttl, "IN", rdtype, texts))
        if rdtype == "SRV" and self.glue:
            for text in texts:
                target = text.split()[-1].rstrip(".").lower()
                glue = self.records.get((target, "A"))
                if glue is not None:
                    reply.additional.append(dns.rrset.from_text_list(
                        target + ".", glue[0], "IN", "A", glue[1]))
        return reply

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    try:
        yield server
    finally:
        server.close()
