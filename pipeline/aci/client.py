"""The one module that talks to Azure Container Instances (through ARM and azure-mgmt-containerinstance).

Everything else in the app works with the small types defined in pipeline/aci/, so that the SDK's models,
its error types and its quirks stay in one place. The same code runs against real Azure and against the
loopback stand-in in devenv/aci_standin (selected only by Settings.arm_endpoint).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import ContainerGroup

from scoring.timestamps import iso_or_none

from ..payloads import ContainerState
from ..settings import Settings, is_loopback_url
from .errors import arm_errors
from .spec import CONTAINER_NAME, ContainerGroupSpec, build_container_group

# The durable orchestration retries with durable timers; the SDK must fail fast instead of retrying
# (and sleeping inside an activity) for minutes.
SDK_RETRY_TOTAL = 2
# A longer Retry-After is left to the orchestration (its durable retry), not slept on inside an activity.
SDK_MAX_RETRY_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class GroupSummary:
    name: str
    tags: dict[str, str]
    provisioning_state: str | None



class LoopbackCredential:
    """A fixed dummy token for the loopback ARM stand-in.

    The SDK insists on a bearer token (over https); the stand-in only checks that one is present.
    It refuses any non-loopback endpoint so that a dummy token can never be sent to real Azure.
    """

    TOKEN = "loopback-standin-dummy-token"

    def __init__(self, endpoint: str) -> None:
        if not is_loopback_endpoint(endpoint):
            raise ValueError(f"LoopbackCredential is only for loopback endpoints, not {endpoint!r}")
        self.endpoint = endpoint

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.TOKEN, int(time.time()) + 3600)


def is_loopback_endpoint(endpoint: str) -> bool:
    return is_loopback_url(endpoint)


def default_credential(settings: Settings) -> TokenCredential:
    if is_loopback_endpoint(settings.arm_endpoint):
        return LoopbackCredential(settings.arm_endpoint)
    # Imported here so that development runs never need azure-identity's credential chain.
    from azure.identity import DefaultAzureCredential

    # The app's own user-assigned identity, named explicitly: with several identities on the app, an implicit
    # choice fails or picks another one. Never the worker's.
    return DefaultAzureCredential(managed_identity_client_id=settings.app_identity_client_id or None)


class FailFastRetryPolicy(RetryPolicy):
    """The SDK's retry policy, minus waits longer than SDK_MAX_RETRY_AFTER_SECONDS.

    Stock RetryPolicy sleeps for any Retry-After, however long, inside the activity.
    """

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > SDK_MAX_RETRY_AFTER_SECONDS:
            return False
        return super().is_retry(settings, response)


def make_client(settings: Settings, credential: TokenCredential) -> ContainerInstanceManagementClient:
    endpoint = settings.arm_endpoint.rstrip("/")
    options: dict[str, Any] = {}
    if not is_loopback_endpoint(endpoint):
        # The token audience follows the ARM endpoint (sovereign clouds); the SDK default is public Azure.
        options["credential_scopes"] = [f"{endpoint}/.default"]
    return ContainerInstanceManagementClient(
        credential,
        settings.azure_subscription_id,
        base_url=endpoint,
        connection_verify=settings.arm_ca_bundle or True,
        polling_interval=settings.arm_polling_interval_seconds,
        retry_policy=FailFastRetryPolicy(retry_total=SDK_RETRY_TOTAL),
        **options,
    )


class ContainerGroups:
    """Create, watch, read logs of and delete the scoring container groups of one resource group."""

    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self._settings = settings
        self._client = make_client(settings, credential or default_credential(settings))
        self._rg = settings.aci_resource_group

    def create(self, spec: ContainerGroupSpec) -> str | None:
        """Send the PUT and return at once with the provisioning state ARM answered (usually Pending).

        No waiting on the long-running operation: it lasts the whole image pull, longer than an activity
        should hold a worker slot (or than functionTimeout). The orchestration polls state() instead, with
        its provisioning deadline counted from here.
        """
        group = build_container_group(self._settings, spec)
        with arm_errors("create", spec.name, secrets=spec.secure_environment.values()):
            poller = self._client.container_groups.begin_create_or_update(self._rg, spec.name, group, polling=False)
        created = poller.result()  # NoPolling: the initial PUT's answer, nothing more is requested
        return created.provisioning_state if created is not None else None

    def state(self, name: str) -> ContainerState | None:
        """The group's and its container's state; None when the group does not exist."""
        with arm_errors("get", name):
            try:
                group = self._client.container_groups.get(self._rg, name)
            except ResourceNotFoundError:
                return None
        return container_state(group)

    def logs(self, name: str, tail: int = 1000) -> str:
        """The container's last `tail` log lines; "" when the group or container is gone."""
        with arm_errors("logs", name):
            try:
                logs = self._client.containers.list_logs(self._rg, name, CONTAINER_NAME, tail=tail)
            except ResourceNotFoundError:
                return ""
        return logs.content or ""

    def delete(self, name: str) -> bool:
        """Delete the group. True: it was deleted; False: it was already gone."""
        delete_statuses: list[int] = []

        def record_delete_status(pipeline_response: PipelineResponse) -> None:
            # Called for every attempt (retries included) and every poll; keep the DELETE answers.
            if pipeline_response.http_request.method == "DELETE":
                delete_statuses.append(pipeline_response.http_response.status_code)

        with arm_errors("delete", name):
            try:
                # ARM answers 204 to deleting a group that does not exist; the LRO result alone
                # cannot tell (a 202 can also end in an empty result), so look at the answer itself.
                poller = self._client.container_groups.begin_delete(
                    self._rg, name, raw_response_hook=record_delete_status
                )
                poller.result()
            except ResourceNotFoundError:
                return False
        return bool(delete_statuses) and delete_statuses[-1] != 204

    def list(self, tags: dict[str, str] | None = None) -> list[GroupSummary]:
        """Groups in the resource group whose tags include every given pair."""
        wanted = tags or {}
        with arm_errors("list", self._rg):
            groups = list(self._client.container_groups.list_by_resource_group(self._rg))
        summaries = [GroupSummary(g.name or "", dict(g.tags or {}), g.provisioning_state) for g in groups]
        return [s for s in summaries if all(s.tags.get(k) == v for k, v in wanted.items())]

    def close(self) -> None:
        self._client.close()



def container_state(group: ContainerGroup) -> ContainerState:
    provisioning = group.provisioning_state
    group_view = group.instance_view
    group_state = group_view.state if group_view else None
    container = next((c for c in group.containers or [] if c.name == CONTAINER_NAME), None)
    if container is None and group.containers:
        container = group.containers[0]
    view = container.instance_view if container else None
    current = view.current_state if view else None
    detail = (current.detail_status if current else None) or None
    events = list(view.events or []) if view else []
    if group_view:
        events += list(group_view.events or [])
    if not detail and events:
        latest = max(events, key=lambda e: e.last_timestamp or e.first_timestamp or _EPOCH)
        detail = latest.message
    return ContainerState(
        group_state=group_state,
        provisioning_state=provisioning,
        state=current.state if current else None,
        exit_code=current.exit_code if current else None,
        start_time=iso_or_none(current.start_time) if current else None,
        finish_time=iso_or_none(current.finish_time) if current else None,
        detail=detail,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


