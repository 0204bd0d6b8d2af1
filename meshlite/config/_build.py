"""From a validated config to the objects of a mesh (a :class:`Plan`), recording every
problem; building has no side effect, so a plan that fails changes nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from .._clock import Clock
from .._errors import ConfigError
from .._http._probe import HttpHealthCheck
from .._pipeline import Pipeline
from ..routing._address import VALID_ADDRESS, address_problem
from ..routing._backend import Backend
from ..routing._chains import CompiledPipeline
from ..routing._lifecycle import dependency_order
from ..routing._outlier import OutlierDetection
from ..routing._service import Service
from ..routing._tls import TLS
from ._discovery import DiscoverySpec, build_discovery
from ._fieldset import field_names, fields_set
from ._policies import BuiltPolicies, _Invalid, build_policies, exception_types
from ._problems import Path, Problems, construct
from ._schema import (
    BackendSection,
    HealthCheckSection,
    MeshConfig,
    OutlierDetectionSection,
    ServiceSection,
    TLSSection,
)
from ._sections import POLICY_SECTIONS
from ._source import Document
from ._steps import Steps, drain
from ._top import TopPlan, check_top_level

__all__ = ["Plan", "ServicePlan", "build_plan", "build_steps", "frame_of"]


@dataclass
class ServicePlan:
    """One service as built: its Service (new, with an empty pipeline: the real one
    is installed when the plan is prepared or applied; or, when its routing is
    unchanged, the running one), policies, discovery, backends, and what the diff
    compares."""

    name: str
    section: ServiceSection
    service: Service
    policies: BuiltPolicies
    discovery: DiscoverySpec | None
    frame: dict[str, Any]
    backends: tuple[Backend, ...]
    compiled: CompiledPipeline | None = None
    """The new pipeline of a running service, compiled ahead (``_apply.prepare``)."""
    installed: bool = False
    """A new service given its pipeline and discovery ahead (``_apply.prepare``)."""
    prepared: bool = False
    """``compiled`` is decided (None: the policies did not change)."""
    adopted: bool = False
    """A new service given the mesh's clock and metrics ahead
    (``_apply.adopt_steps``)."""
    raw: bytes | None = None
    """The service's section as read from the file (after ``${VAR}``, profile and
    overrides), pickled: a reload whose section has the same bytes reuses this plan
    as it is (``_reuse``)."""

    def pipeline(self) -> Pipeline:
        """A new pipeline of this plan's policies, outermost first."""
        return Pipeline(*(policy for _, policy in self.policies.values()), service=self.name)


@dataclass
class Plan:
    """A whole config as built."""

    document: Document
    config: MeshConfig
    services: dict[str, ServicePlan] = field(default_factory=dict)
    top: TopPlan = field(default_factory=lambda: TopPlan(None, None))


def frame_of(section: ServiceSection) -> dict[str, Any]:
    """What a service is apart from its policies (and, without discovery, its
    backends): a change here rebuilds the service instead of updating it."""
    skip = set(POLICY_SECTIONS)
    if section.discovery is None:
        skip.add("backends")
    return {k: v for k, v in section.dump(exclude_unset=True).items() if k not in skip}


def _backends(sections: list[BackendSection], path: Path, problems: Problems) -> list[Backend]:
    found: list[Backend] = []
    for i, b in enumerate(sections):
        args = {("address" if k == "url" else k): v for k, v in b.arguments().items()}
        backend = construct(Backend, args, problems, (*path, "backends", i),
                            field_names(BackendSection), {"address": "url"})
        if backend is None:
            continue
        problem = address_problem(backend.address)
        if problem is not None:  # it would fail at its first call: refuse it now
            problems.add((*path, "backends", i, "url"),
                         f"must be {VALID_ADDRESS}; this one {problem}, got {b.url!r}")
            continue
        found.append(backend)
    return found


def _outlier(section: ServiceSection, path: Path, problems: Problems, clock: Clock | None,
             ) -> OutlierDetection | EllipsisType | None:
    if "outlier_detection" not in fields_set(section):
        return ...
    od = section.outlier_detection
    if od is None:
        return None
    here = (*path, "outlier_detection")
    args: dict[str, Any] = {**od.arguments(), "clock": clock}
    if args.get("failure_on") is not None:
        try:
            args["failure_on"] = exception_types(args["failure_on"], (*here, "failure_on"))
        except _Invalid as invalid:
            problems.add(invalid.path, invalid.message)
            del args["failure_on"]
    return construct(OutlierDetection, args, problems, here,
                     field_names(OutlierDetectionSection))


def _health(section: ServiceSection, path: Path, problems: Problems) -> HttpHealthCheck | None:
    if section.health_check is None:
        return None
    return construct(HttpHealthCheck, section.health_check.arguments(), problems,
                     (*path, "health_check"), field_names(HealthCheckSection))


def _tls(section: ServiceSection, path: Path, problems: Problems, base: str) -> TLS | None:
    if section.tls is None:
        return None
    args = section.tls.arguments()
    for key in ("ca_bundle", "client_cert", "client_key"):
        if isinstance(args.get(key), str):
            args[key] = os.path.join(base, args[key])  # an absolute path stays as it is
    return construct(TLS, args, problems, (*path, "tls"), field_names(TLSSection))


def _service(name: str, section: ServiceSection, problems: Problems, plan: Plan,
             previous: ServicePlan | None, clock: Clock | None) -> ServicePlan | None:
    path: Path = ("services", name)
    count = len(problems.errors)
    policies = build_policies({k: getattr(section, k) for k in POLICY_SECTIONS},
                              set(fields_set(section)), path, problems,
                              previous.policies if previous else None, clock, name)
    backends = tuple(_backends(section.backends, path, problems))
    if previous is not None and backends == previous.backends:
        backends = previous.backends  # the same: applying compares them by identity first
    frame = frame_of(section)
    if previous is not None and previous.frame == frame:  # routing unchanged: no rebuild
        if len(problems.errors) > count:
            return None
        return ServicePlan(name, section, previous.service, policies, previous.discovery,
                           frame, backends)
    health = _health(section, path, problems)
    outlier = _outlier(section, path, problems, clock)
    base = os.path.dirname(os.path.abspath(plan.document.path))
    tls = _tls(section, path, problems, base)
    discovery = None
    if section.discovery is not None:
        discovery = build_discovery(section.discovery, (*path, "discovery"), problems, base,
                                    plan.document.secrets.mask)
    options: dict[str, Any] = {
        k: getattr(section, k) for k in ("balancer", "retry_non_idempotent", "panic_mode",
                                         "headers")
        if k in fields_set(section)}
    if tls is not None:
        options["tls"] = tls
    service = construct(Service, {"name": name, "backends": backends, "pipeline": Pipeline(),
                                  "health_check": health, "outlier_detection": outlier,
                                  "depends_on": section.depends_on, **options},
                        problems, path, field_names(ServiceSection))
    if service is None or len(problems.errors) > count:
        return None
    return ServicePlan(name, section, service, policies, discovery, frame, backends)


def _dependencies(plan: Plan, others: Mapping[str, Service], problems: Problems,
                  ) -> Steps[None]:
    names = set(plan.config.services) | set(others)
    edges = False
    for name, section in plan.config.services.items():
        yield
        for i, dep in enumerate(section.depends_on):
            edges = True
            if dep not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.add(("services", name, "depends_on", i),
                             f"{dep!r} is not a service (services: {known})")
            elif dep in section.depends_on[:i]:
                problems.add(("services", name, "depends_on", i),
                             f"{dep!r} is listed twice")
    if problems or not edges:  # no service of the config depends on another: no cycle
        return
    try:
        dependency_order({**others, **{n: s.service for n, s in plan.services.items()}})
    except ConfigError as error:
        problems.add(("services",), str(error).removeprefix("Mesh: "))


def build_plan(document: Document, config: MeshConfig, problems: Problems, *,
               previous: Plan | None = None, others: Mapping[str, Service] | None = None,
               clock: Clock | None = None, environ: Mapping[str, str] | None = None,
               ) -> Plan:
    """Build every service of ``config``; policies whose section did not change since
    ``previous`` are reused. ``others`` are services of the mesh not managed by the
    config (for ``depends_on``). Problems are recorded, not raised."""
    return drain(build_steps(document, config, problems, previous=previous, others=others,
                             clock=clock, environ=environ))


def build_steps(document: Document, config: MeshConfig, problems: Problems, *,
                previous: Plan | None = None, others: Mapping[str, Service] | None = None,
                clock: Clock | None = None, environ: Mapping[str, str] | None = None,
                reuse: Mapping[str, ServicePlan] | None = None) -> Steps[Plan]:
    """:func:`build_plan` a service at a time (yielding before each). The
    services in ``reuse`` (read from the same data as their plan there) are taken
    as they are, not built again."""
    plan = Plan(document, config)
    for name, section in config.services.items():
        yield
        known = reuse.get(name) if reuse is not None else None
        if known is not None and known.section is section:
            plan.services[name] = known
            continue
        old = previous.services.get(name) if previous is not None else None
        built = _service(name, section, problems, plan, old, clock)
        if built is not None:
            plan.services[name] = built
    yield from _dependencies(plan, others or {}, problems)
    plan.top = check_top_level(config, problems, environ,
                               base=os.path.dirname(os.path.abspath(document.path)))
    return plan
