"""Secret values this process knows, and scrubbing them out of any text it writes (reasons, logs, status).

Model code runs in our containers and can read the environment; a model's error message may therefore
carry the storage connection string. Every reason, log line and status the worker or the orchestration
writes goes through `scrub` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache

MASK = "***"
# Variables whose values are secrets by name (connection strings, keys, SAS tokens, client secrets).
SECRET_NAME = re.compile(r"(CONNECTION_STRING|ACCOUNT_KEY|ACCOUNTKEY|SECRET|PASSWORD|TOKEN|SAS|^STORAGE$|"
                         r"_KEY$|^AzureWebJobsStorage$)", re.IGNORECASE)
# Secret parts inside a value: AccountKey=..., SharedAccessSignature=..., sig=... of a SAS URL.
SECRET_PART = re.compile(r"(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|sig)=([^;&\s\"']+)")
MIN_SECRET = 8  # shorter values are not worth masking (and would mask ordinary words)


def secrets_of(env: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values in an environment: whole values of secret-named variables, and the key/SAS parts of
    every value (a connection string's AccountKey is masked even where the rest is not)."""
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET:
            found.add(value)
        for _, part in SECRET_PART.findall(value):
            if len(part) >= MIN_SECRET:
                found.add(part)
    return tuple(sorted(found, key=len, reverse=True))  # longest first: a value before its parts


@cache
def _process_secrets() -> tuple[str, ...]:
    return secrets_of(os.environ)


def scrub(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """The text with every known secret value (and any key/SAS-looking part) replaced by ***."""
    if not text:
        return text
    for secret in _process_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return SECRET_PART.sub(lambda m: f"{m.group(1)}={MASK}", text)


def scrub_json(value: object, secrets: tuple[str, ...] | None = None) -> object:
    """scrub applied to every string (and key) of a JSON-like value."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets) if isinstance(k, str) else k: scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v, secrets) for v in value]
    return value
