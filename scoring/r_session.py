"""The embedded R session (rpy2): sources the R side of the contract and calls it, a batch at a time."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

R_DIR = Path(__file__).resolve().parent / "R"


class RError(RuntimeError):
    pass


@cache
def _r():
    # Imported lazily: `python -m scoring --help` and the Functions app never start R.
    # rpy2 exports R's LD_LIBRARY_PATH (with /usr/lib/x86_64-linux-gnu first) into os.environ. This process's
    # loader has already read it; only children would inherit it, and a Python child built against another
    # OpenSSL then fails `import ssl`. So put it back as it was.
    saved = os.environ.get("LD_LIBRARY_PATH")
    import rpy2.rinterface_lib.callbacks as callbacks
    import rpy2.robjects as ro

    if saved is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = saved

    # R's console chatter would interleave with our logs; errors come back as exceptions instead.
    callbacks.consolewrite_print = lambda s: None
    callbacks.consolewrite_warnerror = lambda s: None
    # R calls its ProcessEvents hook every few thousand steps and while it waits on its nodes; rpy2's hook is a
    # Python no-op that must take the GIL, so while our download threads ran, R crawled (a loop 50x slower).
    # Without a hook R checks for interrupts as a plain R process does.
    from rpy2.rinterface_lib import embedded, openrlib

    openrlib.rlib.ptr_R_ProcessEvents = embedded.ffi.NULL
    for script in ("score.R", "model_aware.R", "model_profile.R", "register.R"):
        ro.r["source"](str(R_DIR / script))
    ro.r["source"](str(R_DIR / "isolation.R"))  # after score.R: wraps its node functions
    return ro


def call(function: str, *args):
    """Call an R function from score.R/register.R; an R error becomes RError with R's own message."""
    ro = _r()
    from rpy2.rinterface_lib.embedded import RRuntimeError

    converted = [_to_r(ro, a) for a in args]
    try:
        return ro.r[function](*converted)
    except RRuntimeError as e:
        raise RError(_r_message(str(e))) from None


def _r_message(text: str) -> str:
    """R's 'Error in f(x) : message' as one line holding just the message."""
    text = re.sub(r"^\s*Error( in .*?)?\s*:\s*", "", text.strip(), count=1, flags=re.S)
    return " ".join(text.split())


def _to_r(ro, value):
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, int) for v in value):
            return ro.FloatVector([float(v) for v in value])  # offsets may pass R's integer range
        return ro.StrVector([str(v) for v in value])
    return value


def named_strings(value) -> dict[str, str]:
    """An R named character vector as a dict (empty vector -> {})."""
    names = list(value.names) if len(value) and value.names is not None else []
    return {str(n): str(v) for n, v in zip(names, value, strict=True)}


def r_version() -> str:
    ro = _r()
    return str(ro.r('paste(R.version$major, R.version$minor, sep = ".")')[0])


def available_cores() -> int:
    """Cores this container may use: SCORING_WORKERS, else the CPU affinity (what ACI gives us)."""
    configured = os.environ.get("SCORING_WORKERS", "")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)))

