"""Two identities: the app's never reaches a container, the worker's is the only one a container gets, and no
account key leaves loopback development. The worker's storage rights are those infra/*.bicep grants it; on
Azurite (no RBAC) tests/support/worker_scope.py enforces them, so the registration container is run here with
exactly what it may do in Azure, and a scoring container's worst (rewriting staging) is shown not to reach
`models`.

The container-creation test runs the real create_container_group activity against Azurite and the ARM
stand-in and reads the PUT body the stand-in received. Credential tests look inside azure-identity's
DefaultAzureCredential (pinned 1.27) for the client id it was given: a managed identity endpoint cannot exist
here, so which identity a token would come from is read from the credential itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from support.worker_scope import WorkerDenied, WorkerScopedBlobs, worker_rights

from devenv.aci_standin.control import Standin, start_standin
from pipeline import activities, naming, services
from pipeline.aci.client import ContainerGroups, default_credential
from pipeline.payloads import GroupRequest, InputRef, ShardInput, Timing
from pipeline.settings import Settings, connection_string_is_loopback
from pipeline.worker_env import ContainerSecretRefused, worker_environment
from scoring.blobstore import BlobStore

APP_ID = "aaaaaaaa-0000-4000-8000-000000000001"
WORKER_ID = "bbbbbbbb-0000-4000-8000-000000000002"
WORKER_RESOURCE = ("/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg/providers/"
                   "Microsoft.ManagedIdentity/userAssignedIdentities/scoring-worker")
PUBLIC_KEY = ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;"
              "EndpointSuffix=core.windows.net")
AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0LWtleQ==;"
           "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1")


def managed_identity_client_id(credential: DefaultAzureCredential) -> str | None:
    [mi] = [c for c in credential.credentials if isinstance(c, ManagedIdentityCredential)]
    identity = mi._credential._msal_client._managed_identity  # azure-identity 1.27 internals
    return identity.get("Id") if identity.get("ManagedIdentityIdType") == "ClientId" else None


@pytest.mark.parametrize("connection_string", [
    PUBLIC_KEY,
    "BlobEndpoint=https://acct.blob.core.windows.net/;AccountKey=c2VjcmV0LWtleQ==",
    # One loopback endpoint is not enough: every endpoint must be.
    "BlobEndpoint=http://127.0.0.1:10000/a;QueueEndpoint=https://acct.queue.core.windows.net;AccountKey=eA==",
    "BlobEndpoint=https://127.0.0.1.nip.io:10000/a;AccountKey=eA==",
    "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024&sig=abc",
])
def test_a_key_for_a_real_account_is_refused(connection_string: str) -> None:
    with pytest.raises(ValueError, match="STORAGE holds an account key"):
        Settings.from_env({"STORAGE": connection_string})


@pytest.mark.parametrize("connection_string", [AZURITE, "UseDevelopmentStorage=true",
                                               "BlobEndpoint=http://localhost:10000/a;AccountKey=eA=="])
def test_loopback_development_storage_is_accepted(connection_string: str) -> None:
    assert connection_string_is_loopback(connection_string)
    assert Settings.from_env({"STORAGE": connection_string}).storage_connection_string == connection_string


def test_the_two_identities_are_distinct_and_complete() -> None:
    with pytest.raises(ValueError, match="identity of their own"):
        Settings.from_env({"APP_IDENTITY_CLIENT_ID": APP_ID, "WORKER_IDENTITY_CLIENT_ID": APP_ID,
                           "WORKER_IDENTITY_RESOURCE_ID": WORKER_RESOURCE})
    with pytest.raises(ValueError, match="go together"):
        Settings.from_env({"WORKER_IDENTITY_RESOURCE_ID": WORKER_RESOURCE})
    with pytest.raises(ValueError, match="STAGING_CONTAINER"):
        Settings.from_env({"STAGING_CONTAINER": "results"})


@pytest.mark.parametrize("container", ["staging", "results", "models", "input"])
def test_uploads_wait_in_a_container_of_their_own(container: str) -> None:
    """The worker (any model's code) writes staging and may be granted more on the others: an upload kept in
    one of them could be changed between the door and the registration container."""
    with pytest.raises(ValueError, match="UPLOADS_CONTAINER must be a container of its own"):
        Settings.from_env({"UPLOADS_CONTAINER": container})
    assert Settings.from_env({}).uploads_container == "uploads"


def azure_settings(**extra: str) -> Settings:
    return Settings.from_env({"STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
                              "APP_IDENTITY_CLIENT_ID": APP_ID, "WORKER_IDENTITY_CLIENT_ID": WORKER_ID,
                              "WORKER_IDENTITY_RESOURCE_ID": WORKER_RESOURCE, **extra})


def test_containers_get_the_worker_identity_and_no_secret() -> None:
    plain, secure = worker_environment(azure_settings(), naming.job_blob("run-x", 0))
    assert plain["AZURE_CLIENT_ID"] == WORKER_ID
    assert plain["SCORING_JOB_BLOB"] == "staging/run-x/shard-000-a1/job.json"
    assert plain["SCORING_STORAGE_ACCOUNT_URL"] == "https://acct.blob.core.windows.net"
    assert secure == {}
    assert APP_ID not in json.dumps([plain, secure])


def test_a_non_loopback_connection_string_never_reaches_a_container() -> None:
    # Settings.validate refuses one with a key; even without a key it is not handed to a container.
    settings = Settings.from_env({"STORAGE": "BlobEndpoint=https://acct.blob.core.windows.net/"})
    with pytest.raises(ContainerSecretRefused, match="non-loopback"):
        worker_environment(settings, "run-x/shard-000-a1/job.json")


def test_each_side_names_its_own_identity() -> None:
    settings = azure_settings()
    assert managed_identity_client_id(default_credential(settings)) == APP_ID  # ARM, as the app
    app_storage = BlobStore.connect(account_url=settings.storage_account_url, client_id=APP_ID)
    assert managed_identity_client_id(app_storage._service.credential) == APP_ID
    from scoring.__main__ import connect_storage

    worker_storage = connect_storage({"SCORING_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
                                      "AZURE_CLIENT_ID": WORKER_ID})
    assert managed_identity_client_id(worker_storage._service.credential) == WORKER_ID


@pytest.fixture
def standin(tmp_path) -> Iterator[Standin]:
    server = start_standin(tmp_path / "aci")
    yield server
    server.stop(kill_containers=True)


def test_the_create_activity_sends_the_worker_identity_only(standin: Standin, azurite, monkeypatch) -> None:
    """The real activity: job spec into staging, group created with the worker identity; the PUT body the
    stand-in received carries neither the app's client id nor a key in plain text."""
    env = {"STORAGE": azurite.connection_string, "ARM_ENDPOINT": standin.endpoint,
           "ARM_CA_BUNDLE": str(standin.ca_file), "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-0000000000aa",
           "ACI_RESOURCE_GROUP": "rg", "SCORING_IMAGE": "registry.example/r-scoring:1",
           "REGISTRY_SERVER": "registry.example", "APP_IDENTITY_CLIENT_ID": APP_ID,
           "WORKER_IDENTITY_CLIENT_ID": WORKER_ID, "WORKER_IDENTITY_RESOURCE_ID": WORKER_RESOURCE}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cached in (services.settings, services._storage, services._container_groups):
        cached.cache_clear()
    try:
        services.storage().ensure_container("staging")
        timing = Timing(poll_seconds=1, deadline_minutes=1, provisioning_deadline_minutes=1,
                        retry_interval_seconds=1, retry_attempts=1, shard_attempts=1, quota_waits=1)
        # The plan's shard blob, as plan_run writes it (the create activity reads the postcodes from it).
        shard_blob = naming.plan_shard_blob("run-identity", 0)
        services.storage().ensure_container("results")
        services.storage().write_json("results", shard_blob, {"run_id": "run-identity", "index": 0,
                                                              "postcodes": ["8001"]})
        work = ShardInput(run_id="run-identity", index=0, postcodes=1, postcodes_blob=shard_blob, model="parcels",
                          version="v1", input=InputRef(container="input", blob="x.csv", etag="0x1"), horizon=3,
                          timing=timing)
        request = GroupRequest(shard=work, attempt=1, group="run-identity-s000",
                               output_prefix=naming.staging_prefix("run-identity", 0))
        assert activities.create_container_group(request).ok
        job = services.storage().read_json("staging", "run-identity/shard-000-a1/job.json")
        assert (job["output"]["container"], job["output"]["prefix"]) == ("staging", "run-identity/shard-000-a1/")
        sent = standin.received("run-identity-s000")
        assert sent["identity"]["userAssignedIdentities"] == {WORKER_RESOURCE: {}}
        assert sent["properties"]["imageRegistryCredentials"] == [{"server": "registry.example",
                                                                  "identity": WORKER_RESOURCE}]
        variables = {v["name"]: v for v in sent["properties"]["containers"][0]["properties"]["environmentVariables"]}
        assert variables["AZURE_CLIENT_ID"] == {"name": "AZURE_CLIENT_ID", "value": WORKER_ID}
        assert variables["SCORING_STORAGE_CONNECTION_STRING"] == {"name": "SCORING_STORAGE_CONNECTION_STRING",
                                                                 "secureValue": "***"}
        assert APP_ID not in json.dumps(sent)
        assert ContainerGroups(services.settings()).delete("run-identity-s000") is True
    finally:
        for cached in (services.settings, services._storage, services._container_groups):
            cached.cache_clear()


@pytest.fixture(scope="module")
def worker_may() -> dict[str, set[str]]:
    """The worker's rights per container, read from the role assignments in infra/*.bicep."""
    from test_infra import role_assignments, settings_document

    return worker_rights(role_assignments(), settings_document()["containers"])


def test_the_worker_may_read_uploads_but_write_staging_only(worker_may) -> None:
    defaults = Settings.from_env({})
    assert worker_may[defaults.uploads_container] == {"read"}, "any model's code could change an upload"
    assert [c for c, rights in worker_may.items() if "write" in rights] == [defaults.staging_container]
    assert defaults.results_container not in worker_may


def test_a_registration_container_works_within_the_worker_rights_and_staging_tampering_never_reaches_models(
        azurite, worker_may, tmp_path, monkeypatch, capsys) -> None:
    """The real registration command, in-process against Azurite with the worker's Azure rights enforced; then
    what any scoring container may do (rewrite the staged version consistently) and may not (touch the upload)."""
    from support.unit_data import make_settings

    import client_api.registration as registration
    import scoring.__main__ as cli
    from client_api.registration_publish import PublishRefused, publish_staged
    from scoring.staged import verified_from_logs

    app = BlobStore.connect(connection_string=azurite.connection_string)
    for container in ("uploads", "staging", "models"):
        app.ensure_container(container)
    monkeypatch.setattr(registration, "settings", lambda: make_settings())
    request = registration.registration_request("scoped", "v1", champion=False)
    subprocess.run(["Rscript", "-e", "; ".join(f'saveRDS(lm(y ~ x, data.frame(x = 1:9, y = (1:9) * {i})), '
                                               f'"{tmp_path}/{pc}.rds")' for i, pc in enumerate(["1000", "2000"]))],
                   check=True, capture_output=True)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as t:
        for pc in ("1000", "2000"):
            t.add(tmp_path / f"{pc}.rds", arcname=f"{pc}.rds")
    app.write_bytes(*request.staged.split("/", 1), archive.getvalue())

    worker = WorkerScopedBlobs(BlobStore.connect(connection_string=azurite.connection_string), worker_may)
    monkeypatch.setattr(cli, "connect_storage", lambda env=None: worker)
    command = registration.registration_command(request)
    assert command[:3] == ["python", "-m", "scoring"]
    assert cli.main(command[3:]) == 0, capsys.readouterr()
    assert worker.denied == []  # every call it made, Azure would have allowed
    verified = verified_from_logs(capsys.readouterr().out, request.output)
    assert verified is not None and verified["models"] == 2

    # Any scoring container, later: the upload is out of reach, the staged version is not.
    with pytest.raises(WorkerDenied):
        worker.write_bytes(*request.staged.split("/", 1), b"evil")
    container, _, prefix = request.output.partition("/")
    manifest = json.loads(worker.read_bytes(container, prefix + "manifest.json"))
    pack = manifest["packs"][0]["blob"]
    evil = b"evil model bytes"
    worker.write_bytes(container, prefix + pack, evil)
    manifest["packs"][0].update(size=len(evil), sha256=hashlib.sha256(evil).hexdigest())
    for entry in manifest["models"].values():
        entry.update(offset=0, length=len(evil), sha256=hashlib.sha256(evil).hexdigest())
    worker.write_json(container, prefix + "manifest.json", manifest)
    with pytest.raises(PublishRefused, match="not the one the registration container verified"):
        publish_staged(app, request.output, "models", request.id, "scoped", "v1", champion=False,
                       manifest_sha256=verified["manifest_sha256"])
    assert list(app.list("models", "scoped/")) == []
