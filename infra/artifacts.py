"""What the deploy ships, computed from the repository: the image tag, the app package, the blob trigger's
name, and the image's R packages out of an ACR task log."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import zipfile
from pathlib import Path

from infra.azcli import DeployError

REPO = Path(__file__).resolve().parent.parent

# An Event Grid-sourced blob trigger: `@<app or blueprint>.blob_trigger(..., source=...EVENT_GRID)` + its def.
BLOB_TRIGGER = re.compile(r"@\w+\.blob_trigger\((?P<args>[^)]*)\)\s*(?:@[^\n]*\n\s*)*(?:async\s+)?def\s+(?P<name>\w+)")
R_PACKAGES_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*=[^;\s]+(;[A-Za-z][A-Za-z0-9.]*=[^;\s]+)*$")
# Never in the app package, whatever .funcignore says: local state, secrets, environments, this tooling.
ALWAYS_EXCLUDED = (".git", ".venv", ".venv-tools", "node_modules", ".make", ".dev", "local.settings.json",
                   "__pycache__", ".pytest_cache", ".ruff_cache", "dist", "infra")
# Without a .funcignore, leave out what only development needs.
DEFAULT_FUNCIGNORE = ("tests", "devenv", "bench", "sample", "infra", ".ci", "Dockerfile", "Makefile", "package.json",
                      "package-lock.json", "requirements-dev.txt", "pyproject.toml", "local.settings*.json", "*.md",
                      ".gitignore", ".dockerignore", "*.zip")


def dockerfile_inputs(repo: Path = REPO) -> list[Path]:
    """The Dockerfile and every file its COPY instructions take from the build context."""
    dockerfile = repo / "Dockerfile"
    paths = [dockerfile]
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].upper() != "COPY":
            continue
        sources = [p for p in parts[1:-1] if not p.startswith("--")]
        for source in sources:
            target = repo / source
            if target.is_dir():
                paths += sorted(p for p in target.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            elif target.exists():
                paths.append(target)
            else:
                raise DeployError(f"Dockerfile copies {source!r}, which does not exist")
    return paths


def image_tag(repo: Path = REPO) -> str:
    """A tag that changes exactly when what goes into the image changes: rebuilds are skipped otherwise."""
    digest = hashlib.sha256()
    for path in dockerfile_inputs(repo):
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def funcignore_patterns(repo: Path = REPO) -> list[str]:
    path = repo / ".funcignore"
    if path.exists():
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        patterns = [ln.rstrip("/") for ln in lines if ln and not ln.startswith("#")]
    else:
        patterns = list(DEFAULT_FUNCIGNORE)
    return patterns + list(ALWAYS_EXCLUDED)


def package_files(repo: Path = REPO) -> list[Path]:
    """The files of the app package (relative), .funcignore applied: what `func publish` would send."""
    patterns = funcignore_patterns(repo)

    def ignored(rel: Path) -> bool:
        return any(fnmatch.fnmatch(part, p) for part in rel.parts for p in patterns) or any(
            fnmatch.fnmatch(rel.as_posix(), p) for p in patterns)

    files = []
    for root, dirs, names in os.walk(repo):  # prunes ignored directories (.venv, node_modules) as it goes
        here = Path(root).relative_to(repo)
        dirs[:] = sorted(d for d in dirs if not ignored(here / d) and not (Path(root) / d).is_symlink())
        for file_name in sorted(names):
            rel = here / file_name
            if not ignored(rel) and not (repo / rel).is_symlink():
                files.append(rel)
    required = {Path("function_app.py"), Path("host.json"), Path("requirements.txt")}
    missing = required - set(files)
    if missing:
        raise DeployError(f"the app package would lack {sorted(map(str, missing))}: check .funcignore")
    return files


def build_package(repo: Path, target: Path) -> int:
    files = package_files(repo)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(repo / rel, rel.as_posix())
    return len(files)


def r_packages_task(image: str) -> str:
    """ACR task (YAML, on stdin) that runs the image once with `cat` as entrypoint."""
    return ("version: v1.1.0\nsteps:\n"
            f"  - cmd: $Registry/{image} /opt/app/r-packages.txt\n"
            "    entryPoint: cat\n")


def parse_r_packages(output: str) -> str:
    """The "name=version;..." line the image wrote to /opt/app/r-packages.txt, out of `az acr run` output."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if R_PACKAGES_LINE.match(line):
            return line
    raise DeployError("the image printed no R package list (expected name=version;... from /opt/app/r-packages.txt)")


def blob_trigger_function(repo: Path = REPO) -> str:
    """The name of the app's Event Grid blob trigger (its webhook is addressed by function name)."""
    found = []
    for rel in package_files(repo):
        if rel.suffix == ".py":
            found += [m["name"] for m in BLOB_TRIGGER.finditer((repo / rel).read_text()) if "EVENT_GRID" in m["args"]]
    if len(found) != 1:
        raise DeployError(f"expected one Event Grid blob trigger in the app, found {found or 'none'}")
    return found[0]
