"""Normalising payloads into JSON text, the form the SDK expects for inputs and results."""

from __future__ import annotations

import json
from typing import Any


def body_to_json_text(body: bytes) -> str | None:
    """Turn a durable HTTP API request body into the JSON text of the payload.

    The SDK's client serialises the payload itself and then aiohttp JSON-encodes that string again, so the
    body is usually a JSON string whose content is JSON. A plain HTTP client sends the value directly.
    """
    if not body or not body.strip():
        return None
    value: Any = json.loads(body)
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            return json.dumps(value)
    return json.dumps(value)


def loads_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
