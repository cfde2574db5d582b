"""The client routes' logic on an in-memory blob store: what each answers, and which field a refusal names.
The durable client is a small fake here (a unit test starts no host); tests/test_client_api.py runs the same
routes through the real dev host."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, timedelta
from types import SimpleNamespace

import azure.functions as func
import pytest
from support.unit_data import make_settings, put_version

from client_api import models_routes, results_routes
from pipeline.payloads import RunRequest, Trigger


@pytest.fixture
def app(mem, monkeypatch):
    settings = make_settings(MAX_INPUT_UPLOAD_MB="0.01")
    for module in (models_routes, results_routes):
        monkeypatch.setattr(module, "storage", lambda: mem)
        monkeypatch.setattr(module, "settings", lambda: settings)
    return mem


def request(method: str, url: str, body: bytes = b"", **route_params: str) -> func.HttpRequest:
    return func.HttpRequest(method, f"http://localhost/api/{url}", body=body, route_params=route_params)


def answer(response: func.HttpResponse) -> tuple[int, dict]:
    return response.status_code, json.loads(response.get_body())


def test_versions_list_created_models_r_version_and_the_champion(app):
    put_version(app, "parcels", "v1", ["1000", "2000"])
    put_version(app, "parcels", "v2", ["1000"], champion=True)
    status, body = answer(models_routes.list_versions(request("GET", "models/parcels/versions", model="parcels")))
    assert status == 200
    assert [(v["version"], v["models"], v["r_version"], v["champion"]) for v in body["versions"]] == [
        ("v1", 2, "4.2.2", False), ("v2", 1, "4.2.2", True)]
    status, body = answer(models_routes.list_versions(request("GET", "x", model="nobody")))
    assert (status, body["field"]) == (404, "model")


def test_promote_names_the_previous_champion_and_refuses_unknown_versions(app):
    put_version(app, "parcels", "v1", ["1000"], champion=True)
    put_version(app, "parcels", "v2", ["1000"])
    ok = models_routes.set_champion(request("PUT", "x", b'{"version": "v2"}', model="parcels"))
    assert answer(ok) == (200, {"model": "parcels", "champion": "v2", "previous": "v1"})
    status, body = answer(models_routes.set_champion(request("PUT", "x", b'{"version": "v9"}', model="parcels")))
    assert (status, body["field"]) == (404, "version") and "v9" in body["error"]


def test_an_input_upload_is_checked_stored_once_and_size_limited(app):
    day = (date.today() + timedelta(days=1)).isoformat()
    csv = f"postcode,date,temp\n1000,{day},1.5\n2000,{day},2\n".encode()
    status, body = answer(results_routes.upload_input(request("PUT", "x", csv, name="a.csv")))
    assert (status, body["input"], body["rows"], body["postcodes"]) == (201, "uploads/a.csv", 2, 2)
    assert app.read_bytes("input", "uploads/a.csv") == csv
    status, body = answer(results_routes.upload_input(request("PUT", "x", csv, name="a.csv")))
    assert (status, body["field"]) == (409, "name")
    status, body = answer(results_routes.upload_input(request("PUT", "x", csv * 400, name="b.csv")))
    assert (status, body["field"]) == (413, "body")
    assert not app.exists("input", "uploads/b.csv")


@dataclass
class FakeDurableClient:
    """Answers get_status like the durable client does for a finished run (the status API's shape)."""

    statuses: dict

    async def get_status(self, instance_id: str):
        return self.statuses.get(instance_id)


def test_a_finished_retry_answers_with_the_run_it_published_into(app):
    from pipeline.revisions import flip_pointer

    flip_pointer(app, "results", "run-abc", "run-abc-retry1", "2026-11-23T06:00:00Z", None)  # what publish does
    retry = RunRequest(model="parcels", version="v1", input_blob="uploads/a.csv", postcodes=["1000"], horizon=14,
                       shard_size=None, trigger=Trigger.RETRY, retry_of="run-abc")
    envelope = {"__class__": "RunRequest", "__module__": "pipeline.payloads", "__data__": retry.to_json()}
    status = SimpleNamespace(name="score_run", runtime_status=SimpleNamespace(value="Completed"),
                             input_=json.dumps(envelope))
    client = FakeDurableClient({"run-abc-retry1": status})
    prefix = asyncio.run(results_routes.published_prefix(request("GET", "x", id="run-abc-retry1"), client))
    assert prefix == "runs/run-abc/revisions/run-abc-retry1/"  # the run's current revision
    with pytest.raises(results_routes.ApiError) as unknown:
        asyncio.run(results_routes.published_prefix(request("GET", "x", id="run-nope"), client))
    assert (unknown.value.status, unknown.value.field) == (404, "id")


def test_a_pointer_that_cannot_be_followed_is_a_409_naming_it(app):
    app.write_bytes("results", "runs/run-junk/current.json", b"{not json")
    response = asyncio.run(results_routes.run_results(request("GET", "x", id="run-junk"), FakeDurableClient({})))
    status, body = answer(response)
    assert (status, body["field"]) == (409, "id") and "runs/run-junk/current.json is not valid JSON" in body["error"]
