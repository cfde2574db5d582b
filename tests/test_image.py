"""The scoring image is the CI environment: same Debian packages, same Python, nothing scoring/ can't run on.

One pinned list, apt-packages.txt, is read by the Makefile (every development and CI machine) and by the
Dockerfile. These tests fail when the three drift apart, when this machine is not what the list says, and
when scoring/ uses Python features newer than the image's Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from devenv.image_size import apt_packages

# Python 3 of the base images a Dockerfile might start from, when it does not install it from our list.
# (rocker/r-ver 4.2.2 is Ubuntu 22.04 "jammy", whose python3 is 3.10.)
KNOWN_BASE_PYTHON = {"rocker/r-ver:4.2.2": "3.10", "ubuntu:22.04": "3.10", "ubuntu:jammy": "3.10"}


def pinned() -> dict[str, str]:
    return dict(line.split("=", 1) for line in apt_packages())


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def base_image() -> str:
    return re.search(r"^FROM\s+(\S+)", dockerfile(), re.M).group(1)


def image_python() -> str:
    """major.minor of the image's python3: from the pinned list when the image installs it, else its base."""
    if "apt-packages.txt" in dockerfile() and "python3" in pinned():
        return ".".join(pinned()["python3"].split(".")[:2])
    if base_image() not in KNOWN_BASE_PYTHON:
        pytest.fail(f"unknown base image {base_image()}: say which python3 it has in KNOWN_BASE_PYTHON")
    return KNOWN_BASE_PYTHON[base_image()]


def test_every_line_of_the_package_list_is_pinned():
    for line in apt_packages():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+=[0-9][A-Za-z0-9.+:~-]*", line), f"not name=version: {line!r}"
    assert {"r-base-core", "r-cran-forecast", "python3"} <= set(pinned())


def test_the_image_is_debian_bookworm_installing_the_shared_list():
    assert base_image().startswith("debian:bookworm"), f"the image starts FROM {base_image()}, not Debian bookworm"
    text = dockerfile()
    assert "COPY apt-packages.txt" in text and "--no-install-recommends" in text
    # Nothing from CRAN or a second package list: the list is the only source of system packages.
    assert not re.search(r"install2\.r|install\.packages|CRAN", text), "the image installs R packages from CRAN"
    for command in re.findall(r"apt-get install[^\n\\&]*", text):
        assert "apt-get install -y --no-install-recommends" in command and not re.search(r"\b[a-z0-9-]+=", command)


def test_the_makefile_installs_the_same_list():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^APT_PACKAGES := \$\(shell grep -v .* apt-packages\.txt\)", makefile, re.M)
    # Packages of its own only on lines naming them development-only (not for the image).
    for line in makefile.splitlines():
        if re.search(r"\br-cran-|\br-base-core\b", line):
            assert line.startswith("DEV_ONLY_PACKAGES :="), f"the Makefile names image packages of its own: {line}"
    # rpy2 is built the same way (ABI mode, no compiler) on the machines and in the image.
    assert "RPY2_CFFI_MODE=ABI" in makefile and "RPY2_CFFI_MODE=ABI" in dockerfile()


def test_this_machine_has_exactly_the_pinned_packages():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version}\\n", *pinned()],
                         capture_output=True, text=True).stdout
    installed = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for name, version in pinned().items():
        assert installed.get(name) == version, f"{name}: this machine has {installed.get(name)}, the list {version}"


@pytest.mark.integration  # runs Rscript
def test_r_and_its_packages_are_the_listed_upstream_versions():
    r_packages = {name[len("r-cran-"):]: version for name, version in pinned().items() if name.startswith("r-cran-")}
    # Debian names are lower case (r-cran-mass is MASS): match R's package names case-insensitively.
    script = ("ip <- installed.packages(); cat(paste(R.version$major, R.version$minor, sep='.'), "
              + ", ".join(f"{{v <- ip[tolower(ip[, 'Package']) == '{p}', 'Version']; if (length(v)) v[1] else "
                          f"'missing'}}" for p in r_packages) + ", sep='\\n')")
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout.split()
    assert pinned()["r-base-core"].startswith(out[0] + "."), f"R {out[0]} vs r-base-core {pinned()['r-base-core']}"
    for (package, version), loaded in zip(r_packages.items(), out[1:], strict=True):
        upstream = version.rsplit("-", 1)[0].split("+")[0]  # Debian revision and repack suffix off
        assert loaded.replace("-", ".") == upstream.replace("-", "."), f"R package {package} {loaded} vs {version}"


def test_the_tests_run_on_the_image_python():
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == image_python()
    ruff_target = re.search(r'target-version = "py3(\d+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert f"3.{ruff_target}" == image_python(), "ruff must check against the image's Python"


@pytest.mark.integration  # runs vermin over scoring/ in a subprocess
def test_scoring_needs_no_newer_python_than_the_image_has():
    """vermin knows which Python version each syntax form, module, member and argument first appeared in."""
    target = image_python()
    vermin = str(Path(sys.executable).with_name("vermin"))
    out = subprocess.run([vermin, "--no-tips", "--violations", "--eval-annotations", f"--target={target}-",
                          str(REPO / "scoring")], capture_output=True, text=True)
    assert out.returncode == 0 and "requires" not in out.stdout, (
        f"scoring/ needs a newer Python than the image's {target}:\n{out.stdout}{out.stderr}")
