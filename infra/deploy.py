"""Deploy the service to Azure in one command, or tear it down, with the Azure CLI.

    python -m infra.deploy deploy  --name rscoring --location westeurope [--vnet] [--print-only | --what-if]
    python -m infra.deploy destroy --name rscoring [--yes] [--print-only]

`make deploy` / `make destroy` call this. Every step is safe to repeat: templates are incremental with
deterministic names (role assignments use guid()), the image is built only when its tag (a hash of what goes
into it) is missing, settings and the Event Grid subscription are create-or-update, and destroy deletes only
what exists. `--print-only` runs nothing and prints every command in order (what tests/test_infra.py checks);
`--what-if` prints the same but previews the templates with `az deployment sub what-if`.
Secrets (function and extension keys) are never printed: they show as ***.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infra import app_settings
from infra.artifacts import (
    blob_trigger_function,
    build_package,
    image_tag,
    package_files,
    parse_r_packages,
    r_packages_task,
)
from infra.azcli import DeployError, Runner

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
IMAGE_REPOSITORY = "r-scoring"
PACKAGE = "dist/function-app.zip"
EVENT_SUBSCRIPTION = "new-input-blob"
# The Storage APIs that complete a blob (block blob, put blob, ADLS Gen2 flush); others fire mid-upload.
COMPLETING_APIS = ("PutBlob", "PutBlockList", "FlushWithClose")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,15}$")


# --------------------------------------------------------------------------------------------------- helpers


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise DeployError(f"--name {name!r}: use 2-16 lowercase letters, digits or '-', starting with a letter")
    return name


def subnet_join_role_name(name: str, subscription_id: str) -> str:
    """The custom role's name, as infra/main.bicep gives it (unique per tenant)."""
    return f"ACI subnet join ({name}, {subscription_id})"


def resource_groups(name: str) -> tuple[str, str]:
    """(app resource group, scoring resource group), named as in infra/main.bicep."""
    return f"rg-{name}", f"rg-{name}-scoring"


def deployment_outputs(raw: str, print_only: bool) -> dict[str, str]:
    """`az deployment ... --query properties.outputs` JSON -> name: value (placeholders when printing)."""
    if print_only:
        return _Placeholders()
    try:
        outputs = json.loads(raw)
        return {k: v["value"] for k, v in outputs.items()}
    except (ValueError, KeyError, TypeError) as e:
        raise DeployError(f"unreadable deployment outputs: {e}") from None


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def input_subject_prefix() -> str:
    """Event Grid subject prefix of new input blobs: INPUT_CONTAINER/INPUT_PREFIX, as the template deploys them."""
    settings = json.loads((INFRA / "app-settings.json").read_text())
    return f"/blobServices/default/containers/{settings['containers']['input']}/blobs/{settings['inputPrefix']}"


def blob_webhook(host: str, key: str, function: str) -> str:
    return f"https://{host}/runtime/webhooks/blobs?functionName=Host.Functions.{function}&code={key}"


# Resource providers the templates use; registering is idempotent (and needed once per subscription).
PROVIDERS = ("Microsoft.Web", "Microsoft.App", "Microsoft.Storage", "Microsoft.ContainerRegistry",
             "Microsoft.ContainerInstance", "Microsoft.EventGrid", "Microsoft.ManagedIdentity",
             "Microsoft.OperationalInsights", "Microsoft.Insights", "Microsoft.Network")

# ---------------------------------------------------------------------------------------------------- deploy


def deploy(run: Runner, name: str, location: str, vnet: bool, what_if: bool = False,
           wait_seconds: float = 300, poll_seconds: float = 10) -> None:
    app_rg, _ = resource_groups(name)
    mode = "what-if" if what_if else "create"

    run.step("Check the Azure CLI and the signed-in subscription; register the resource providers")
    if not run.print_only and not shutil.which("az"):
        raise DeployError("the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli")
    run.az("account", "show", "--query", "id", "-o", "tsv", capture="subscriptionId")
    for namespace in PROVIDERS:
        run.az("provider", "register", "--namespace", namespace, "--wait")

    run.step("Deploy stage 1: resource group and container registry (infra/registry.bicep)")
    raw = run.az("deployment", "sub", mode, "--name", f"{name}-registry", "--location", location,
                 "--template-file", "infra/registry.bicep",
                 "--parameters", f"name={name}", f"location={location}", f"resourceGroupName={app_rg}",
                 *(("--query", "properties.outputs", "-o", "json") if not what_if else ()),
                 capture="registryOutputs")
    registry = deployment_outputs(raw, run.print_only or what_if)["registryName"]

    tag = image_tag()
    image = f"{IMAGE_REPOSITORY}:{tag}"
    run.step(f"Build the scoring image with az acr build (tag {tag}: a hash of the Dockerfile and what it copies)")
    exists = run.az("acr", "repository", "show", "--name", registry, "--image", image, "--query", "digest",
                    "-o", "tsv", capture="digestIfBuilt", check=False)
    if exists and not run.print_only:
        run.note(f"{image} is already in {registry}: not rebuilt")
    else:
        run.note("built only when the tag is missing from the registry")
        run.az("acr", "build", "--registry", registry, "--image", image, "--file", "Dockerfile", ".")

    run.step("Record the image's R packages (IMAGE_R_PACKAGES) from /opt/app/r-packages.txt")
    # The image's ENTRYPOINT is the worker: an ACR task step overrides it to print the file the build wrote.
    printed = run.az("acr", "run", "--registry", registry, "--file", "-", "/dev/null",
                     stdin=r_packages_task(image), capture="imageRPackages")
    packages = printed if run.print_only else parse_r_packages(printed)

    run.step("Deploy the template (infra/main.bicep)")
    # The template loads infra/app-settings.json: regenerate it from the code being deployed.
    if run.print_only:
        run.note("regenerate infra/app-settings.json from the settings module (python -m infra.app_settings)")
    else:
        (INFRA / "app-settings.json").write_text(app_settings.render())
    raw = run.az("deployment", "sub", mode, "--name", name, "--location", location,
                 "--template-file", "infra/main.bicep",
                 "--parameters", f"name={name}", f"location={location}", f"imageTag={tag}",
                 f"imageRPackages={packages}", f"enableVnet={str(vnet).lower()}",
                 *(("--query", "properties.outputs", "-o", "json") if not what_if else ()),
                 capture="templateOutputs")
    out = deployment_outputs(raw, run.print_only or what_if)
    app, host = out["functionAppName"], out["functionAppHostName"]

    run.step("Publish the app (zip of the repository, .funcignore applied; remote build of requirements.txt)")
    if run.print_only:
        run.note(f"package: {len(package_files())} files into {PACKAGE}")
    else:
        (REPO / PACKAGE).parent.mkdir(exist_ok=True)
        run.note(f"package: {build_package(REPO, REPO / PACKAGE)} files into {PACKAGE}")
    run.az("functionapp", "deployment", "source", "config-zip", "--resource-group", app_rg, "--name", app,
           "--src", PACKAGE, "--build-remote", "true")

    run.step("Subscribe the blob trigger to BlobCreated events (Event Grid; the extension key exists only now)")
    key = _wait_for(run, wait_seconds, poll_seconds, lambda: run.az(
        "functionapp", "keys", "list", "--resource-group", app_rg, "--name", app,
        "--query", "systemKeys.blobs_extension", "-o", "tsv", capture="blobsExtensionKey"),
        "the blobs_extension system key (the host creates it when the blob trigger starts)")
    prefix = input_subject_prefix()
    run.az("eventgrid", "system-topic", "event-subscription", "create", "--name", EVENT_SUBSCRIPTION,
           "--resource-group", app_rg, "--system-topic-name", out["systemTopicName"],
           "--endpoint-type", "webhook", "--endpoint", blob_webhook(host, key, blob_trigger_function()),
           "--included-event-types", "Microsoft.Storage.BlobCreated",
           "--subject-begins-with", prefix,
           "--advanced-filter", "data.api", "StringIn", *COMPLETING_APIS,
           "--event-delivery-schema", "eventgridschema",
           "--max-delivery-attempts", "30", "--event-ttl", "1440", secrets=[key])

    run.step("Smoke test: POST /api/runs with dryRun (plans, creates nothing)")
    function_key = run.az("functionapp", "keys", "list", "--resource-group", app_rg, "--name", app,
                          "--query", "functionKeys.default", "-o", "tsv", capture="functionKey")
    url = f"https://{host}/api/runs"
    run.show(["curl", "-sS", "-X", "POST", url, "-H", f"x-functions-key: {function_key}",
              "-d", '{"dryRun": true}'], secrets=[] if run.print_only else [function_key])
    if not run.print_only:
        run.note(smoke_test(url, function_key, wait_seconds, poll_seconds))
    run.out(f"deployed: https://{host}/api/runs (resource groups {app_rg}, {resource_groups(name)[1]})")


def smoke_test(url: str, function_key: str, wait_seconds: float, poll_seconds: float = 10) -> str:
    """POST a dry run. 200 is a plan; a 4xx JSON error naming a field means the app is up (nothing registered
    yet); anything else after wait_seconds of cold start is a failed deployment."""
    deadline = time.monotonic() + wait_seconds
    last = ""
    while True:
        request = urllib.request.Request(url, data=b'{"dryRun": true}', method="POST",
                                         headers={"x-functions-key": function_key,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read() or b"{}")
                return f"dry run planned {body.get('groups', '?')} group(s): the app is live"
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
            if 400 <= status < 500 and status not in (401, 403, 404):
                try:
                    error = json.loads(text)["error"]
                except (ValueError, KeyError, TypeError):
                    error = None
                if error:
                    return f"the app is live and answered {status}: {error}"
            last = f"HTTP {status}: {text[:200]}"
        except (urllib.error.URLError, TimeoutError, ValueError) as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise DeployError(f"smoke test failed: POST {url}: {last}")
        time.sleep(poll_seconds)


def _wait_for(run: Runner, wait_seconds: float, poll_seconds: float, read: Callable[[], str], what: str) -> str:
    deadline = time.monotonic() + wait_seconds
    while True:
        value = read()
        if value or run.print_only:
            return value
        if time.monotonic() > deadline:
            raise DeployError(f"gave up waiting for {what}")
        time.sleep(poll_seconds)


# --------------------------------------------------------------------------------------------------- destroy


def destroy(run: Runner, name: str) -> None:
    app_rg, scoring_rg = resource_groups(name)
    run.step("Check the signed-in subscription")
    subscription = run.az("account", "show", "--query", "id", "-o", "tsv", capture="subscriptionId")
    for group, what in ((scoring_rg, "container groups of running shards"),
                        (app_rg, "app, storage (models, input, results), registry, monitoring, identities")):
        run.step(f"Delete resource group {group} ({what})")
        exists = run.az("group", "exists", "--name", group, capture=f"{group}Exists")
        if run.print_only or exists == "true":
            run.az("group", "delete", "--name", group, "--yes")
        else:
            run.note(f"{group} does not exist")
    run.step("Delete the custom subnet-join role (only with --vnet)")
    scope = f"/subscriptions/{subscription}"
    role_ids = run.az("role", "definition", "list", "--custom-role-only", "true", "--scope", scope,
                      "--query", f"[?roleName=='{subnet_join_role_name(name, subscription)}'].name", "-o", "tsv",
                      capture="roleIds")
    for role_id in role_ids.split():
        run.az("role", "definition", "delete", "--name", role_id, "--scope", scope)
    run.step("Delete the subscription-level deployment records")
    for deployment in (name, f"{name}-registry"):
        run.az("deployment", "sub", "delete", "--name", deployment, "--no-wait", check=False)
    run.out(f"destroyed: {app_rg}, {scoring_rg}")


# ------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("deploy", "destroy"):
        p = sub.add_parser(command)
        p.add_argument("--name", default=os.environ.get("AZURE_ENV_NAME", "rscoring"))
        p.add_argument("--print-only", action="store_true", help="print every command in order; run nothing")
        if command == "deploy":
            p.add_argument("--location", default=os.environ.get("AZURE_LOCATION", "westeurope"))
            p.add_argument("--vnet", action="store_true", help="container groups and the app in a VNet")
            p.add_argument("--what-if", action="store_true",
                           help="like --print-only, with `az deployment sub what-if` for the templates")
        else:
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    print_only = args.print_only or getattr(args, "what_if", False)
    run = Runner(print_only=print_only)
    try:
        name = check_name(args.name)
        if args.command == "deploy":
            deploy(run, name, args.location, args.vnet, what_if=args.what_if)
        else:
            if not print_only and not args.yes:
                answer = input(f"Delete {', '.join(resource_groups(name))} and all their data? [y/N] ")
                if answer.strip().lower() != "y":
                    print("nothing deleted")
                    return 1
            destroy(run, name)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
