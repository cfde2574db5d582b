"""What a publish ships, and the worker settings Azure needs that no local run would miss."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys

from conftest import REPO

from pipeline.settings import DEFAULTS, Settings


def funcignore_patterns() -> list[str]:
    lines = (REPO / ".funcignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str) -> bool:
    """gitignore-style: a pattern without "/" matches any path component."""
    parts = relative.split("/")
    return any(fnmatch.fnmatch(part, pattern) for pattern in funcignore_patterns() for part in parts)


def test_funcignore_leaves_development_files_out():
    for path in ("devenv/aci_standin/server.py", "tests/conftest.py", "bench/run.py", ".venv/bin/python",
                 "node_modules/azurite/package.json", "local.settings.json", "requirements-dev.txt",
                 "sample/train_models.R", "Dockerfile"):
        assert ignored(path), f"{path} would be published"
    for path in ("function_app.py", "host.json", "requirements.txt", "pipeline/aci/client.py",
                 "scoring/blobstore.py", "scoring/R/score.R"):
        assert not ignored(path), f"{path} would be left out"


def test_everything_the_app_imports_is_published():
    code = ("import json, sys, function_app; root = sys.argv[1]; print(json.dumps(sorted("
            "m.__file__[len(root) + 1:] for m in list(sys.modules.values()) "
            "if getattr(m, '__file__', None) and m.__file__.startswith(root + '/') and '.venv' not in m.__file__)))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    modules = json.loads(out)
    assert "function_app.py" in modules and any(m.startswith("pipeline/") for m in modules)
    assert [m for m in modules if ignored(m)] == []


def test_worker_threads_outnumber_concurrent_activities_and_orchestrators():
    durable = json.loads((REPO / "host.json").read_text())["extensions"]["durableTask"]
    needed = durable["maxConcurrentActivityFunctions"] + durable["maxConcurrentOrchestratorFunctions"]
    assert int(DEFAULTS["PYTHON_THREADPOOL_THREAD_COUNT"]) > needed
    assert Settings.from_env({}).python_threadpool_thread_count > needed
