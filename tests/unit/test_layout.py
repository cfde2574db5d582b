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
              "delete_container_group", "read_shard_status", "publish_run", "request_shard_cancel", "acquire_vcpu",
              "release_vcpu", "record_failures"}
# dashboard/routes.py, registered by function_app.py with one line.
DASHBOARD = {"dashboard_page", "dashboard_static", "dashboard_runs", "dashboard_run", "dashboard_failures",
             "dashboard_postcodes", "dashboard_forecast", "dashboard_file", "dashboard_groups", "dashboard_cost"}


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
    from client_api.blueprint import build_blueprint as build_client_api_blueprint

    client_app = df.DFApp()
    client_app.register_functions(build_client_api_blueprint())
    client_api = {f.get_function_name() for f in client_app.get_functions()}
    accuracy = {"evaluate", "get_accuracy", "new_actuals_blob", "evaluate_run", "evaluate_accuracy"}
    assert set(json.loads(out.stdout)) == ORCHESTRATORS | ACTIVITIES | client_api | accuracy | {
        "daily_scoring", "new_input_blob", "start_run", "get_run", "list_runs", "cancel_run", "retry_run",
        "sweep_orphan_groups", *DASHBOARD}


def test_the_worker_image_needs_nothing_from_the_functions_app():
    """The image ships scoring/ only (Dockerfile): the worker may import neither pipeline/ nor the Functions SDKs."""
    loaded = loaded_after_import("scoring.__main__")
    assert not {m for m in loaded if m == "pipeline" or m.startswith(("pipeline.", "azure.functions",
                                                                       "azure.durable_functions", "azure.mgmt"))}


def test_the_unit_layer_guard_refuses_the_slow_programs():
    from conftest import starts_something_slow  # tests/conftest.py (this package's own is unit.conftest)

    assert starts_something_slow(["/usr/bin/Rscript", "-e", "1"])
    assert starts_something_slow(["/usr/lib/R/bin/exec/R", "--no-echo"])
    assert starts_something_slow(["node", "node_modules/.bin/azurite-blob"])
    assert starts_something_slow([sys.executable, "-m", "devenv.durable_host", "--app", "function_app"])
    assert starts_something_slow([sys.executable, "-m", "scoring", "run"])
    assert not starts_something_slow([sys.executable, "-c", "import scoring.worker"])
    with pytest.raises(AssertionError, match="mark it integration"):
        subprocess.run(["Rscript", "-e", "1"], check=False)
