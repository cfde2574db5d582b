"""What a scoring container group is: the spec the app builds, and the ARM body made from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerGroupIdentity,
    ContainerGroupSubnetId,
    EnvironmentVariable,
    ImageRegistryCredential,
    ResourceRequests,
    ResourceRequirements,
    UserAssignedIdentities,
)

from ..settings import Settings

CONTAINER_NAME = "scoring"
# Every group this app creates carries this tag; the orphan sweeper lists groups by it.
APP_TAG = {"app": "r-scoring"}


@dataclass(frozen=True)
class ContainerGroupSpec:
    name: str  # caller guarantees an ARM-valid name
    image: str
    cpu: float
    memory_gb: float
    environment: dict[str, str]  # plain env vars
    secure_environment: dict[str, str]  # passed only as secureValue
    tags: dict[str, str]
    command: list[str] | None = None  # overrides the image entrypoint (ACI semantics)


def scoring_spec(
    settings: Settings,
    name: str,
    environment: Mapping[str, str],
    secure_environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    command: list[str] | None = None,
) -> ContainerGroupSpec:
    """A spec for the scoring image, sized from the app settings."""
    return ContainerGroupSpec(
        name=name,
        image=settings.scoring_image,
        cpu=settings.container_cpu,
        memory_gb=settings.container_memory_gb,
        environment=dict(environment),
        secure_environment=dict(secure_environment or {}),
        tags=dict(tags or {}),
        command=command,
    )



def build_container_group(settings: Settings, spec: ContainerGroupSpec) -> ContainerGroup:
    """The ARM body: one run-once Linux container, no public IP, keyless pull when configured."""
    env = [EnvironmentVariable(name=k, value=v) for k, v in spec.environment.items()]
    env += [EnvironmentVariable(name=k, secure_value=v) for k, v in spec.secure_environment.items()]
    container = Container(
        name=CONTAINER_NAME,
        image=spec.image,
        command=list(spec.command) if spec.command else None,
        resources=ResourceRequirements(requests=ResourceRequests(memory_in_gb=spec.memory_gb, cpu=spec.cpu)),
        environment_variables=env,
    )
    identity_id = settings.worker_identity_resource_id  # never the app's: containers run model code
    identity = None
    registry_credentials = None
    if identity_id:
        identity = ContainerGroupIdentity(
            type="UserAssigned", user_assigned_identities={identity_id: UserAssignedIdentities()}
        )
        if settings.registry_server:
            registry_credentials = [
                ImageRegistryCredential(server=settings.registry_server, identity=identity_id)
            ]
    subnets = [ContainerGroupSubnetId(id=settings.aci_subnet_id)] if settings.aci_subnet_id else None
    return ContainerGroup(
        location=settings.aci_location,
        tags=dict(spec.tags),
        identity=identity,
        containers=[container],
        os_type="Linux",
        # The ACI default is Always: a failing job would restart (and bill) forever.
        restart_policy="Never",
        image_registry_credentials=registry_credentials,
        subnet_ids=subnets,
        # No ip_address: the worker only calls out (to storage), nothing calls in.
    )

