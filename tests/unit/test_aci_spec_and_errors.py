"""The container group ARM body and the mapping of ARM errors (no ARM calls: the SDK models only)."""

from __future__ import annotations

import pickle

import pytest
from azure.core.exceptions import HttpResponseError, ODataV4Format, ServiceRequestError
from support.unit_data import make_settings

from pipeline.aci.errors import AciError, arm_errors, is_quota_error, is_retryable
from pipeline.aci.spec import APP_TAG, CONTAINER_NAME, build_container_group, scoring_spec


def spec(**settings: str):
    s = make_settings(**settings)
    return s, scoring_spec(s, "run-a-s000", {"SCORING_JOB_BLOB": "results/job.json"},
                           {"SCORING_STORAGE_CONNECTION_STRING": "AccountKey=secret"}, {**APP_TAG, "run": "run-a"})


def test_a_scoring_group_runs_once_without_a_public_ip_sized_from_the_settings():
    settings, s = spec(CONTAINER_CPU="1", CONTAINER_MEMORY_GB="3.5", ACI_LOCATION="northeurope")
    group = build_container_group(settings, s)
    assert group.restart_policy == "Never" and group.os_type == "Linux" and group.ip_address is None
    assert group.location == "northeurope" and group.tags == {"app": "r-scoring", "run": "run-a"}
    [container] = group.containers
    assert container.name == CONTAINER_NAME and container.image == "scoringacr.azurecr.io/r-scoring:1.4.2"
    assert (container.resources.requests.cpu, container.resources.requests.memory_in_gb) == (1.0, 3.5)
    assert container.command is None  # the image's entrypoint


def test_secrets_reach_the_container_only_as_secure_values():
    settings, s = spec()
    env = {e.name: e for e in build_container_group(settings, s).containers[0].environment_variables}
    assert env["SCORING_JOB_BLOB"].value == "results/job.json" and env["SCORING_JOB_BLOB"].secure_value is None
    secret = env["SCORING_STORAGE_CONNECTION_STRING"]
    assert secret.secure_value == "AccountKey=secret" and secret.value is None


def test_keyless_pull_and_vnet_when_configured():
    identity = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
    settings, s = spec(WORKER_IDENTITY_RESOURCE_ID=identity, WORKER_IDENTITY_CLIENT_ID="worker-client-id",
                       REGISTRY_SERVER="scoringacr.azurecr.io",
                       ACI_SUBNET_ID="/subscriptions/x/subnets/aci")
    group = build_container_group(settings, s)
    assert group.identity.type == "UserAssigned" and list(group.identity.user_assigned_identities) == [identity]
    [credential] = group.image_registry_credentials
    assert credential.server == "scoringacr.azurecr.io" and credential.identity == identity
    assert credential.password is None and credential.username is None
    assert [subnet.id for subnet in group.subnet_ids] == ["/subscriptions/x/subnets/aci"]


def test_without_an_identity_there_is_no_registry_credential():
    settings, s = spec(REGISTRY_SERVER="scoringacr.azurecr.io")
    group = build_container_group(settings, s)
    assert group.identity is None and group.image_registry_credentials is None and group.subnet_ids is None


@pytest.mark.parametrize("status, code, retryable", [
    (429, "TooManyRequests", True), (500, None, True), (503, "ServiceUnavailable", True), (408, None, True),
    (409, "InsufficientCapacity", True), (409, "ServiceUnavailable", True), (400, "ContainerGroupQuotaReached", True),
    (400, "InvalidImage", False), (404, "ResourceNotFound", False), (None, "InaccessibleImage", False),
    (500, "InaccessibleImage", False), (400, "StandardCoresQuotaExceeded", True),
])
def test_retryable_arm_errors(status, code, retryable):
    assert is_retryable(status, code) is retryable


def test_quota_errors():
    assert is_quota_error("ContainerGroupQuotaReached") and is_quota_error("StandardCoresQuotaExceeded")
    assert not is_quota_error("InsufficientCapacity") and not is_quota_error(None)


def test_no_http_answer_is_retryable_and_names_the_operation():
    with pytest.raises(AciError) as e, arm_errors("create", "run-a-s000"):
        raise ServiceRequestError("connection refused")
    assert e.value.retryable and e.value.status is None and e.value.code == "ServiceRequestError"
    assert str(e.value).startswith("create run-a-s000: no HTTP answer: ServiceRequestError")


def test_secrets_are_scrubbed_from_arm_messages():
    arm = HttpResponseError(message="Bad Request")
    arm.status_code = 400
    arm.error = ODataV4Format({"code": "InvalidEnvironmentVariable", "message": "bad value AccountKey=secret"})
    with pytest.raises(AciError) as e, arm_errors("create", "g", secrets=["AccountKey=secret"]):
        raise arm
    assert str(e.value) == "create g: HTTP 400: InvalidEnvironmentVariable: bad value ***"
    assert e.value.code == "InvalidEnvironmentVariable" and not e.value.retryable


def test_an_aci_error_survives_pickling_with_its_fields():
    error = AciError("create g: HTTP 429: TooManyRequests: slow down", status=429, code="TooManyRequests",
                     retryable=True)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.status, copy.code, copy.retryable) == (str(error), 429, "TooManyRequests", True)
