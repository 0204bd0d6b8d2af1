"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations

__all__ = ["by_label"]


def by_label(text: str, family: str, label: str) -> dict[str, float]:
    """The samples of ``family`` in ``text``, by the value of their label ``label``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(family + "{"):
            head, _, value = line.rpartition(" ")
            found[head.split(f'{label}="')[1].split('"')[0]] = float(value)
    return found
