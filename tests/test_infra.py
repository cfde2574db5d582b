"""Offline validation of infra/: the Bicep parses, checkov passes, the template deploys every setting the code
reads and exactly the role assignments the code needs, and the deploy script does its steps in order.

No Azure here: the templates are checked with pycep-parser (the parser checkov uses) and checkov itself; the deploy
script is exercised in --print-only mode, which runs no az command.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO
from pycep import BicepParser

from infra import app_settings, artifacts, deploy
from infra.azcli import DeployError, Runner

INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.glob("*.bicep"))
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"

# Built-in role ids, checked against Microsoft Learn "Azure built-in roles".
ROLE_NAMES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "5d977122-f97e-4b4d-a52f-6b43003ddb4d": "Azure Container Instances Contributor Role",
}
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
}

# (identity, role, scope resource type, scope symbol): each one tied to the code path named in the template.
EXPECTED_ROLE_ASSIGNMENTS = {
    ("appIdentity", "Storage Blob Data Owner", "Microsoft.Storage/storageAccounts", "storage"),
    ("appIdentity", "Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts", "storage"),
    ("appIdentity", "Storage Table Data Contributor", "Microsoft.Storage/storageAccounts", "storage"),
    ("appIdentity", "Monitoring Metrics Publisher", "Microsoft.Insights/components", "appInsights"),
    ("appIdentity", "Managed Identity Operator", "Microsoft.ManagedIdentity/userAssignedIdentities", "workerIdentity"),
    ("appIdentity", "custom: subnet join", "Microsoft.Network/virtualNetworks/subnets", "aciSubnet"),
    ("appIdentity", "Azure Container Instances Contributor Role", "resourceGroup", "scoring resource group"),
    ("workerIdentity", "AcrPull", "Microsoft.ContainerRegistry/registries", "registry"),
    ("workerIdentity", "Storage Blob Data Reader", "Microsoft.Storage/storageAccounts/blobServices/containers",
     "modelsContainer"),
    ("workerIdentity", "Storage Blob Data Reader", "Microsoft.Storage/storageAccounts/blobServices/containers",
     "inputContainer"),
    ("workerIdentity", "Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts/blobServices/containers",
     "stagingContainer"),
    ("workerIdentity", "Storage Blob Data Reader", "Microsoft.Storage/storageAccounts/blobServices/containers",
     "uploadsContainer"),
    ("appIdentity", "Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts/blobServices/containers",
     "uploadsContainer"),
}


PARSER = BicepParser()  # building its grammar takes seconds: once per session


@functools.cache
def parsed(name: str) -> dict:
    return PARSER.parse(file_path=INFRA / name)


def body(resource: dict) -> dict:
    """A resource's body; pycep nests it one level deeper (with the condition) for `= if (...) {...}`."""
    config = resource["config"]
    return config["config"] if "condition" in config else config


def accessor_path(value) -> list[str]:
    """a.b.c (pycep's nested property_accessor) -> ["a", "b", "c"]; a plain identifier -> [it]."""
    if isinstance(value, str):
        return [value]
    op = value["operator"]
    assert op["type"] == "property_accessor", value
    return [op["operands"]["operand_1"], *accessor_path(op["operands"]["operand_2"])]


def settings_module():
    return app_settings.settings_module()


def settings_document() -> dict:
    return json.loads((INFRA / "app-settings.json").read_text())


# ------------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("path", BICEP_FILES, ids=[p.name for p in BICEP_FILES])
def test_every_bicep_file_parses(path):
    tree = PARSER.parse(file_path=path)
    assert isinstance(tree, dict)
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_templates_use_only_local_modules_and_files_that_exist():
    for path in BICEP_FILES:
        for symbol, module in parsed(path.name).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}: module {symbol} is not a local file"
            assert (INFRA / module["detail"]["path"]).exists(), f"{path.name}: {module['detail']['path']} missing"


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(REPO)} is missing: run `make setup` (checkov has a venv of its own)")
    # --skip-download: offline; nothing is fetched from the Prisma Cloud guidelines API.
    result = subprocess.run([str(CHECKOV), "-d", str(INFRA), "--framework", "bicep", "--skip-download", "-o", "json"],
                            capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


@pytest.mark.integration  # checkov takes tens of seconds: not in `make test-fast`
def test_checkov_passes(checkov_report):
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results.get("failed_checks", [])]
    assert failed == [], f"checkov failures: {failed}"
    assert results.get("parsing_errors", []) == []
    assert checkov_report["returncode"] == 0
    assert checkov_report["summary"]["resource_count"] >= 25, "checkov saw too few resources: a parse problem?"
    assert checkov_report["summary"]["passed"] >= 20


@pytest.mark.integration  # checkov takes tens of seconds: not in `make test-fast`
def test_every_checkov_skip_is_justified_inside_its_resource_and_used(checkov_report):
    skipped = {(c["check_id"], Path(c["file_path"]).name) for c in checkov_report["results"].get("skipped_checks", [])}
    declared = set()
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            m = re.search(r"checkov:skip=(\w+)(.*)", line)
            if not m:
                continue
            assert line.startswith("  //"), f"{path.name}: skip outside a resource body: {line.strip()}"
            reason = m.group(2).lstrip(":").strip()
            assert len(reason) >= 30, f"{path.name}: {m.group(1)} is skipped without a reason"
            declared.add((m.group(1), path.name))
    assert declared, "no skips at all: then this test should be rewritten, not pass vacuously"
    assert declared == skipped, f"skips checkov did not apply (dead or misplaced): {declared - skipped}"


def test_storage_registry_and_monitoring_allow_no_keys():
    app = parsed("app.bicep")["resources"]
    storage = app["storage"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["allowBlobPublicAccess"] is False
    assert app["appInsights"]["config"]["properties"]["DisableLocalAuth"] is True
    assert app["logs"]["config"]["properties"]["features"]["disableLocalAuth"] is True
    registry = parsed("acr.bicep")["resources"]["registry"]["config"]["properties"]
    assert registry["adminUserEnabled"] is False
    assert registry["anonymousPullEnabled"] is False


def test_function_app_is_flex_consumption_python_311_with_only_the_app_identity():
    app = parsed("app.bicep")["resources"]
    assert app["plan"]["config"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = app["functionApp"]["config"]
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert site["properties"]["httpsOnly"] is True
    # A container never receives the app's identity, and the app never holds the worker's.
    identities = site["identity"]["userAssignedIdentities"]
    assert list(identities) == ["'${appIdentity.id}'"]  # pycep keeps the key's quotes
    deployment_auth = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert deployment_auth["type"] == "UserAssignedIdentity"
    assert accessor_path(deployment_auth["userAssignedIdentityResourceId"]) == ["appIdentity", "id"]
    assert app["scmBasicAuth"]["config"]["properties"]["allow"] is False
    assert app["ftpBasicAuth"]["config"]["properties"]["allow"] is False


def test_event_grid_system_topic_watches_the_storage_account():
    topic = parsed("app.bicep")["resources"]["storageEvents"]
    assert topic["type"] == "Microsoft.EventGrid/systemTopics"
    assert topic["config"]["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    assert accessor_path(topic["config"]["properties"]["source"]) == ["storage", "id"]


def test_containers_are_the_ones_the_code_is_configured_with():
    defaults = settings_module().DEFAULTS
    containers = settings_document()["containers"]
    assert containers["models"] == defaults["MODELS_CONTAINER"]
    assert containers["input"] == defaults["INPUT_CONTAINER"]
    assert containers["results"] == defaults["RESULTS_CONTAINER"]
    assert containers["staging"] == defaults.get("STAGING_CONTAINER", "staging")
    assert containers["uploads"] == defaults["UPLOADS_CONTAINER"]
    app = parsed("app.bicep")["resources"]
    for role in ("models", "input", "results", "staging", "uploads"):
        assert accessor_path(app[f"{role}Container"]["config"]["name"]) == ["containers", role]


# ---------------------------------------------------------------------------------------------- app settings


def test_app_settings_file_is_generated_from_the_settings_module():
    assert (INFRA / "app-settings.json").read_text() == app_settings.render(), \
        "infra/app-settings.json is stale: run `python -m infra.app_settings`"


def test_every_setting_the_code_reads_is_deployed_or_deliberately_left_out():
    defaults = settings_module().DEFAULTS
    doc = settings_document()
    static, from_template = app_settings.split(doc)
    names = [e["name"] for e in doc["appSettings"]]
    assert len(names) == len(set(names)), "a setting is deployed twice"
    for entry in doc["appSettings"]:
        # value + infraValues[from] in the template: exactly one part may carry the value.
        assert entry["value"] == "" or entry["from"] == app_settings.NO_TEMPLATE_VALUE, entry
    for name, default in defaults.items():
        if name in app_settings.NOT_IN_AZURE:
            assert name not in static and name not in from_template, f"{name} must not be set in Azure"
            continue
        assert name in static or name in from_template, f"{name} is read by the code and not deployed"
        if name in static and name not in app_settings.PLATFORM_STATIC:
            assert static[name] == default, f"{name}: deployed {static[name]!r}, code default {default!r}"
        if not default:
            # An empty default means "required in Azure": only the template can know the value.
            assert name in from_template, f"{name} has no default and the template does not set it"
    assert not app_settings.FLEX_FORBIDDEN & (set(static) | set(from_template))


def test_binding_expressions_and_connections_resolve_to_deployed_settings():
    doc = settings_document()
    deployed = {e["name"] for e in doc["appSettings"]}
    sources = [REPO / rel for rel in artifacts.package_files() if rel.suffix == ".py"]
    percent, connections = set(), set()
    for path in sources:
        # Trigger decorators: %NAME% binding expressions and connection names.
        decorators = "\n".join(ln for ln in path.read_text().splitlines() if ln.lstrip().startswith("@"))
        percent |= set(re.findall(r"%([A-Za-z0-9_]+)%", decorators))
        connections |= set(re.findall(r"connection\s*=\s*[\"']([A-Za-z0-9_]+)[\"']", decorators))
    assert {"SCORING_SCHEDULE", "INPUT_CONTAINER", "INPUT_PREFIX"} <= percent, "binding scan found nothing"
    assert percent <= deployed, f"binding expressions without a deployed setting: {percent - deployed}"
    assert connections, "no trigger connection found"
    for connection in connections:
        for suffix in ("blobServiceUri", "queueServiceUri", "credential", "clientId"):
            assert f"{connection}__{suffix}" in deployed, f"connection {connection} lacks {connection}__{suffix}"
    for suffix in ("blobServiceUri", "queueServiceUri", "tableServiceUri", "credential", "clientId"):
        assert f"AzureWebJobsStorage__{suffix}" in deployed


def test_environment_reads_in_the_published_code_are_deployed_or_defaulted():
    """Code that bypasses the settings module and reads os.environ["X"] (no default: KeyError) needs X deployed;
    .get/getenv reads handle absence themselves."""
    deployed = {e["name"] for e in settings_document()["appSettings"]}
    no_default = re.compile(r"os\.environ\[[\"'](\w+)[\"']\](?!\s*=[^=])")  # a read, not an assignment
    with_default = re.compile(r"(?:os\.environ\.get|os\.getenv)\([\"'](\w+)[\"']")
    seen = set()
    for rel in artifacts.package_files():
        if rel.suffix != ".py":
            continue
        text = (REPO / rel).read_text()
        for name in no_default.findall(text):
            assert name in deployed, f"{rel} reads {name} without a default, and the template does not set it"
        seen |= set(with_default.findall(text))
    assert seen, "the scan found no environment reads at all: the patterns are stale"


def test_template_values_behind_every_generated_setting_exist():
    app = parsed("app.bicep")
    infra_values = app["variables"]["infraValues"]["value"]
    assert infra_values[app_settings.NO_TEMPLATE_VALUE] == ""
    for entry in settings_document()["appSettings"]:
        assert entry["from"] in infra_values, f"{entry['name']}: infraValues has no {entry['from']!r}"
    loop = app["resources"]["functionApp"]["config"]["properties"]["siteConfig"]["appSettings"]
    assert accessor_path(loop["loop_type"]["detail"]["array_name"]) == ["settingsFile", "appSettings"]
    assert accessor_path(loop["config"]["name"]) == ["s", "name"]
    assert loop["config"]["value"] == "${s.value}${infraValues[s.from]}"
    load = app["variables"]["settingsFile"]["value"]["function"]
    assert load["type"] == "load_json_content" and load["parameters"]["file_path"] == "app-settings.json"


def test_identities_reach_the_settings_the_code_uses_for_them():
    _, from_template = app_settings.split(settings_document())
    assert from_template["AzureWebJobsStorage__clientId"] == "appIdentityClientId"
    assert from_template["AZURE_CLIENT_ID"] == "appIdentityClientId"
    assert from_template["APP_IDENTITY_CLIENT_ID"] == "appIdentityClientId"
    assert from_template["WORKER_IDENTITY_RESOURCE_ID"] == "workerIdentityResourceId"
    assert from_template["WORKER_IDENTITY_CLIENT_ID"] == "workerIdentityClientId"
    values = parsed("app.bicep")["variables"]["infraValues"]["value"]
    assert accessor_path(values["appIdentityClientId"]) == ["appIdentity", "properties", "clientId"]
    assert accessor_path(values["workerIdentityResourceId"]) == ["workerIdentity", "id"]
    assert accessor_path(values["workerIdentityClientId"]) == ["workerIdentity", "properties", "clientId"]


# ------------------------------------------------------------------------------------------ role assignments


def role_assignments() -> set[tuple[str, str, str, str]]:
    found = set()
    for path in BICEP_FILES:
        tree = parsed(path.name)
        variables = {k: v["value"] for k, v in tree.get("variables", {}).items()}
        resources = tree.get("resources", {})
        for symbol, resource in resources.items():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            props = body(resource)["properties"]
            role = props["roleDefinitionId"]
            if isinstance(role, dict):
                name = role["function"]["parameters"]["resource_name_1"]
                role_name = ROLE_NAMES.get(variables.get(name, name), f"unknown role {name}")
            else:
                assert role == "subnetJoinRoleDefinitionId", f"{path.name}/{symbol}: role {role!r}"
                role_name = "custom: subnet join"
            principal = accessor_path(props["principalId"])
            if principal == ["appIdentityPrincipalId"]:
                principal = ["appIdentity", "properties", "principalId"]  # wired in main.bicep; checked below
            assert principal[1:] == ["properties", "principalId"], f"{path.name}/{symbol}: principal {principal}"
            assert props["principalType"] == "ServicePrincipal"
            scope = body(resource).get("scope")
            if scope is None:
                assert tree["globals"]["scope"]["value"] == "resourceGroup"
                scope_type, scope = "resourceGroup", "scoring resource group"
            else:
                scope_type = resources[scope]["type"]
            name = body(resource)["name"]["function"]
            assert name["type"] == "guid", f"{path.name}/{symbol}: role assignment names must be deterministic"
            found.add((principal[0], role_name, scope_type, scope))
    return found


def test_role_assignments_are_exactly_those_the_code_needs_at_the_narrowest_scope():
    assert role_assignments() == EXPECTED_ROLE_ASSIGNMENTS


def test_nothing_broader_is_granted_anywhere():
    for path in BICEP_FILES:
        text = path.read_text().lower()
        for role_id, role in BROAD_ROLES.items():
            assert role_id not in text, f"{path.name} grants {role}"
    worker = {a for a in role_assignments() if a[0] == "workerIdentity"}
    assert not {a for a in worker if a[3] in ("storage", "resultsContainer")}, "the worker may not reach results"
    # Registration builds in staging and the app publishes: the worker only ever reads models and input.
    assert {a[1] for a in worker if a[3] in ("modelsContainer", "inputContainer")} == {"Storage Blob Data Reader"}
    # Uploads wait for their registration where no model's code (all run as the worker) can change them.
    assert {a[1] for a in worker if a[3] == "uploadsContainer"} == {"Storage Blob Data Reader"}
    assert {a[3] for a in worker if a[1] != "AcrPull" and a[1] != "Storage Blob Data Reader"} == \
        {"stagingContainer"}, "the worker may write staging only"
    app_rbac = [a for a in role_assignments() if a[2] == "resourceGroup"]
    assert [a[1] for a in app_rbac] == ["Azure Container Instances Contributor Role"]


def test_every_role_assignment_names_the_code_path_that_needs_it():
    for path in BICEP_FILES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "'Microsoft.Authorization/roleAssignments@" not in line:
                continue
            comment = []
            j = i - 1
            while j >= 0 and lines[j].startswith("//"):
                comment.insert(0, lines[j])
                j -= 1
            assert any("Code path:" in c for c in comment), f"{path.name}:{i + 1}: no `// Code path:` comment"


def test_each_control_plane_role_is_used_by_the_published_code():
    """The roles exist because the app's ACI calls need them; if the code stops making a call, revisit the role."""
    code = "\n".join((REPO / rel).read_text() for rel in artifacts.package_files() if rel.suffix == ".py")
    needs = {
        "Azure Container Instances Contributor Role": ["begin_create_or_update(", "begin_delete(",
                                                       "list_by_resource_group(", "list_logs("],
        "Managed Identity Operator": ["ContainerGroupIdentity(", "UserAssignedIdentities("],
        "AcrPull": ["ImageRegistryCredential("],
        "custom: subnet join": ["ContainerGroupSubnetId("],
    }
    granted = {a[1] for a in role_assignments()}
    for role, calls in needs.items():
        assert role in granted
        for call in calls:
            assert call in code, f"{role} is granted for {call}, which the published code no longer makes"
    assert re.search(r"ImageRegistryCredential\([^)]*identity=", code), "the image pull must use an identity"


def test_container_group_rights_only_on_the_scoring_resource_group():
    main = parsed("main.bicep")
    scoring = main["modules"]["scoring"]["config"]
    assert scoring["scope"] == "scoringResourceGroup"
    assert accessor_path(scoring["params"]["appIdentityPrincipalId"]) == ["app", "outputs", "appIdentityPrincipalId"]
    assert main["resources"]["scoringResourceGroup"]["config"]["name"] == "scoringResourceGroupName"
    assert main["variables"]["scoringResourceGroupName"]["value"] == "rg-${name}-scoring"
    output = parsed("app.bicep")["outputs"]["appIdentityPrincipalId"]["value"]
    assert accessor_path(output) == ["appIdentity", "properties", "principalId"]
    # ...which is also where the code creates container groups.
    assert app_settings.split(settings_document())[1]["ACI_RESOURCE_GROUP"] == "scoringResourceGroup"
    assert parsed("app.bicep")["variables"]["infraValues"]["value"]["scoringResourceGroup"] == \
        "scoringResourceGroupName"
    assert accessor_path(main["modules"]["app"]["config"]["params"]["scoringResourceGroupName"]) == \
        ["scoringResourceGroup", "name"]


def test_custom_subnet_join_role_allows_one_action_in_the_app_resource_group():
    role = body(parsed("main.bicep")["resources"]["subnetJoinRole"])["properties"]
    assert role["permissions"] == [{"actions": ["Microsoft.Network/virtualNetworks/subnets/join/action"],
                                    "notActions": []}]
    (scope,) = role["assignableScopes"]
    params = scope["function"]["parameters"]
    assert params["resource_type"] == "Microsoft.Resources/resourceGroups"
    assert params["resource_name_1"] == "appResourceGroupName"


# ---------------------------------------------------------------------------------------------- deploy script


def run_cli(argv, capsys) -> tuple[int, list[str], str]:
    code = deploy.main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def commands(lines: list[str]) -> list[str]:
    return [line[2:] for line in lines if line.startswith("$ ")]


def first_index(cmds: list[str], needle: str) -> int:
    for i, cmd in enumerate(cmds):
        if needle in cmd:
            return i
    raise AssertionError(f"no command contains {needle!r}:\n" + "\n".join(cmds))


def test_print_only_deploy_shows_every_step_in_order(capsys):
    code, lines, _ = run_cli(["deploy", "--name", "rscoring", "--location", "westeurope", "--print-only"], capsys)
    assert code == 0
    cmds = commands(lines)
    order = [
        "az account show",
        "az provider register --namespace Microsoft.EventGrid --wait",
        "az deployment sub create --name rscoring-registry --location westeurope --template-file infra/registry.bicep",
        "az acr repository show",
        "az acr build --registry '<registryName>' --image r-scoring:",
        "az acr run --registry '<registryName>' --file - /dev/null",
        "az deployment sub create --name rscoring --location westeurope --template-file infra/main.bicep",
        "az functionapp deployment source config-zip --resource-group rg-rscoring",
        "--query systemKeys.blobs_extension",
        "az eventgrid system-topic event-subscription create",
        "--query functionKeys.default",
        "curl -sS -X POST 'https://<functionAppHostName>/api/runs'",
    ]
    positions = [first_index(cmds, needle) for needle in order]
    assert positions == sorted(positions), "steps out of order"
    tag = artifacts.image_tag()
    template = cmds[first_index(cmds, "infra/main.bicep")]
    assert f"imageTag={tag}" in template and "'imageRPackages=<imageRPackages>'" in template
    task = lines[lines.index("$ " + cmds[first_index(cmds, "az acr run")]) + 1:][:5]
    assert task == ["   with stdin:", "   | version: v1.1.0", "   | steps:",
                    f"   |   - cmd: $Registry/r-scoring:{tag} /opt/app/r-packages.txt", "   |     entryPoint: cat"]
    assert '{"dryRun": true}' in cmds[-1]
    titles = [line for line in lines if line.startswith("== ")]
    assert len(titles) == 8 and titles[0].startswith("== 1. ") and titles[-1].startswith("== 8. Smoke test")


def test_event_subscription_targets_the_blob_trigger_with_completed_blobs_under_the_input_prefix(capsys):
    _, lines, _ = run_cli(["deploy", "--print-only"], capsys)
    cmd = commands(lines)[first_index(commands(lines), "event-subscription create")]
    defaults = settings_module().DEFAULTS
    prefix = f"/blobServices/default/containers/{defaults['INPUT_CONTAINER']}/blobs/{defaults['INPUT_PREFIX']}"
    assert f"--subject-begins-with {prefix} " in cmd
    assert "--included-event-types Microsoft.Storage.BlobCreated " in cmd
    assert "--advanced-filter data.api StringIn PutBlob PutBlockList FlushWithClose " in cmd
    # The function it names is the app's Event Grid-sourced blob trigger.
    assert artifacts.blob_trigger_function() == "new_input_blob"
    assert "functionName=Host.Functions.new_input_blob&code=***" in cmd


def test_the_blob_trigger_is_found_wherever_it_is_declared(tmp_path):
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "function_app.py").write_text("app = None\n")
    with pytest.raises(DeployError, match="found none"):
        artifacts.blob_trigger_function(tmp_path)
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "events.py").write_text(
        '@bp.blob_trigger(arg_name="b", path="%INPUT_CONTAINER%/{name}", connection="STORAGE",\n'
        '                 source=func.BlobSource.EVENT_GRID)\n@bp.durable_client_input(client_name="c")\n'
        "async def on_new_blob(b, c):\n    pass\n")
    assert artifacts.blob_trigger_function(tmp_path) == "on_new_blob"


def test_no_secret_is_ever_printed():
    out: list[str] = []
    run = Runner(print_only=True, out=out.append)
    run.show(["az", "x", "--endpoint", deploy.blob_webhook("h.example", "s3cr3t-key", "f")], secrets=["s3cr3t-key"])
    assert "s3cr3t-key" not in out[0] and "code=***" in out[0]


def test_print_only_deploy_is_deterministic_and_every_change_is_create_or_update(capsys):
    _, first, _ = run_cli(["deploy", "--print-only", "--vnet"], capsys)
    _, second, _ = run_cli(["deploy", "--print-only", "--vnet"], capsys)
    assert first == second
    cmds = commands(first)
    read_only = ("az account show", "az acr repository show", "az acr run", "az functionapp keys list", "curl ")
    create_or_update = ("az provider register", "az deployment sub create", "az acr build",
                        "az functionapp deployment source config-zip",
                        "az eventgrid system-topic event-subscription create")
    for cmd in cmds:
        assert cmd.startswith(read_only + create_or_update), f"not known to be repeatable: {cmd}"
    # The build is guarded by a look-up of the same tag just before it.
    build = first_index(cmds, "az acr build")
    assert cmds[build - 1].startswith("az acr repository show") and cmds[build].split("--image ")[1].split()[0] in \
        cmds[build - 1]
    assert "enableVnet=true" in cmds[first_index(cmds, "infra/main.bicep")]
    for path in BICEP_FILES:
        text = path.read_text()
        assert "newGuid(" not in text and "utcNow(" not in text, f"{path.name}: non-deterministic value"


def test_what_if_previews_the_templates_instead_of_deploying(capsys):
    code, lines, _ = run_cli(["deploy", "--what-if"], capsys)
    cmds = commands(lines)
    assert code == 0
    assert sum("az deployment sub what-if" in c for c in cmds) == 2
    assert not any("az deployment sub create" in c for c in cmds)


def test_image_tag_changes_exactly_when_the_image_inputs_change(tmp_path):
    for rel in ["Dockerfile", *(p.relative_to(REPO) for p in artifacts.dockerfile_inputs(REPO)[1:])]:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, target)
    assert artifacts.image_tag(tmp_path) == artifacts.image_tag(REPO)
    (tmp_path / "README.md").write_text("not in the image")
    assert artifacts.image_tag(tmp_path) == artifacts.image_tag(REPO)
    worker = tmp_path / "scoring" / "worker.py"
    worker.write_text(worker.read_text() + "\n# changed\n")
    assert artifacts.image_tag(tmp_path) != artifacts.image_tag(REPO)


def test_print_only_destroy_shows_the_teardown(capsys):
    code, lines, _ = run_cli(["destroy", "--name", "rscoring", "--print-only"], capsys)
    assert code == 0
    cmds = commands(lines)
    main = parsed("main.bicep")["variables"]
    app_rg = main["appResourceGroupName"]["value"].replace("${name}", "rscoring")
    scoring_rg = main["scoringResourceGroupName"]["value"].replace("${name}", "rscoring")
    expected = ["az account show --query id -o tsv",
                f"az group exists --name {scoring_rg}", f"az group delete --name {scoring_rg} --yes",
                f"az group exists --name {app_rg}", f"az group delete --name {app_rg} --yes",
                "az role definition list --custom-role-only true --scope '/subscriptions/<subscriptionId>'",
                "az role definition delete --name '<roleIds>' --scope '/subscriptions/<subscriptionId>'",
                "az deployment sub delete --name rscoring --no-wait",
                "az deployment sub delete --name rscoring-registry --no-wait"]
    positions = [next(i for i, c in enumerate(cmds) if c == e or (c.startswith(e) and not e.startswith("az group")))
                 for e in expected]
    assert positions == sorted(positions)
    assert deploy.resource_groups("rscoring") == (app_rg, scoring_rg)
    role_name = body(parsed("main.bicep")["resources"]["subnetJoinRole"])["properties"]["roleName"]
    assert role_name.replace("${name}", "n1").replace("${subscription().subscriptionId}", "s1") == \
        deploy.subnet_join_role_name("n1", "s1")
    listing = shlex.split(cmds[first_index(cmds, "az role definition list")])
    query = listing[listing.index("--query") + 1]
    assert query == f"[?roleName=='{deploy.subnet_join_role_name('rscoring', '<subscriptionId>')}'].name"


def test_destroy_without_confirmation_deletes_nothing(capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, lines, _ = run_cli(["destroy", "--name", "rscoring"], capsys)
    assert code == 1 and lines == ["nothing deleted"]


@pytest.mark.parametrize("name", ["Bad_Name", "x", "a-name-much-too-long", "9lives"])
def test_bad_deployment_names_are_refused_with_the_reason(name, capsys):
    code, lines, err = run_cli(["deploy", "--name", name, "--print-only"], capsys)
    assert code == 1 and lines == []
    assert f"--name {name!r}" in err


def test_app_package_has_the_app_and_none_of_the_development_files():
    files = {p.as_posix() for p in artifacts.package_files()}
    settings_file = Path(settings_module().__file__).relative_to(REPO).as_posix()
    assert {"function_app.py", "host.json", "requirements.txt", settings_file, "scoring/modelstore.py"} <= files
    for prefix in ("tests/", "devenv/", "bench/", "infra/", ".venv", "node_modules/", ".git/"):
        assert not any(f.startswith(prefix) for f in files), f"{prefix} would be published"
    assert "local.settings.json" not in files and not any(f.endswith(".pyc") for f in files)


def test_r_packages_are_read_from_the_acr_run_log():
    log = ("2026/11/23 03:00:01 Downloading source code...\nforecast=8.20;jsonlite=1.8.4;data.table=1.14.6\n"
           "2026/11/23 03:00:09 Successfully ran `cat`\nRun ID: cb1 was successful after 9s\n")
    assert artifacts.parse_r_packages(log) == "forecast=8.20;jsonlite=1.8.4;data.table=1.14.6"
    with pytest.raises(DeployError, match="no R package list"):
        artifacts.parse_r_packages("Run ID: cb2 failed after 3s. Error: image not found\n")


class _Answers(http.server.BaseHTTPRequestHandler):
    """A local stand-in for the app's /api/runs: answers each POST with the next queued (status, body)."""

    answers: list[tuple[int, bytes]] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append({"key": self.headers["x-functions-key"], "body": json.loads(body)})
        status, payload = type(self).answers.pop(0) if type(self).answers else (500, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_app():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Answers.answers, _Answers.seen = [], []
    yield f"http://127.0.0.1:{server.server_port}/api/runs"
    server.shutdown()


def test_smoke_test_waits_out_a_cold_start_and_accepts_a_dry_run_plan(fake_app):
    _Answers.answers = [(503, b"starting"), (200, json.dumps({"dryRun": True, "groups": 3}).encode())]
    assert "planned 3 group(s)" in deploy.smoke_test(fake_app, "k1", wait_seconds=5, poll_seconds=0.01)
    assert _Answers.seen == [{"key": "k1", "body": {"dryRun": True}}] * 2


def test_smoke_test_accepts_a_named_4xx_on_an_empty_deployment(fake_app):
    _Answers.answers = [(400, json.dumps({"error": "no model 'parcels'", "field": "model"}).encode())]
    assert "answered 400: no model 'parcels'" in deploy.smoke_test(fake_app, "k", wait_seconds=5, poll_seconds=0.01)


def test_smoke_test_fails_when_the_app_never_answers_properly(fake_app):
    _Answers.answers = [(401, b"{}")] * 1000
    with pytest.raises(DeployError, match="smoke test failed: POST .* HTTP 401"):
        deploy.smoke_test(fake_app, "wrong", wait_seconds=0.05, poll_seconds=0.01)


# A stand-in for the Azure CLI: Azure cannot exist here. It logs each call and answers like az would (outputs of
# the templates, keys, an `az acr run` log), so the deploy script's real path (not --print-only) runs end to end.
FAKE_AZ = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_AZ_STATE"]
stdin = sys.stdin.read() if "--file" in args and "-" in args else ""
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin}}) + "\n")
def flag(name):
    return args[args.index(name) + 1] if name in args else ""
def count(name):
    path = os.path.join(state, name)
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(n))
    return n
def outputs(**values):
    print(json.dumps({{k: {{"type": "String", "value": v}} for k, v in values.items()}}))
cmd = " ".join(args[:3])
if args[:2] == ["account", "show"]:
    print("00000000-1111-2222-3333-444444444444")
elif cmd.startswith("deployment sub create") and flag("--template-file") == "infra/registry.bicep":
    outputs(resourceGroupName="rg-t1", registryName="crfake", registryLoginServer="crfake.azurecr.io")
elif cmd.startswith("deployment sub create") and flag("--template-file") == "infra/main.bicep":
    outputs(functionAppName="func-t1-x", functionAppHostName="func-t1-x.azurewebsites.net",
            systemTopicName="evgt-t1-storage", appResourceGroup="rg-t1")
elif cmd == "acr repository show":
    if not os.path.exists(os.path.join(state, "built")):
        sys.exit("ERROR: manifest unknown")
    print("sha256:abc")
elif cmd == "acr build --registry":
    open(os.path.join(state, "built"), "w").write(flag("--image"))
elif cmd == "acr run --registry":
    print("2026/11/23 03:00:01 Setting up Docker configuration...")
    print("forecast=8.20;jsonlite=1.8.4;data.table=1.14.6")
    print("Run ID: ca1 was successful after 4s")
elif args[:2] == ["functionapp", "keys"] and "systemKeys.blobs_extension" in args:
    print("" if count("blobkey-reads") == 1 else "BLOBKEY-SECRET")
elif args[:2] == ["functionapp", "keys"]:
    print("FUNCTIONKEY-SECRET")
elif args[:2] == ["functionapp", "deployment"]:
    import zipfile
    names = zipfile.ZipFile(flag("--src")).namelist()
    assert "function_app.py" in names and not any(n.startswith("tests/") for n in names), names
'''


@pytest.fixture
def fake_az(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AZ_STATE", str(state))

    def calls() -> list[dict]:
        path = state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return calls


@pytest.mark.integration  # starts processes (the az stand-in)
def test_deploy_runs_every_step_against_the_cli_and_a_rerun_skips_the_build(fake_az, monkeypatch):
    smoke = []
    monkeypatch.setattr(deploy, "smoke_test", lambda url, key, wait, poll: smoke.append((url, key)) or "live")
    out: list[str] = []
    deploy.deploy(Runner(print_only=False, out=out.append), "t1", "westeurope", vnet=False,
                  wait_seconds=5, poll_seconds=0.01)
    calls = [c["args"] for c in fake_az()]
    template = next(c for c in calls if "infra/main.bicep" in c)
    assert "imageRPackages=forecast=8.20;jsonlite=1.8.4;data.table=1.14.6" in template
    assert f"imageTag={artifacts.image_tag()}" in template
    assert any(c[:2] == ["acr", "build"] for c in calls)
    subscription = next(c for c in calls if c[:3] == ["eventgrid", "system-topic", "event-subscription"])
    endpoint = subscription[subscription.index("--endpoint") + 1]
    assert endpoint == ("https://func-t1-x.azurewebsites.net/runtime/webhooks/blobs"
                        "?functionName=Host.Functions.new_input_blob&code=BLOBKEY-SECRET")
    assert subscription[subscription.index("--system-topic-name") + 1] == "evgt-t1-storage"
    assert smoke == [("https://func-t1-x.azurewebsites.net/api/runs", "FUNCTIONKEY-SECRET")]
    printed = "\n".join(out)
    assert "SECRET" not in printed, "a key was printed"
    assert "code=***" in printed

    # Again, unchanged: the image is found under its tag and not rebuilt; everything else is create-or-update.
    before = len(fake_az())
    deploy.deploy(Runner(print_only=False, out=out.append), "t1", "westeurope", vnet=False,
                  wait_seconds=5, poll_seconds=0.01)
    rerun = [c["args"] for c in fake_az()[before:]]
    assert not any(c[:2] == ["acr", "build"] for c in rerun)
    assert any(c[:3] == ["acr", "repository", "show"] for c in rerun)


@pytest.mark.integration  # starts processes (the az stand-in)
def test_deploy_stops_at_the_failing_step_and_names_it(fake_az, monkeypatch, tmp_path):
    failing = tmp_path / "bin" / "az"
    failing.write_text(failing.read_text().replace('elif cmd == "acr run --registry":',
                                                   'elif cmd == "acr run --registry":\n    sys.exit(3)\nelif False:'))
    with pytest.raises(DeployError, match=r"`az acr run` failed \(exit 3\)"):
        deploy.deploy(Runner(print_only=False, out=lambda line: None), "t1", "westeurope", vnet=False,
                      wait_seconds=1, poll_seconds=0.01)
    assert not any("infra/main.bicep" in c["args"] for c in fake_az()), "a later step ran after the failure"
