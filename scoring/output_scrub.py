"""The container's output with every known secret masked, whoever writes it.

Masking what Python prints is not enough: model code runs in R's PSOCK nodes, which R starts with
`system(wait = FALSE)`, so they inherit the worker's file descriptors 1 and 2 (R's `outfile` is only an
R-level sink). A model that runs `system("env")`, writes to "/dev/stdout", or calls C code that prints,
writes straight into the container's log. So `python -m scoring run` forks first: the child does the work
with its descriptors 1 and 2 on pipes, and this process (the container's main process, PID 1 in ACI)
reads the pipes, masks every secret it knows (scoring.secrets) a line at a time, writes the result to the
real output, and exits with the child's exit code (128 + N when signal N killed it, as a container
reports it). It forwards SIGTERM/SIGINT to the child and reaps orphans (R nodes re-parented to PID 1).

Kept light on purpose (standard library and scoring.secrets only): it forks before the worker imports
the Azure SDK and R, so the process that stays behind holds little memory.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from types import FrameType

from .secrets import scrub

CHUNK = 65536
MAX_LINE = 1 << 20  # a "line" longer than this is written anyway, keeping a tail for a secret cut in two
KEEP_TAIL = 4096
# After the child exits, how long to drain what an orphan (an R node that outlived it) still writes.
DRAIN_SECONDS = 5.0


class LineScrubber:
    """Masks secrets in a byte stream one line at a time, so a secret split across two reads is still
    found; writes the result to file descriptor `fd`."""

    def __init__(self, fd: int, secrets: tuple[str, ...] | None = None) -> None:
        self.fd, self.secrets, self._pending = fd, secrets, b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        cut = self._pending.rfind(b"\n") + 1
        if not cut and len(self._pending) > MAX_LINE:
            cut = len(self._pending) - KEEP_TAIL
        if cut:
            self._write(self._pending[:cut])
            self._pending = self._pending[cut:]

    def finish(self) -> None:
        if self._pending:
            self._write(self._pending)
            self._pending = b""

    def _write(self, data: bytes) -> None:
        # surrogateescape: bytes that are not UTF-8 pass through unchanged (secrets are ASCII).
        clean = scrub(data.decode("utf-8", "surrogateescape"), self.secrets).encode("utf-8", "surrogateescape")
        view = memoryview(clean)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BrokenPipeError:  # nobody reads our output any more: nothing left to protect
                return


def scrub_process_output() -> None:
    """Fork. Returns in the child, whose stdout and stderr now go through the scrubber; in the parent,
    scrubs the child's output until it exits, then exits with its code (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.dup2(out_write, 1)
        os.dup2(err_write, 2)
        for fd in (out_read, out_write, err_read, err_write):
            os.close(fd)
        return
    os.close(out_write)
    os.close(err_write)
    code = supervise(child, {out_read: LineScrubber(1), err_read: LineScrubber(2)})
    os._exit(code)


def supervise(child: int, scrubbers: dict[int, LineScrubber]) -> int:
    """Pump each pipe through its scrubber until the child has exited and the pipes are drained (or
    DRAIN_SECONDS after its exit); the child's exit code, 128 + N if signal N ended it."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    selector = selectors.DefaultSelector()
    for fd in scrubbers:
        selector.register(fd, selectors.EVENT_READ)
    status: int | None = None
    drain_until = 0.0
    while selector.get_map():
        for key, _ in selector.select(timeout=0.2):
            data = os.read(key.fd, CHUNK)
            if data:
                scrubbers[key.fd].feed(data)
            else:
                selector.unregister(key.fd)
                os.close(key.fd)
        if status is None:
            status = _reap(child)
            drain_until = time.monotonic() + DRAIN_SECONDS
        elif time.monotonic() > drain_until:
            break
    for scrubber in scrubbers.values():
        scrubber.finish()
    if status is None:
        status = _reap(child, block=True)
    if status is None:  # cannot happen: only this function reaps the child
        return 1
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _reap(child: int, block: bool = False) -> int | None:
    """Reap every exited child (orphans re-parented to us too); the wait status of `child` if it exited."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block and found is None else os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child:
            found = status
