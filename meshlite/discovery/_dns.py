"""The DNS provider: A/AAAA or SRV records (dnspython), re-resolved at their TTL."""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigError
from .._validate import at_least, fail, is_ip, positive
from ..routing._backend import Backend
from ._provider import BaseProvider, Resolution

__all__ = ["DEFAULT_DNS_TIMEOUT", "DNS_RECORDS", "DnsProvider"]

DEFAULT_DNS_TIMEOUT = 2.0
"""Seconds one resolve may take, all nameservers and retries included."""

DNS_RECORDS = ("A", "AAAA", "A+AAAA", "SRV")
"""What ``record=`` accepts."""

_ZERO_WEIGHT = 0.01  # RFC 2782: weight 0 means "a very small chance" next to others

_log = logging.getLogger("meshlite.discovery")


def _address(scheme: str, ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"{scheme}://{host}:{port}"


class DnsProvider(BaseProvider):
    """Backends from DNS: each address of an A/AAAA name (on ``port``), or each target
    of an SRV name (on the port the record gives, weighted by its weight, lowest
    priority only). The driver re-resolves when the answer's TTL runs out.

    Args:
        name: The name to resolve (``"users.internal"``, or
            ``"_http._tcp.users.internal"`` for SRV).
        record: ``"A"``, ``"AAAA"``, ``"A+AAAA"`` (both) or ``"SRV"``.
        port: The backends' port for A/AAAA records (required there).
        scheme: URL scheme of the backends' addresses.
        nameservers: Nameserver IPs to ask; ``None`` uses the system's
            (``/etc/resolv.conf``).
        nameserver_port: Their port.
        timeout: Seconds one resolve may take, > 0.

    Raises:
        ConfigError: a bad argument, or dnspython is not installed.
    """

    kind = "dns"

    def __init__(
        self,
        name: str,
        *,
        record: str = "A",
        port: int | None = None,
        scheme: str = "http",
        nameservers: Sequence[str] | None = None,
        nameserver_port: int = 53,
        timeout: float = DEFAULT_DNS_TIMEOUT,
    ) -> None:
        nameservers = _checked(name, record, port, scheme, nameservers, nameserver_port)
        self.name = name
        self.record = record
        self.port = port
        self.scheme = scheme
        self.nameservers = None if nameservers is None else tuple(nameservers)
        self.nameserver_port = nameserver_port
        self.timeout = positive("DnsProvider", "timeout", timeout)
        self._resolver: Any = None
        self._missing: set[str] = set()  # SRV targets left out for want of an address

    def _make_resolver(self) -> Any:
        import dns.asyncresolver

        resolver = dns.asyncresolver.Resolver(configure=self.nameservers is None)
        if self.nameservers is not None:
            resolver.nameservers = list(self.nameservers)
        resolver.port = self.nameserver_port
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        return resolver

    async def resolve(self) -> Resolution:
        """Query DNS.

        Raises:
            dns.exception.DNSException: no such name, no answer, a timeout...
            LookupError: no target of an SRV record has an address (one without
                is left out while others have one).
        """
        if self._resolver is None:
            self._resolver = self._make_resolver()
        if self.record == "SRV":
            return await self._resolve_srv()
        types = ("A", "AAAA") if self.record == "A+AAAA" else (self.record,)
        assert self.port is not None
        ips, ttl = await self._addresses(self.name, types, required=True)
        return Resolution(tuple(Backend(_address(self.scheme, ip, self.port)) for ip in ips),
                          ttl)

    async def _addresses(self, name: str, types: Sequence[str], *, required: bool,
                         ) -> tuple[list[str], float | None]:
        import dns.resolver

        ips: list[str] = []
        ttls: list[float] = []
        last: Exception | None = None
        for rdtype in types:
            try:
                answer = await self._resolver.resolve(name, rdtype, search=False)
            except dns.resolver.NoAnswer as error:  # the name exists, without this type
                last = error
                continue
            except dns.resolver.NXDOMAIN:
                if required:
                    raise
                break  # (an SRV target that does not exist: no address, see below)
            ttls.append(float(answer.rrset.ttl))
            # Sorted: a record set has no order, and a stable one keeps the backend
            # list unchanged between resolves when the records are.
            ips.extend(sorted((r.address for r in answer), key=ipaddress.ip_address))
        if not ips and required and last is not None:
            raise last
        return ips, min(ttls, default=None)

    async def _resolve_srv(self) -> Resolution:
        answer = await self._resolver.resolve(self.name, "SRV", search=False)
        ttls = [float(answer.rrset.ttl)]
        records = list(answer)
        best = min(r.priority for r in records)
        records = sorted((r for r in records if r.priority == best),
                         key=lambda r: (r.target.to_text().lower(), r.port))
        glue = _glue(answer.response)
        all_zero = all(r.weight == 0 for r in records)
        backends: list[Backend] = []
        missing: set[str] = set()
        for r in records:
            target = r.target.to_text(omit_final_dot=True)
            ips, ttl = glue.get(target.lower(), ([], None))
            if not ips:
                ips, ttl = await self._addresses(target, ("A", "AAAA"), required=False)
            if not ips:
                missing.add(target)
            if ttl is not None:
                ttls.append(ttl)
            weight = 1.0 if all_zero else (float(r.weight) or _ZERO_WEIGHT)
            backends.extend(
                Backend(_address(self.scheme, ip, r.port), weight=weight,
                        metadata={"target": target, "priority": r.priority})
                for ip in ips)
        if not backends:  # (the driver keeps the last backends and says this)
            raise LookupError(f"no target of the SRV record {self.name} has an address: "
                              + ", ".join(sorted(missing)))
        self._note(missing, {r.target.to_text(omit_final_dot=True) for r in records})
        return Resolution(tuple(backends), min(ttls))

    def _note(self, missing: set[str], targets: set[str]) -> None:
        # A target without an address (its record not published yet, or removed
        # before the SRV record was) is left out and the others are used: failing
        # the whole resolve would keep the last backends, stale, for as long as it
        # lasts. Said once when it starts and once when it ends, not every TTL.
        for target in sorted(missing - self._missing):
            _log.warning("DNS discovery of %s: SRV target %s has no address (no such "
                         "name, or no A/AAAA record); left out while the other targets "
                         "are used, logged again once it has one", self.name, target)
        for target in sorted((self._missing - missing) & targets):
            _log.info("DNS discovery of %s: SRV target %s has an address again",
                      self.name, target)
        self._missing = missing  # (a target gone from the record is forgotten)

    def __repr__(self) -> str:
        return f"DnsProvider({self.name!r}, record={self.record!r})"


def _glue(response: Any) -> dict[str, tuple[list[str], float]]:
    """Addresses of SRV targets that came in the answer's additional section."""
    import dns.rdatatype

    found: dict[str, tuple[list[str], float]] = {}
    for rrset in response.additional:
        if rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            continue
        key = rrset.name.to_text(omit_final_dot=True).lower()
        ips, ttl = found.get(key, ([], float(rrset.ttl)))
        ips.extend(sorted((r.address for r in rrset), key=ipaddress.ip_address))
        found[key] = (ips, min(ttl, float(rrset.ttl)))
    return found


def _checked(name: object, record: object, port: object, scheme: object,
             nameservers: Sequence[str] | None, nameserver_port: int) -> Sequence[str] | None:
    """Refuse a bad DnsProvider argument (named), or a missing dnspython; returns the
    nameservers as a sequence (one given as a string is a list of one)."""
    owner = "DnsProvider"
    if not isinstance(name, str) or not name.strip(". "):
        fail(owner, "name", name, "a DNS name such as 'users.internal'")
    if record not in DNS_RECORDS:
        fail(owner, "record", record, "one of " + ", ".join(DNS_RECORDS))
    if record == "SRV":
        if port is not None:
            fail(owner, "port", port, "None for SRV records (they carry the port)")
    elif port is None or isinstance(port, bool) or not isinstance(port, int) \
            or not 0 < port < 65536:
        fail(owner, "port", port, "a port number in [1, 65535] for A/AAAA records")
    if not isinstance(scheme, str) or not scheme.isidentifier():
        fail(owner, "scheme", scheme, "a URL scheme such as 'http'")
    if nameservers is not None:
        if isinstance(nameservers, str):
            nameservers = [nameservers]
        for ns in nameservers:
            if not (isinstance(ns, str) and is_ip(ns)):
                fail(owner, "nameservers", ns, "IP addresses of nameservers")
    at_least(owner, "nameserver_port", nameserver_port, 1)
    if importlib.util.find_spec("dns") is None:  # found now, not at the first resolve
        raise ConfigError("DnsProvider: DNS discovery needs dnspython: pip install "
                          "dnspython", policy="discovery")
    return nameservers
