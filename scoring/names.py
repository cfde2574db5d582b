"""Validation of every name that becomes part of a blob path: postcodes, model names, versions.

Whatever a user sends, a name that passes here cannot escape its container or prefix ('/', '..', '\\'
and control characters are impossible).
"""

from __future__ import annotations

import os
import re

# Numeric postcodes (4 digits: CH/AT/DK/..., 5 digits: DE/FR/...). Override with SCORING_POSTCODE_PATTERN;
# whatever the override, SAFE_TOKEN below still applies.
DEFAULT_POSTCODE_PATTERN = r"[0-9]{4,5}"
SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MODEL_NAME = re.compile(r"(?=.{1,30}$)[a-z0-9]+(-[a-z0-9]+)*")
RESERVED_VERSIONS = {"champion", "latest"}


class InvalidName(ValueError):
    pass


def postcode_pattern() -> re.Pattern[str]:
    return re.compile(os.environ.get("SCORING_POSTCODE_PATTERN", DEFAULT_POSTCODE_PATTERN))


def is_valid_postcode(value: str, pattern: re.Pattern[str] | None = None) -> bool:
    pattern = pattern or postcode_pattern()
    return bool(pattern.fullmatch(value)) and bool(SAFE_TOKEN.fullmatch(value)) and ".." not in value


def check_postcode(value: object) -> str:
    if not isinstance(value, str) or not is_valid_postcode(value):
        raise InvalidName(f"invalid postcode {value!r}: expected {postcode_pattern().pattern}")
    return value


def check_postcodes(value: object, max_count: int | None = None) -> list[str]:
    """A non-empty list of distinct valid postcodes, in the given order; InvalidName says what is wrong."""
    if not isinstance(value, list) or not value:
        raise InvalidName("must be a non-empty list of postcodes")
    if max_count is not None and len(value) > max_count:
        raise InvalidName(f"{len(value)} given; at most {max_count}")
    checked = [check_postcode(p) for p in value]
    if len(set(checked)) != len(checked):
        raise InvalidName("lists a postcode twice")
    return checked


def check_model_name(value: object) -> str:
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise InvalidName(
            f"invalid model name {value!r}: use 1-30 lowercase letters, digits and single '-' between them"
        )
    return value


def check_version(value: object, allow_alias: bool = False) -> str:
    if not isinstance(value, str) or not SAFE_TOKEN.fullmatch(value) or ".." in value:
        raise InvalidName(f"invalid version {value!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if not allow_alias and value in RESERVED_VERSIONS:
        raise InvalidName(f"version name {value!r} is reserved for the alias of that name")
    return value


def check_blob_path(value: object, what: str = "blob name") -> str:
    """A relative blob path: segments of safe tokens, no '..', no leading '/'."""
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidName(f"invalid {what} {value!r}")
    segments = value.split("/")
    if any(not SAFE_TOKEN.fullmatch(s) or ".." in s for s in segments):
        raise InvalidName(
            f"invalid {what} {value!r}: segments must be letters, digits, '.', '_' or '-' (no '..', no '//')"
        )
    return value


def check_prefix(value: object, what: str = "prefix") -> str:
    """A blob 'folder' prefix: a blob path that ends with '/' (added when missing); '' is the root."""
    if value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidName(f"invalid {what} {value!r}")
    return check_blob_path(value.rstrip("/"), what) + "/"
