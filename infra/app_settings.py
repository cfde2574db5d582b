"""Generate infra/app-settings.json, the Function App's settings, from the code's own settings module.

The code reads every app setting through one module (its DEFAULTS dict). This script turns those defaults into
the settings the Bicep template deploys, plus what only the infrastructure knows (endpoints, identities,
registry, App Insights), so template and code cannot drift: tests/test_infra.py fails when the committed file
is not what this script writes.

    python -m infra.app_settings          # rewrite infra/app-settings.json
    python -m infra.app_settings --check  # exit 1 if the committed file is stale

infra/app.bicep reads the JSON with loadJsonContent and deploys "appSettings", one entry per setting:
  - a fixed value (the code's default, or a platform constant): {"name", "value", "from": "none"};
  - a value only the template knows: {"name", "value": "", "from": <key of the template's `infraValues`>}.
The template sets value + infraValues[from] (infraValues.none is ''): one property loop, no conditionals, because
Bicep allows values known only at deployment time in a resource property loop but not in a variable loop.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "infra" / "app-settings.json"

# The settings module has moved before (a refactor renames packages): the first one that imports wins.
SETTINGS_MODULES = ("pipeline.settings", "orchestrators.settings")

# Values the template computes. Keys of `infraValues` in infra/app.bicep.
ALWAYS_FROM_TEMPLATE: dict[str, str] = {
    # The Functions host and the Durable task hub on the app identity (identity-based AzureWebJobsStorage).
    "AzureWebJobsStorage__clientId": "appIdentityClientId",
    "AzureWebJobsStorage__blobServiceUri": "blobEndpoint",
    "AzureWebJobsStorage__queueServiceUri": "queueEndpoint",
    "AzureWebJobsStorage__tableServiceUri": "tableEndpoint",
    # The blob trigger's connection "STORAGE": blobs, and a queue for its poison messages.
    "STORAGE__blobServiceUri": "blobEndpoint",
    "STORAGE__queueServiceUri": "queueEndpoint",
    "STORAGE__clientId": "appIdentityClientId",
    # Two identities: the app's (control plane, storage) and the worker's (attached to container groups).
    "APP_IDENTITY_CLIENT_ID": "appIdentityClientId",
    "AZURE_CLIENT_ID": "appIdentityClientId",
    "WORKER_IDENTITY_RESOURCE_ID": "workerIdentityResourceId",
    "WORKER_IDENTITY_CLIENT_ID": "workerIdentityClientId",
    # Telemetry with Entra ID auth: App Insights has local (key) auth disabled.
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "appInsightsConnectionString",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "appInsightsAuthenticationString",
}

# Code settings whose Azure value only the template knows; used when the settings module defines them.
CODE_FROM_TEMPLATE: dict[str, str] = {
    "AZURE_SUBSCRIPTION_ID": "subscriptionId",
    "ACI_RESOURCE_GROUP": "scoringResourceGroup",
    "ACI_LOCATION": "location",
    "ACI_SUBNET_ID": "aciSubnetId",
    "SCORING_IMAGE": "scoringImage",
    "REGISTRY_SERVER": "registryServer",
    "IMAGE_R_PACKAGES": "imageRPackages",
    # Names used before the two-identity split: the identity given to container groups is the worker's.
    "MANAGED_IDENTITY_RESOURCE_ID": "workerIdentityResourceId",
    "MANAGED_IDENTITY_CLIENT_ID": "workerIdentityClientId",
}

# The `from` of a fixed value: infraValues.none is the empty string in the template.
NO_TEMPLATE_VALUE = "none"

# Fixed values for identity-based connections.
PLATFORM_STATIC: dict[str, str] = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "STORAGE__credential": "managedidentity",
}

# Code settings deliberately left unset in Azure, each with the reason. Anything else must be deployed.
NOT_IN_AZURE: dict[str, str] = {
    "STORAGE": "a connection string for Azurite only; in Azure the STORAGE__* identity settings apply",
    "ARM_CA_BUNDLE": "the development stand-in's test CA; Azure's ARM has a public certificate",
}

# The blob containers the template creates, by role -> (setting naming it, default if the code has no such setting).
CONTAINER_SETTINGS: dict[str, tuple[str, str]] = {
    "models": ("MODELS_CONTAINER", "models"),
    "input": ("INPUT_CONTAINER", "input"),
    "results": ("RESULTS_CONTAINER", "results"),
    "staging": ("STAGING_CONTAINER", "staging"),
    "uploads": ("UPLOADS_CONTAINER", "uploads"),
}

# Settings Flex Consumption rejects or ignores (the runtime and package are properties of the site there).
FLEX_FORBIDDEN = frozenset({
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "WEBSITE_NODE_DEFAULT_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "AzureWebJobsStorage",
})


def settings_module() -> ModuleType:
    errors = []
    for name in SETTINGS_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            errors.append(f"{name}: {e}")
            continue
        if isinstance(getattr(module, "DEFAULTS", None), dict):
            return module
        errors.append(f"{name}: no DEFAULTS dict")
    raise SystemExit("no settings module with DEFAULTS found (update SETTINGS_MODULES): " + "; ".join(errors))


def build(defaults: dict[str, str], module_name: str) -> dict:
    """The app-settings document for these code defaults."""
    from_template = dict(ALWAYS_FROM_TEMPLATE)
    from_template.update({name: key for name, key in CODE_FROM_TEMPLATE.items() if name in defaults})
    static = dict(PLATFORM_STATIC)
    for name, default in defaults.items():
        if name in from_template or name in NOT_IN_AZURE or name in PLATFORM_STATIC:
            continue
        static[name] = default
    clash = FLEX_FORBIDDEN & (set(static) | set(from_template))
    if clash:
        raise ValueError(f"settings not allowed on Flex Consumption: {sorted(clash)}")
    containers = {role: defaults.get(name, default) for role, (name, default) in CONTAINER_SETTINGS.items()}
    return {
        "_generated": f"by `python -m infra.app_settings` from {module_name}.DEFAULTS; do not edit by hand",
        # Read by the template (containers, role scopes) and by the deploy script (Event Grid filter).
        "containers": containers,
        "inputPrefix": defaults.get("INPUT_PREFIX", ""),
        "appSettings": sorted([{"name": k, "value": v, "from": NO_TEMPLATE_VALUE} for k, v in static.items()]
                              + [{"name": k, "value": "", "from": v} for k, v in from_template.items()],
                              key=lambda entry: entry["name"]),
    }


def split(document: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(fixed values by name, infraValues keys by name) of an app-settings document."""
    entries = document["appSettings"]
    fixed = {e["name"]: e["value"] for e in entries if e["from"] == NO_TEMPLATE_VALUE}
    from_template = {e["name"]: e["from"] for e in entries if e["from"] != NO_TEMPLATE_VALUE}
    return fixed, from_template


def render() -> str:
    module = settings_module()
    return json.dumps(build(module.DEFAULTS, module.__name__), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(REPO)} is out of date: run `python -m infra.app_settings`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
