"""A Cache decorating methods: the object is part of the key, unless ``key=`` leaves
it out; an object that cannot be hashed is named as the method's object."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import meshlite as ml


@dataclass
class Account:  # eq=True and not frozen: __hash__ is None
    region: str
    loads: int = 0

    @ml.Cache(ttl=60.0)
    def balance(self, uid: int) -> int:
        self.loads += 1
        return uid


def test_an_unhashable_object_is_named_as_the_methods_object() -> None:
    # The message used to suggest key=lambda items: tuple(items), about a list.
    with pytest.raises(TypeError) as raised:
        Account("eu").balance(1)
    assert str(raised.value) == (
        "Cache: the arguments of 'Account.balance' are not hashable (Account, the "
        "object the method is called on); give Account a __hash__, or pass key= that "
        "leaves the object out or names what matters of it, e.g. "
        "key=lambda self, *args: args")


async def test_async_an_unhashable_object_is_named_as_the_methods_object() -> None:
    @dataclass
    class Profiles:
        region: str

        @ml.Cache(ttl=60.0)
        async def get(self, uid: int) -> int:
            return uid

    with pytest.raises(TypeError, match=r"\(Profiles, the object the method is called on\)"):
        await Profiles("eu").get(1)


def test_an_unhashable_argument_after_the_object_keeps_the_plain_message() -> None:
    class Users:
        @ml.Cache(ttl=60.0)
        def many(self, ids: list[int]) -> list[int]:
            return ids

    with pytest.raises(TypeError, match=r"are not hashable \(list\); pass key= to build"):
        Users().many([1, 2])


def test_a_key_naming_what_matters_of_the_object_shares_entries() -> None:
    cache = ml.Cache(ttl=60.0, key=lambda self, uid: (self.region, uid))

    @dataclass
    class Ledger:
        region: str
        loads: int = 0

        @cache
        def balance(self, uid: int) -> tuple[str, int]:
            self.loads += 1
            return (self.region, uid)

    one, other, elsewhere = Ledger("eu"), Ledger("eu"), Ledger("us")
    assert one.balance(1) == other.balance(1) == ("eu", 1)
    assert (one.loads, other.loads) == (1, 0)
    assert elsewhere.balance(1) == ("us", 1)
    assert cache.invalidate(one, 1) == 1
