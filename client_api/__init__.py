"""HTTP routes for clients that hold no Azure credentials (the R package in clients/r): model versions,
registration of uploaded versions (checked server-side in the scoring image's own R), run results and
input uploads. client_api.blueprint.build_blueprint() registers them; importing registers nothing."""
