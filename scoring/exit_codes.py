"""Exit codes of `python -m scoring run`, the contract between the worker and the shard orchestration."""

EXIT_OK = 0  # every postcode scored
EXIT_CRASH = 1  # an unexpected crash (Python's own exit code for an uncaught exception)
EXIT_FATAL = 2  # the shard could not run at all (bad job spec, storage unreachable, version or input missing)
EXIT_PARTIAL = 3  # some postcodes failed; status.json lists each with its reason
