"""ARM errors as one exception type: what failed, the ARM code, and whether trying again can help.

Messages hold the operation, group, ARM code and ARM message only; secrets are scrubbed just in case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

# ARM error codes that mean "try again later" whatever the HTTP status (ServiceUnavailable and
# InsufficientCapacity come as 409 or as a failed operation; quota errors come as 400).
TRANSIENT_CODES = frozenset(
    {"ServiceUnavailable", "InsufficientCapacity", "ContainerGroupQuotaReached", "TooManyRequests"}
)
# Retrying these without a change is pointless.
PERMANENT_CODES = frozenset({"InaccessibleImage", "InvalidContainerGroupName", "InvalidImage"})
MAX_MESSAGE_CHARS = 500


class AciError(Exception):
    """An ARM/ACI call failed. The message holds the operation, group, ARM code and ARM message only."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the fields when the exception is pickled (e.g. across worker processes).
        return (_rebuild_aci_error, (str(self), self.status, self.code, self.retryable))


def _rebuild_aci_error(message: str, status: int | None, code: str | None, retryable: bool) -> AciError:
    return AciError(message, status=status, code=code, retryable=retryable)



@contextmanager
def arm_errors(operation: str, name: str, secrets: Any = ()) -> Iterator[None]:
    """Turn SDK exceptions into AciError; `secrets` are scrubbed from the message just in case."""
    try:
        yield
    except HttpResponseError as exc:
        raise aci_error_from_http(operation, name, exc, list(secrets)) from exc
    except AzureError as exc:
        # No HTTP answer at all (connection refused, timeout): the endpoint may come back.
        code = type(exc).__name__
        message = _scrub(f"{operation} {name}: no HTTP answer: {code}: {exc.message}", list(secrets))
        raise AciError(message, status=None, code=code, retryable=True) from exc


def aci_error_from_http(operation: str, name: str, exc: HttpResponseError, secrets: list[str]) -> AciError:
    code, arm_message = _arm_error(exc)
    status = exc.status_code
    if _is_failed_operation(exc):
        # A long-running operation that ended Failed: the HTTP exchange itself was a 200.
        status = None
        how = "the operation failed"
    else:
        how = f"HTTP {status}" if status is not None else "no HTTP answer"
    message = _scrub(f"{operation} {name}: {how}: {code or 'UnknownError'}: {arm_message}", secrets)
    return AciError(message, status=status, code=code, retryable=is_retryable(status, code))


def is_quota_error(code: str | None) -> bool:
    """The regional quota is used up: wait for groups to finish, and run fewer at once."""
    return code is not None and (code == "ContainerGroupQuotaReached" or "quota" in code.lower())


def is_retryable(status: int | None, code: str | None) -> bool:
    if code in PERMANENT_CODES:
        return False
    # 409: a PUT while an earlier one is still provisioning (ContainerGroupTransitioning), or capacity.
    if status is not None and (status in (408, 409, 429) or status >= 500):
        return True
    return code is not None and (code in TRANSIENT_CODES or "quota" in code.lower())


def _is_failed_operation(exc: HttpResponseError) -> bool:
    return exc.status_code is not None and exc.status_code < 300


def _arm_error(exc: HttpResponseError) -> tuple[str | None, str]:
    """(code, message) from the ARM error body: {"error": {"code", "message"}} or an operation status."""
    if exc.error is not None and exc.error.code:
        return exc.error.code, exc.error.message or ""
    body = _json_body(exc)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message") or "")
    return None, exc.reason or "no error details"


def _json_body(exc: HttpResponseError) -> Any:
    try:
        return json.loads(exc.response.text()) if exc.response is not None else None
    except (ValueError, TypeError):
        return None


def _scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message[:MAX_MESSAGE_CHARS]
