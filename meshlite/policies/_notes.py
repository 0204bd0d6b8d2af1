"""The notes policies add to an error they give up on, bounded per error object."""

from __future__ import annotations

__all__ = ["MAX_NOTES", "add_note"]

MAX_NOTES = 8
"""The most notes policies add to one error object. Nested pipelines add one note each
as they give up; a function that raises one shared exception object on every call
would otherwise grow its notes (and the memory they hold) by one a call, for ever."""

_OURS = ("meshlite: ", "Hedge: ")  # how the notes policies add begin


def add_note(error: BaseException, text: str) -> None:
    """Add ``text`` (beginning as one of ``_OURS``) to ``error``'s notes, unless the
    policies added ``MAX_NOTES`` to it already."""
    notes = getattr(error, "__notes__", None)
    if notes and sum(1 for n in notes if isinstance(n, str) and n.startswith(_OURS)) >= MAX_NOTES:
        return
    error.add_note(text)
