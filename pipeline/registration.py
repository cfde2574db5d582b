"""Which functions the pipeline registers, and under which trigger: the only place that does it.

function_app.py calls build_blueprint() once; tests that replay the orchestrators call it for a fresh app.
Importing this module (or any other in pipeline/) registers nothing by itself.
"""

from __future__ import annotations

import azure.durable_functions as df

from . import activities
from .orchestrations import run, shard


def build_blueprint() -> df.Blueprint:
    """A new blueprint with the two orchestrators and every activity of a scoring run."""
    bp = df.Blueprint()
    bp.orchestration_trigger(context_name="context")(run.score_run)
    bp.orchestration_trigger(context_name="context")(shard.score_shard)
    bp.activity_trigger(input_name="payload")(activities.plan_run)
    bp.activity_trigger(input_name="shard")(activities.create_container_group)
    bp.activity_trigger(input_name="name")(activities.get_container_state)
    bp.activity_trigger(input_name="request")(activities.save_container_logs)
    bp.activity_trigger(input_name="name")(activities.delete_container_group)
    bp.activity_trigger(input_name="prefix")(activities.read_shard_status)
    bp.activity_trigger(input_name="publication")(activities.publish_run)
    bp.activity_trigger(input_name="publication")(activities.record_failures)
    bp.activity_trigger(input_name="request")(activities.acquire_vcpu)
    bp.activity_trigger(input_name="group")(activities.release_vcpu)
    bp.activity_trigger(input_name="instance_ids")(
        bp.durable_client_input(client_name="client")(activities.request_shard_cancel))
    return bp
