"""The durableClient binding payload: the JSON string the Functions host hands to a client function."""

from __future__ import annotations

import json

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
INSTANCE_PLACEHOLDER = "INSTANCEID"


def durable_client_payload(origin: str, task_hub: str, connection: str = "Storage") -> dict:
    """origin is e.g. http://127.0.0.1:7071. Shapes and placeholders follow what Core Tools produces."""
    webhook = f"{origin}{WEBHOOK_PATH}"
    query = f"taskHub={task_hub}&connection={connection}"
    instance = f"{webhook}/instances/{INSTANCE_PLACEHOLDER}"
    return {
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
            "createAndWaitOnNewInstancePostUri": f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]"
                                                 f"?timeout={{timeoutInSeconds}}&pollingInterval="
                                                 f"{{intervalInSeconds}}&{query}",
        },
        "managementUrls": {
            "id": INSTANCE_PLACEHOLDER,
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        },
        "baseUrl": webhook,
        "requiredQueryStringParameters": "",
        # The SDK's DurableOrchestrationClient sends every call to rpcBaseUrl (note the trailing slash).
        "rpcBaseUrl": f"{webhook}/",
        "httpBaseUrl": webhook,
        "maxGrpcMessageSizeInBytes": 0,
        "grpcHttpClientTimeout": "00:01:40",
    }


def durable_client_json(origin: str, task_hub: str) -> str:
    return json.dumps(durable_client_payload(origin, task_hub))
