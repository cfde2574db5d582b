"""A small app for the run-listing tests: the real GET /api/runs handler over toy runs (tests only).

The route's body is function_app.list_runs's. `score_run` is a stand-in with the production name: it starts
one `score_shard` sub-orchestration (so shards take their place on the durable host's pages, as in Azure) and
completes. Everything the listing reads (status shape, names, paging) is what the real app produces.
"""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

from pipeline import run_listing

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="runs", methods=["GET"])
@app.durable_client_input(client_name="client")
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await run_listing.list_runs(req, client)  # exactly what function_app.list_runs does


@app.orchestration_trigger(context_name="context")
def score_run(context: df.DurableOrchestrationContext):
    # Runs for a second, as a real run runs for minutes: a second start of the same id meets it running.
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    shard = yield context.call_sub_orchestrator("score_shard", None, f"{context.instance_id}:shard-000")
    return {"state": "completed", "model": "parcels", "shards": [shard]}


@app.orchestration_trigger(context_name="context")
def score_shard(context: df.DurableOrchestrationContext):
    return {"index": 0, "state": "succeeded"}
    yield  # a generator, as orchestrators are
