"""The orchestration: plan a run, fan out one container group per shard, always delete it, publish.

Importing the package registers the orchestrators and activities on `bp` (a Durable Functions blueprint).
"""

from . import activities, run_orchestrator, shard_orchestrator  # noqa: F401 - registers the functions
from .blueprint import bp

__all__ = ["bp"]
