"""``Auth``'s options: what it is given wrongly, said plainly."""

from __future__ import annotations

import pytest

import meshlite as ml
from meshlite.asgi import Auth


def test_auth_with_neither_keys_nor_verifier_says_none_was_given() -> None:
    # It said "api_keys/verify must be at least one of ..., got None".
    with pytest.raises(ml.ConfigError, match=r"^Auth: give at least one of api_keys= or "
                                             r"verify=; none was given$"):
        Auth()
