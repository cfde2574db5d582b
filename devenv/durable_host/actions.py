"""Reading the SDK's orchestrator state: flattening actions and recovering state from exceptions."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType

OUT_OF_PROC_MARKER = "$OutOfProcData$:"
COMPOUND_TYPES = (ActionType.WHEN_ALL, ActionType.WHEN_ANY)


def flatten_actions(actions: list[Any]) -> list[dict[str, Any]]:
    """All atomic actions in scheduling order.

    Schema 0 nests lists of lists; schema >= 1 returns [[...]] with WhenAll/WhenAny compound actions whose
    children sit in compoundActions. The list is append-only across episodes, so index = identity.
    """
    flat: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            flat.extend(flatten_actions(item))
        elif item.get("actionType") in COMPOUND_TYPES:
            flat.extend(flatten_actions(item.get("compoundActions", [])))
        else:
            flat.append(item)
    return flat


def parse_orchestrator_failure(exc: Exception) -> tuple[str, dict[str, Any]]:
    """The SDK raises Exception('<message>\\n\\n$OutOfProcData$:<state json>') when user code throws."""
    text = str(exc)
    if OUT_OF_PROC_MARKER not in text:
        return f"{type(exc).__name__}: {text}", {}
    message, _, state_json = text.partition(OUT_OF_PROC_MARKER)
    try:
        state = json.loads(state_json)
    except ValueError:
        state = {}
    return str(state.get("error") or message.strip()), state


@dataclass(frozen=True)
class RetryPolicy:
    first_interval_ms: float
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_interval_ms: float = math.inf

    @classmethod
    def from_action(cls, options: dict[str, Any]) -> RetryPolicy:
        # The Python SDK sends only the first two; the others are honoured when present (Durable Task names).
        return cls(
            first_interval_ms=float(options["firstRetryIntervalInMilliseconds"]),
            max_attempts=int(options["maxNumberOfAttempts"]),
            backoff_coefficient=float(options.get("backoffCoefficient") or 1.0),
            max_interval_ms=float(options.get("maxRetryIntervalInMilliseconds") or math.inf),
        )

    def delay_ms(self, failed_attempts: int) -> float:
        """Durable Task's ComputeNextDelay: first * coefficient^(retryCount), capped at the max interval."""
        return min(self.first_interval_ms * self.backoff_coefficient ** (failed_attempts - 1),
                   self.max_interval_ms)
