"""Which services of a new plan change, and how, against the plan in force: worked
out a service at a time (between turns of the event loop during a reload), so the
registry change that follows (``_apply.apply_plan``) visits only the services it
registers or removes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._build import Plan, ServicePlan
from ._steps import Steps, drain

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["Diff", "adopt_steps", "diff_of", "diff_steps"]


@dataclass
class Diff:
    """How a new plan's services differ from those of the plan in force. A service
    whose plan is the one in force (its section unchanged) is in none of the lists."""

    put: list[tuple[ServicePlan, ServicePlan | None]] = field(default_factory=list)
    """Services to register: new, or replacing the one in force (routing changed),
    with the plan they replace."""
    update: list[tuple[ServicePlan, ServicePlan]] = field(default_factory=list)
    """Running services whose policies or backends may have changed: (the plan in
    force, the new one)."""
    removed: list[ServicePlan] = field(default_factory=list)
    """Plans in force whose service is gone from the new plan."""
    kept: list[str] = field(default_factory=list)
    """What set by hand on the services replaced was carried over to the new ones
    (``_apply.carry``), filled in by ``_apply.register``."""


def diff_steps(old: Plan | None, new: Plan) -> Steps[Diff]:
    """The :class:`Diff` of ``new`` against ``old`` (None: nothing from a config yet),
    yielding before each service."""
    diff = Diff()
    before = old.services if old is not None else {}
    for name, plan in new.services.items():
        yield
        previous = before.get(name)
        if previous is plan:
            continue
        if previous is not None and previous.frame == plan.frame:
            diff.update.append((previous, plan))
        else:
            diff.put.append((plan, previous))
    for name, previous in before.items():
        yield
        if name not in new.services:
            diff.removed.append(previous)
    return diff


def diff_of(old: Plan | None, new: Plan) -> Diff:
    """:func:`diff_steps` in one go."""
    return drain(diff_steps(old, new))


def adopt_steps(mesh: Mesh, diff: Diff) -> Steps[None]:
    """Give each service ``diff`` registers the mesh's clock and metrics ahead, a
    service at a time (``Mesh.adopt``): none is registered yet, so no call sees it,
    and the registry change that follows is little more than that."""
    for plan, _ in diff.put:
        yield
        if not plan.adopted:
            mesh.adopt(plan.service)
            plan.adopted = True
