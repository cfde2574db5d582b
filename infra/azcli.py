"""The Azure CLI, run or only printed: every deploy step goes through Runner.az."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class DeployError(Exception):
    """A step failed or a precondition does not hold; the message says which and why."""


@dataclass
class Runner:
    """Runs az commands, or only prints them (print_only). Captured outputs become <placeholders> then."""

    print_only: bool
    out: Callable[[str], None] = print
    steps: list[str] = field(default_factory=list)

    def step(self, title: str) -> None:
        self.steps.append(title)
        self.out(f"== {len(self.steps)}. {title}")

    def note(self, text: str) -> None:
        self.out(f"   {text}")

    def show(self, argv: Iterable[str], secrets: Iterable[str] = ()) -> None:
        line = shlex.join(list(argv))
        for secret in secrets:
            if secret:
                line = line.replace(secret, "***")
        self.out(f"$ {line}")

    def az(self, *args: str, capture: str = "", secrets: Iterable[str] = (), check: bool = True,
           stdin: str | None = None) -> str:
        """Run `az args`; with capture, return its stdout (or `<capture>` when only printing)."""
        argv = ["az", *args]
        self.show(argv, secrets)
        if stdin is not None:
            self.out("   with stdin:")
            for line in stdin.splitlines():
                self.out(f"   | {line}")
        if self.print_only:
            return f"<{capture}>" if capture else ""
        result = subprocess.run(argv, capture_output=bool(capture), text=True, cwd=REPO, input=stdin)
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-5:] if capture else []
            raise DeployError(f"`az {args[0]} {args[1] if len(args) > 1 else ''}` failed "
                              f"(exit {result.returncode})" + (": " + " | ".join(detail) if detail else ""))
        return (result.stdout or "").strip() if capture else ""
