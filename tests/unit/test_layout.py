"""The layout's promises: side-effect-free packages, explicit registration, light modules stay light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import azure.durable_functions as df
import pytest

from pipeline.registration import build_blueprint

REPO = Path(__file__).resolve().parents[2]
ORCHESTRATORS = {"score_run", "score_shard"}
ACTIVITIES = {"plan_run", "create_container_group", "get_container_state", "save_container_logs",
              "delete_container_group", "read_shard_status", "publish_run", "request_shard_cancel"}


def loaded_after_import(module: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after importing `module`."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", sorted(str(p.relative_to(REPO)) for p in REPO.glob("*/**/__init__.py")
                                           if p.parts[len(REPO.parts)] in ("pipeline", "scoring")))
def test_package_init_files_have_no_code(package):
    tree = ast.parse((REPO / package).read_text())
    code = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert code == [], f"{package} runs code on import"


def test_settings_and_payloads_load_neither_the_aci_sdk_nor_the_durable_sdk():
    for module in ("pipeline.settings", "pipeline.payloads"):
        loaded = loaded_after_import(module)
        assert not {m for m in loaded if m.startswith(("azure.mgmt", "azure.durable_functions", "azure.storage"))}, \
            module


def test_orchestrators_do_not_load_the_aci_sdk():
    loaded = loaded_after_import("pipeline.orchestrations.run")
    assert "azure.durable_functions" in loaded
    assert not {m for m in loaded if m.startswith(("azure.mgmt", "azure.storage"))}


def test_the_blueprint_registers_both_orchestrators_and_every_activity_and_nothing_else():
    app = df.DFApp()
    app.register_functions(build_blueprint())
    triggers = {f.get_function_name(): f.get_trigger().type for f in app.get_functions()}
    assert triggers == {**{name: "orchestrationTrigger" for name in ORCHESTRATORS},
                        **{name: "activityTrigger" for name in ACTIVITIES}}


def test_each_build_is_a_new_blueprint():
    first, second = build_blueprint(), build_blueprint()
    assert first is not second
    for bp in (first, second):  # both complete: building one does not take functions from the other
        app = df.DFApp()
        app.register_functions(bp)
        assert len(app.get_functions()) == len(ORCHESTRATORS | ACTIVITIES)


def test_the_function_app_adds_its_triggers_to_the_blueprint():
    # In a fresh interpreter: get_functions() may run only once per app object, and other tests in this
    # process may already have called it on function_app.app.
    code = ("import json, function_app; "
            "print(json.dumps([f.get_function_name() for f in function_app.app.get_functions()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert set(json.loads(out.stdout)) == ORCHESTRATORS | ACTIVITIES | {
        "daily_scoring", "new_input_blob", "start_run", "get_run", "list_runs", "cancel_run", "retry_run",
        "sweep_orphan_groups"}
