"""Time as text: the one format for stored timestamps, and ISO 8601 in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Whole seconds, UTC, with Z: blob metadata, tags, manifests.
SECONDS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# With microseconds: the worker's status.json (started, finished).
MICROS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def now_seconds() -> str:
    """Now, e.g. 2026-11-23T06:00:41Z."""
    return utc_now().strftime(SECONDS_FORMAT)


def now_micros() -> str:
    """Now, e.g. 2026-11-23T06:00:41.123456Z."""
    return utc_now().strftime(MICROS_FORMAT)


def iso_or_none(value: Any) -> str | None:
    """A datetime as ISO 8601; text (already formatted) and None unchanged."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def parse_iso(text: str) -> datetime:
    """ISO 8601 with 'Z' or an offset; a naive time is taken as UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
