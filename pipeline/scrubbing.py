"""Activities return and raise nothing that carries a secret: durable history, run status, manifests and
logs are built from what they return (see scoring/secrets.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from scoring.secrets import scrub, scrub_json

F = TypeVar("F", bound=Callable)


class ScrubbedError(RuntimeError):
    """An activity failure whose message carried a secret, re-raised with the secret masked."""


def scrubbed(activity: F) -> F:
    """Scrub an activity's result and, if its error message carries a secret, its error."""

    @functools.wraps(activity)
    def wrapper(*args, **kwargs):
        try:
            result = activity(*args, **kwargs)
        except Exception as e:
            text = str(e)
            clean = scrub(text)
            if clean != text:
                raise ScrubbedError(f"{type(e).__name__}: {clean}") from None
            raise
        if hasattr(result, "to_json") and hasattr(type(result), "from_json"):  # a typed payload
            return type(result).from_json(scrub_json(result.to_json()))
        return scrub_json(result)

    return wrapper  # type: ignore[return-value]
