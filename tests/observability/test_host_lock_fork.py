"""The host's ``dashboard.lock`` in a forked child: a worker forked from the leading
process (``preload_app``, a prefork pool) does not lead, and does not keep the lock
held once the leader lets go (an ``flock`` belongs to the open file, which a fork
shares: the child's copy of the descriptor held it for as long as the child ran)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from _forked import in_child_meanwhile

from meshlite.observability._multiproc import HostLock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def test_a_child_of_the_leader_neither_leads_nor_keeps_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "dashboard.lock")
    leader = HostLock(path)
    assert leader.acquire()
    taken: list[bool] = []

    def child(wait: Callable[[], None]) -> int:
        held_here = leader.held  # a copy of the parent's lock, not the child's
        wait()  # runs on until the parent's worker has tried to take over
        return 0 if held_here else 1

    def let_go_then_take() -> None:  # in the parent, while the child runs
        leader.release()
        taker = HostLock(path)  # another worker, taking over from the leader
        taken.append(taker.acquire())
        taker.release()

    answer = in_child_meanwhile(child, let_go_then_take)
    assert taken == [True]  # nobody could lead while the child ran
    assert answer == 1
