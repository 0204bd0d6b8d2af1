from __future__ import annotations

import pytest

from meshlite.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
