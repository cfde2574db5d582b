"""The scoring image must score like development: same R, same rpy2, same SDK pins everywhere."""

from __future__ import annotations

import re

from conftest import REPO


def pins(path) -> dict[str, str]:
    found = {}
    for line in (REPO / path).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def test_image_installs_the_scoring_requirements_and_uses_the_entrypoint():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "scoring/requirements.txt" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "scoring"]' in dockerfile
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M), "the image must run as a non-root user"


def test_rpy2_pin_fits_r_4_2():
    rpy2 = pins("scoring/requirements.txt")["rpy2"]
    assert rpy2.startswith("3.5."), "rpy2 3.6 needs R >= 4.3; the image runs R 4.2"


def test_shared_pins_agree():
    app, image = pins("requirements.txt"), pins("scoring/requirements.txt")
    for package in set(app) & set(image):
        assert app[package] == image[package], f"{package}: {app[package]} (app) vs {image[package]} (image)"


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    for path in ("requirements.txt", "scoring/requirements.txt"):
        for package, pinned in pins(path).items():
            assert version(package) == pinned, f"{package} installed {version(package)}, pinned {pinned} in {path}"
