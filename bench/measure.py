"""Timing and memory helpers for the benchmarks (Linux /proc; no third-party packages)."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def high_water_kb(pid: int) -> int:
    """A process's peak resident set size so far (VmHWM), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """A live process's CPU time so far (user + system), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


NAMES: dict[int, str] = {}  # pid -> command name, as last seen


def _processes() -> tuple[dict[int, list[int]], dict[int, float]]:
    """Children of each process, and each process's CPU seconds so far (user + system)."""
    tree: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        NAMES[int(entry.name)] = stat[stat.index("(") + 1:stat.rindex(")")]
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return tree, cpu


def _has_tag(pid: int, tag: bytes) -> bool:
    try:
        return tag in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class TreePeak:
    """Peak memory of a process, its descendants and every process that inherited its `BENCH_TAG` (R's PSOCK
    nodes are started in the background and re-parented to init): every process's own VmHWM,
    sampled while it runs, summed. An upper bound on the tree's peak (the peaks need not coincide). Also the
    tree's CPU seconds as last sampled (a lower bound, by at most one interval per process)."""

    def __init__(self, pid: int, tag: str = "", interval: float = 0.1) -> None:
        self.pid = pid
        self.tag = f"BENCH_TAG={tag}".encode() if tag else b""
        self.tagged: dict[int, bool] = {}
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree, cpu = _processes()
            if self.tag:
                for pid in cpu:
                    if pid not in self.tagged:
                        self.tagged[pid] = _has_tag(pid, self.tag)
            todo, seen = [self.pid] + [pid for pid in cpu if self.tagged.get(pid)], set()
            while todo:
                pid = todo.pop()
                if pid not in seen:
                    seen.add(pid)
                    todo += tree.get(pid, [])
            for pid in seen:
                self.peaks[pid] = max(self.peaks.get(pid, 0), high_water_kb(pid))
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu.get(pid, 0.0))
            self._stop.wait(self.interval)

    def stop(self) -> tuple[float, float]:
        """(MB of the whole tree, CPU seconds of the whole tree)."""
        self._stop.set()
        self._thread.join()
        return sum(self.peaks.values()) / 1024, sum(self.cpu.values())


@dataclass
class Measured:
    seconds: float  # wall clock
    peak_mb: float  # the process tree's peak RSS (see TreePeak)
    cpu_seconds: float  # the process tree's CPU time


def run_measured(cmd: list[str], cwd: Path, env: dict | None = None) -> Measured:
    """Run to completion, with wall time, peak memory and CPU time of the process and its descendants."""
    tag = uuid.uuid4().hex
    env = {**(os.environ if env is None else env), "BENCH_TAG": tag}
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreePeak(process.pid, tag)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - t0
    peak_mb, cpu = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({process.returncode}): {stderr[-2000:]}")
    return Measured(elapsed, peak_mb, cpu)


def spread(values: list[float]) -> str:
    """median, min-max and each value, for one line of output."""
    if not values:
        return "n/a"
    med = statistics.median(values)
    half_range = (max(values) - min(values)) / 2 / med * 100 if med else 0.0
    return (f"median {med:.3f}  range {min(values):.3f}-{max(values):.3f} (+/-{half_range:.0f}%)  "
            f"of {[round(v, 3) for v in values]}")
