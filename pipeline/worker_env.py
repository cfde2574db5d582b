"""What a scoring container is given: its job, its storage endpoint and the worker identity. Nothing more.

Containers run model code (a model version's own scorer.R included), so they get the worker's identity only
(AZURE_CLIENT_ID = WORKER_IDENTITY_CLIENT_ID; the group carries WORKER_IDENTITY_RESOURCE_ID), never the
app's, and a storage key only when it is a loopback (Azurite) connection string, and then only as a secure
value. Settings.validate already refuses a key for any other endpoint; the check here is the last gate.
"""

from __future__ import annotations

from .settings import Settings, connection_string_is_loopback


class ContainerSecretRefused(ValueError):
    """A secret that must never reach a container was about to."""


def worker_environment(settings: Settings, job_blob: str) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secure) environment of a scoring container whose job spec is STAGING_CONTAINER/job_blob."""
    plain = {"SCORING_JOB_BLOB": f"{settings.staging_container}/{job_blob}",
             "SCORING_WORKERS": str(max(1, int(settings.container_cpu)))}
    secure: dict[str, str] = {}
    if settings.storage_account_url:
        plain["SCORING_STORAGE_ACCOUNT_URL"] = settings.storage_account_url
    if settings.storage_connection_string:
        if not connection_string_is_loopback(settings.storage_connection_string):
            raise ContainerSecretRefused("STORAGE is a connection string for a non-loopback account: containers "
                                         "use the worker identity with STORAGE__blobServiceUri instead")
        secure["SCORING_STORAGE_CONNECTION_STRING"] = settings.storage_connection_string
    if settings.worker_identity_client_id:
        plain["AZURE_CLIENT_ID"] = settings.worker_identity_client_id
    leaked = settings.app_identity_client_id and any(
        settings.app_identity_client_id in value for value in (*plain.values(), *secure.values()))
    if leaked:
        raise ContainerSecretRefused("the app's identity would reach a container")
    return plain, secure
