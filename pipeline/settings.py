"""Every app setting the Functions app reads, in one place.

Defaults are documented in local.settings.sample.json; tests/test_settings.py keeps the two in step. The
infrastructure templates take the app settings' names from DEFAULTS too.

Two user-assigned managed identities, never one for both:
  - the app's (APP_IDENTITY_CLIENT_ID): creates and deletes container groups, assigns the worker identity
    to them, reads and writes Blob Storage (models, input, staging, uploads, results);
  - the worker's (WORKER_IDENTITY_RESOURCE_ID, WORKER_IDENTITY_CLIENT_ID): attached to each container group
    for the keyless image pull (AcrPull) and storage: reads models, input and uploads, reads and writes
    staging (STAGING_CONTAINER), nothing else. Containers run model code (a version's own scorer.R), so
    they never get the app's identity, and never an account key outside loopback development.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlparse

# name -> default ("" means: required in Azure, or optional and off).
DEFAULTS: dict[str, str] = {
    # Storage, named like a Functions binding connection "STORAGE" (the blob trigger uses it too):
    # STORAGE__blobServiceUri with managed identity in Azure; STORAGE as a connection string only for Azurite.
    "STORAGE__blobServiceUri": "",
    "STORAGE": "",
    "MODELS_CONTAINER": "models",
    "INPUT_CONTAINER": "input",
    "RESULTS_CONTAINER": "results",
    # Where containers write (<run>/shard-NNN-aN/); the app publishes from here into RESULTS_CONTAINER.
    "STAGING_CONTAINER": "staging",
    # Model versions uploaded through the HTTP API wait here until registered. The worker may read it but not
    # write it (any model's code runs as the worker), so an upload cannot change between the door and the
    # registration container; give it a lifecycle rule deleting blobs after a day.
    "UPLOADS_CONTAINER": "uploads",
    "INPUT_PREFIX": "daily/",
    "DEFAULT_MODEL": "parcels",
    # ACI placement.
    "AZURE_SUBSCRIPTION_ID": "",
    "ACI_RESOURCE_GROUP": "",
    "ACI_LOCATION": "westeurope",
    "ACI_SUBNET_ID": "",
    # ARM endpoint; only development points it at the loopback stand-in (with its CA bundle).
    "ARM_ENDPOINT": "https://management.azure.com",
    "ARM_CA_BUNDLE": "",
    "ARM_POLLING_INTERVAL_SECONDS": "5",
    # Image, and the two identities (see above). Empty identities: development only (Azurite, stand-in).
    "SCORING_IMAGE": "",
    "REGISTRY_SERVER": "",
    "APP_IDENTITY_CLIENT_ID": "",
    "WORKER_IDENTITY_RESOURCE_ID": "",
    "WORKER_IDENTITY_CLIENT_ID": "",
    # Container size and fan-out; CORE_QUOTA is the regional ACI core quota we may use.
    "CONTAINER_CPU": "2",
    "CONTAINER_MEMORY_GB": "4",
    "MAX_PARALLEL_GROUPS": "10",
    "CORE_QUOTA": "20",
    "MIN_SHARD_SIZE": "100",
    # Admission: runs active at once (more get 429 + Retry-After); the vCPU of all their groups together is
    # bounded by CORE_QUOTA (pipeline/admission.py).
    "MAX_ACTIVE_RUNS": "20",
    # Waiting: the first poll of a container comes POLL_FIRST_SECONDS after its create, then the interval
    # doubles up to POLL_INTERVAL_SECONDS (quick failures are seen quickly, long runs cost few polls).
    "POLL_FIRST_SECONDS": "2",
    "POLL_INTERVAL_SECONDS": "20",
    "SHARD_DEADLINE_MINUTES": "60",
    "PROVISIONING_DEADLINE_MINUTES": "15",
    "DEFAULT_HORIZON_DAYS": "60",
    "MAX_HORIZON_DAYS": "366",
    # Durable retries of ACI calls (create, delete) and of failed shards.
    "ACI_RETRY_INTERVAL_SECONDS": "15",
    "ACI_RETRY_ATTEMPTS": "5",
    "SHARD_ATTEMPTS": "2",
    # Orphan sweeper: groups of this app older than this and of no running run are deleted.
    "ORPHAN_TTL_MINUTES": "180",
    # What the scoring image has: checked against each model version before any fan-out. Set from the image
    # build (see README); empty = not checked. IMAGE_R_PACKAGES: "name=version;name=version".
    "IMAGE_R_VERSION": "4.2.2",
    "IMAGE_R_PACKAGES": "",
    # Cost: ACI Linux prices per vCPU-second and GB-second (USD); the dry-run estimate's assumptions.
    "ACI_PRICE_PER_VCPU_SECOND": "0.0000135",
    "ACI_PRICE_PER_GB_SECOND": "0.0000015",
    "EXPECTED_STARTUP_SECONDS": "60",
    "EXPECTED_SECONDS_PER_POSTCODE": "0.002",
    # Schedule (NCRONTAB, six fields): daily at 02:00 UTC.
    "SCORING_SCHEDULE": "0 0 2 * * *",
    # Orphan sweeper schedule (NCRONTAB): every 15 minutes; see ORPHAN_TTL_MINUTES.
    "ORPHAN_SWEEP_SCHEDULE": "0 */15 * * * *",
    # Read by the Python worker, not by us: threads for sync functions. Orchestrator episodes are sync
    # functions too, so the pool must outnumber host.json's maxConcurrentActivityFunctions plus
    # maxConcurrentOrchestratorFunctions, or activities blocked on I/O stall every orchestration.
    "PYTHON_THREADPOOL_THREAD_COUNT": "20",
    # Time-series models: input may start at most this many days after the model's training end.
    "TS_MAX_GAP_DAYS": "90",
    # Actuals (postcode,date,volume) land under INPUT_CONTAINER/ACTUALS_PREFIX<run id>/...csv.
    "ACTUALS_PREFIX": "actuals/",
    # Client routes (client_api/): uploaded model versions wait in UPLOADS_CONTAINER until registered; uploaded
    # input CSVs go to INPUT_CONTAINER/UPLOAD_PREFIX,
    # which must lie outside INPUT_PREFIX (else each upload also fires the blob trigger). Body limits in MB.
    "UPLOAD_PREFIX": "uploads/",
    "MAX_REGISTRATION_MB": "64",  # one request body: a small version, or one part of a large one
    "MAX_STAGED_MB": "4096",  # a version uploaded in parts, all parts together
    "MAX_INPUT_UPLOAD_MB": "32",
    # Dashboard data routes (dashboard/auth.py): "function-key" (x-functions-key, for local use) or
    # "app-service" (App Service Authentication with Entra ID in front; no key in the browser).
    "DASHBOARD_AUTH": "function-key",
}


# Fields whose app-setting name is not simply the field name in capitals.
ENV_NAMES = {"storage_account_url": "STORAGE__blobServiceUri", "storage_connection_string": "STORAGE"}


@dataclass(frozen=True)
class Settings:
    storage_account_url: str
    storage_connection_string: str
    models_container: str
    input_container: str
    results_container: str
    staging_container: str
    uploads_container: str
    input_prefix: str
    default_model: str
    azure_subscription_id: str
    aci_resource_group: str
    aci_location: str
    aci_subnet_id: str
    arm_endpoint: str
    arm_ca_bundle: str
    arm_polling_interval_seconds: float
    scoring_image: str
    registry_server: str
    app_identity_client_id: str
    worker_identity_resource_id: str
    worker_identity_client_id: str
    container_cpu: float
    container_memory_gb: float
    max_parallel_groups: int
    core_quota: int
    min_shard_size: int
    max_active_runs: int
    poll_first_seconds: float
    poll_interval_seconds: float
    shard_deadline_minutes: float
    default_horizon_days: int
    provisioning_deadline_minutes: float
    max_horizon_days: int
    aci_retry_interval_seconds: float
    aci_retry_attempts: int
    shard_attempts: int
    orphan_ttl_minutes: float
    image_r_version: str
    image_r_packages: str
    aci_price_per_vcpu_second: float
    aci_price_per_gb_second: float
    expected_startup_seconds: float
    expected_seconds_per_postcode: float
    scoring_schedule: str
    orphan_sweep_schedule: str
    python_threadpool_thread_count: int
    ts_max_gap_days: int
    actuals_prefix: str
    upload_prefix: str
    max_registration_mb: float
    max_staged_mb: float
    max_input_upload_mb: float
    dashboard_auth: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            name = ENV_NAMES.get(f.name, f.name.upper())
            raw = env.get(name, DEFAULTS[name])
            try:
                values[f.name] = _convert(raw, f.type)
            except ValueError:
                raise ValueError(f"app setting {name}={raw!r} is not a valid {f.type}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.storage_connection_string and not connection_string_is_loopback(self.storage_connection_string):
            secrets = _connection_string_fields(self.storage_connection_string)
            if secrets.get("accountkey") or secrets.get("sharedaccesssignature"):
                raise ValueError("STORAGE holds an account key (or SAS) for a non-loopback endpoint: use managed "
                                 "identity (STORAGE__blobServiceUri); a key connection string is for local Azurite "
                                 "only")
        if bool(self.worker_identity_resource_id) != bool(self.worker_identity_client_id):
            raise ValueError("WORKER_IDENTITY_RESOURCE_ID and WORKER_IDENTITY_CLIENT_ID go together: set both")
        if self.app_identity_client_id and self.app_identity_client_id == self.worker_identity_client_id:
            raise ValueError("WORKER_IDENTITY_CLIENT_ID is the app's identity: containers need an identity of "
                             "their own")
        if self.staging_container in (self.results_container, self.models_container, self.input_container):
            raise ValueError("STAGING_CONTAINER must be a container of its own (the worker may write only there)")
        if self.uploads_container in (self.staging_container, self.results_container, self.models_container,
                                      self.input_container):
            raise ValueError("UPLOADS_CONTAINER must be a container of its own (the worker may read it, never "
                             "write it; the app writes it)")
        if self.container_cpu <= 0 or self.container_memory_gb <= 0:
            raise ValueError("CONTAINER_CPU and CONTAINER_MEMORY_GB must be positive")
        if self.max_parallel_groups < 1:
            raise ValueError("MAX_PARALLEL_GROUPS must be at least 1")
        if self.core_quota < self.container_cpu:
            raise ValueError("CORE_QUOTA is smaller than CONTAINER_CPU: not even one group fits")
        if not 1 <= self.python_threadpool_thread_count <= 32:
            raise ValueError("PYTHON_THREADPOOL_THREAD_COUNT must be from 1 to 32 (the Python worker's range)")
        if self.dashboard_auth not in ("function-key", "app-service"):
            raise ValueError(f"DASHBOARD_AUTH={self.dashboard_auth!r}: use 'function-key' or 'app-service'")

    @property
    def parallel_groups(self) -> int:
        """Groups that may run at once: the configured bound, lowered to fit the core quota."""
        return max(1, min(self.max_parallel_groups, int(self.core_quota // self.container_cpu)))


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connection_string_fields(connection_string: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return {key.strip().lower(): value.strip() for key, value in pairs}


def connection_string_is_loopback(connection_string: str) -> bool:
    """Every service endpoint the connection string names is on this machine (Azurite)."""
    fields_ = _connection_string_fields(connection_string)
    if fields_.get("usedevelopmentstorage", "").lower() == "true":
        return True  # the SDKs' shorthand for Azurite's well-known loopback endpoints
    endpoints = [value for key, value in fields_.items() if key.endswith("endpoint")]
    # Without explicit endpoints the SDK builds public ones from AccountName and EndpointSuffix.
    return bool(endpoints) and all(is_loopback_url(url) for url in endpoints)


def _convert(raw: str, type_name: str) -> object:
    if type_name == "int":
        return int(raw)
    if type_name == "float":
        return float(raw)
    return raw
