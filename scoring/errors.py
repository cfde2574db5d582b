"""Exceptions as text: the one-line reasons that go into statuses, manifests, logs and HTTP answers."""

from __future__ import annotations


def one_line(e: BaseException) -> str:
    """The first line of the exception's message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def typed_one_line(e: BaseException) -> str:
    """`<type>: <first line>`, for errors whose type says as much as their message (storage, ARM, network)."""
    return f"{type(e).__name__}: {one_line(e)}"
