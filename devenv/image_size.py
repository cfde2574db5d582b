"""Estimate the scoring image's installed size without Docker: `python -m devenv.image_size`.

Debian part: `apt-get --simulate` installs apt-packages.txt (--no-install-recommends, as the Dockerfile does)
on an EMPTY package database (Dir::State::status=/dev/null), which lists the whole dependency closure; each
package's `Installed-Size` comes from `apt-cache show`. The base image, debian:bookworm-slim, is taken as
the same kind of closure of `apt` and every Essential or priority-`required` package (what debootstrap's
minbase variant installs), resolved with the image's packages in one go so alternatives settle alike.
Installed-Size counts /usr/share/doc and man pages, which the slim image leaves out, so this errs high by a
few MB. Python part: the
files of the wheels `scoring/requirements.txt` pulls in (its pins and their dependencies, as installed in
.venv), summed from their installed RECORDs. Needs `apt-get update` to have run once (apt lists present).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1000 * 1000


def apt_packages(path: Path = REPO / "apt-packages.txt") -> list[str]:
    """The pinned `name=version` lines of the shared package list."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def apt_closure(packages: list[str]) -> list[str]:
    """Every package apt would install for `packages` on a machine that has nothing installed."""
    out = subprocess.run(
        ["apt-get", "--simulate", "-o", "Dir::State::status=/dev/null", "install", "--no-install-recommends",
         *packages], capture_output=True, text=True, check=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"^Inst (\S+)", out, re.M)})


def base_packages() -> list[str]:
    """apt and the Essential / priority-required packages (debootstrap minbase, i.e. the slim image)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Priority} ${Essential}\n"],
                         capture_output=True, text=True, check=True).stdout
    # usr-is-merged: bookworm images are merged-/usr; without it apt would satisfy init-system-helpers'
    # "usrmerge | usr-is-merged" with usrmerge and count perl into the base.
    wanted = {"apt", "usr-is-merged"}
    for line in out.splitlines():
        name, priority, essential = (line.split() + ["", "", ""])[:3]
        if priority == "required" or essential == "yes":
            wanted.add(name)
    return sorted(wanted)


def apt_sizes(names: list[str]) -> dict[str, int]:
    """name -> Installed-Size in bytes of the candidate version."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True,
                         check=True).stdout
    sizes: dict[str, int] = {}
    for stanza in out.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): ?(.*)$", stanza, re.M))
        if "Package" in fields and fields["Package"] not in sizes:
            sizes[fields["Package"]] = int(fields.get("Installed-Size", "0")) * 1024
    return sizes


def requirement_names(path: Path) -> list[str]:
    return [re.split(r"[=<>\[; ]", line.strip(), maxsplit=1)[0] for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def wheel_closure(roots: list[str]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need (extras and environment markers not taken)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for requirement in dist.requires or []:
            if "extra ==" in requirement or "python_version <" in requirement:
                continue
            todo.append(re.split(r"[=<>!~\[; (]", requirement, maxsplit=1)[0])
    return list(seen.values())


def wheel_bytes(dists: list[metadata.Distribution]) -> int:
    total = 0
    for dist in dists:
        for file in dist.files or []:
            located = Path(dist.locate_file(file))
            if located.is_file() and "__pycache__" not in located.parts:
                total += located.stat().st_size
    return total


def estimate() -> dict:
    base = base_packages()
    base_closure = set(apt_closure(base))
    # Resolved together with the base, so that alternatives are settled as they are in the image.
    closure = apt_closure(base + apt_packages())
    sizes = apt_sizes(sorted(base_closure | set(closure)))
    base = sum(sizes.get(name, 0) for name in base_closure)
    added_names = [name for name in closure if name not in base_closure]
    added = sum(sizes.get(name, 0) for name in added_names)
    dists = wheel_closure(requirement_names(REPO / "scoring" / "requirements.txt"))
    wheels = wheel_bytes(dists)
    return {
        "base_packages": len(base_closure),
        "base_mb": round(base / MB),
        "debian_added_packages": len(added_names),
        "debian_added_mb": round(added / MB),
        "wheels": sorted(d.metadata["Name"] for d in dists),
        "wheels_mb": round(wheels / MB),
        "total_mb": round((base + added + wheels) / MB),
        "largest_added": sorted(((n, round(sizes.get(n, 0) / MB, 1)) for n in added_names),
                                key=lambda item: -item[1])[:8],
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(json.dumps(estimate(), indent=2))


if __name__ == "__main__":
    main()
