"""What a forked child resets is registered in one process-wide fork hook:
``os.register_at_fork`` keeps every callable it is given for good."""

from __future__ import annotations

import gc
import os
from typing import Any

import pytest

import meshlite as ml
from meshlite import _fork


def test_made_and_dropped_caches_leave_no_fork_hook_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[Any] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **kw: hooks.append(kw))
    gc.collect()
    before = len(_fork._registered)
    caches = [ml.Cache(ttl=60.0, maxsize=10) for _ in range(200)]
    assert len(_fork._registered) >= before + 200  # each store resets in a child
    del caches
    gc.collect()
    assert hooks == []  # one hook a cache grew the interpreter's list for good
    assert len(_fork._registered) == before  # and a dropped cache's entry goes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_still_resets_what_registered() -> None:
    class Resets:
        def __init__(self) -> None:
            self.reset = False

        def after_fork(self) -> None:
            self.reset = True

    obj = Resets()
    _fork.after_fork_in_child(obj)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        os.write(write, b"1" if obj.reset else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert obj.reset is False  # the parent's is untouched
