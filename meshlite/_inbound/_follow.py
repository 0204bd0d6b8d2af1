"""The middleware's view of its mesh's config file: the ``inbound:`` plan in force,
checked per request with one attribute read."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ConfigFollower"]


class ConfigFollower:
    """Tells the middleware when the ``inbound:`` section of ``mesh``'s config changed.

    A mesh no config file manages never changes (the config package is looked up in
    ``sys.modules``, never imported for it).
    """

    __slots__ = ("_managed", "_plan", "_section")

    def __init__(self, mesh: Any) -> None:
        load = sys.modules.get("meshlite.config._load")
        self._managed = None if load is None else load.managed_of(mesh)
        self._plan: Any = None
        self._section: Any = ...  # nothing seen yet

    def stale(self) -> bool:
        """Whether a reload replaced the plan since the last :meth:`changed`."""
        managed = self._managed
        return managed is not None and managed.plan is not self._plan

    def changed(self) -> Any:
        """The new inbound plan (None when the section is gone), or False when the
        section is as it was (its rate-limit and concurrency state is then kept)."""
        managed = self._managed
        if managed is None:
            return False
        self._plan = managed.plan
        inbound = self._plan.top.inbound
        section = None if inbound is None else inbound.section
        if section == self._section:
            return False
        self._section = section
        return inbound
