"""Which client-route functions the app registers, and under which trigger: the only place that does it.

function_app.py calls build_blueprint() once; replay tests call it for a fresh app. Importing any module of
client_api/ registers nothing by itself. HTTP routes need a function key (AuthLevel.FUNCTION).
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from . import models_routes, registration, results_routes, uploads_routes


def build_blueprint() -> df.Blueprint:
    bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)

    def route(path: str, method: str, fn, durable_client: bool = False) -> None:
        if durable_client:
            fn = bp.durable_client_input(client_name="client")(fn)
        bp.route(route=path, methods=[method])(fn)

    route("models/{model}/versions", "GET", models_routes.list_versions)
    route("models/{model}/champion", "PUT", models_routes.set_champion)
    route("models/{model}/versions/{version}", "POST", models_routes.register_upload, durable_client=True)
    route("registrations/{id}", "GET", models_routes.get_registration, durable_client=True)
    route("models/{model}/latest", "GET", models_routes.latest_results)
    route("runs/{id}/results", "GET", results_routes.run_results, durable_client=True)
    route("runs/{id}/manifest", "GET", results_routes.run_manifest, durable_client=True)
    route("runs/{id}/failures", "GET", results_routes.run_failures, durable_client=True)
    route("runs/{id}/accuracy/{table}", "GET", results_routes.accuracy_table)
    route("inputs/{name}", "PUT", results_routes.upload_input)
    route("uploads", "POST", uploads_routes.start_upload)
    route("uploads/{id}/parts/{n}", "PUT", uploads_routes.upload_part)
    bp.orchestration_trigger(context_name="context")(registration.register_version)
    bp.activity_trigger(input_name="request")(registration.create_registration_group)
    bp.activity_trigger(input_name="job")(registration.finish_registration)
    return bp
