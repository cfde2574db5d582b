"""POST /api/runs bodies: every bad field is refused with a message naming it; good ones become a RunRequest."""

from __future__ import annotations

import json

import pytest
from support.unit_data import make_settings

from pipeline import payloads as p
from pipeline.run_requests import MAX_BODY_BYTES, MAX_POSTCODES, RequestError, parse_run_body, scheduled_request


def parse(body: object, **settings: str) -> p.RunRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_run_body(raw, make_settings(**settings))


def test_defaults_come_from_the_settings():
    request = parse({"input": "daily/2026-11-24.csv"}, DEFAULT_MODEL="letters", DEFAULT_HORIZON_DAYS="30")
    assert request == p.RunRequest(model="letters", version="champion", input_blob="daily/2026-11-24.csv",
                                   postcodes=None, horizon=30, shard_size=None, trigger=p.Trigger.HTTP)


def test_every_field_is_taken():
    request = parse({"model": "parcels", "version": "2026-11", "input": "latest", "postcodes": ["8002", "8001"],
                     "horizon": 7, "shardSize": 50, "dryRun": True})
    assert (request.version, request.input_blob, request.postcodes, request.horizon, request.shard_size,
            request.dry_run) == ("2026-11", "latest", ["8001", "8002"], 7, 50, True)


@pytest.mark.parametrize("body, field, problem", [
    (b"{not json", "body", "malformed JSON"),
    ([1, 2], "body", "must be a JSON object"),
    ({"input": "x.csv", "horizn": 3}, "horizn", "unknown field; allowed: dryRun, horizon, input, model"),
    ({}, "input", "required: a blob in container 'input', or 'latest'"),
    ({"input": "../etc/passwd"}, "input", "invalid input blob '../etc/passwd'"),
    ({"input": "/abs.csv"}, "input", "invalid input blob '/abs.csv'"),
    ({"input": "x.csv", "model": "Parcels"}, "model", "invalid model name 'Parcels'"),
    ({"input": "x.csv", "version": "a/b"}, "version", "invalid version 'a/b'"),
    ({"input": "x.csv", "horizon": 0}, "horizon", "0 is out of range 1..366"),
    ({"input": "x.csv", "horizon": 367}, "horizon", "367 is out of range 1..366"),
    ({"input": "x.csv", "horizon": "14"}, "horizon", 'must be an integer, got "14"'),
    ({"input": "x.csv", "horizon": True}, "horizon", "must be an integer, got true"),
    ({"input": "x.csv", "shardSize": 0}, "shardSize", f"0 is out of range 1..{MAX_POSTCODES}"),
    ({"input": "x.csv", "postcodes": []}, "postcodes", "must be a non-empty list of postcodes"),
    ({"input": "x.csv", "postcodes": "8001"}, "postcodes", "must be a non-empty list of postcodes"),
    ({"input": "x.csv", "postcodes": ["8001", "80O2"]}, "postcodes", "invalid postcode '80O2'"),
    ({"input": "x.csv", "postcodes": ["8001", "8001"]}, "postcodes", "lists a postcode twice"),
    ({"input": "x.csv", "dryRun": "yes"}, "dryRun", 'must be true or false, got "yes"'),
])
def test_bad_fields_are_named(body, field, problem):
    with pytest.raises(RequestError) as e:
        parse(body)
    assert e.value.field == field and e.value.status == 400
    assert problem in str(e.value) and str(e.value).startswith(f"{field}: ")


def test_too_many_postcodes_are_refused():
    with pytest.raises(RequestError, match=f"{MAX_POSTCODES + 1} given; at most {MAX_POSTCODES}"):
        parse({"input": "x.csv", "postcodes": [f"{10000 + i}" for i in range(MAX_POSTCODES + 1)]})


def test_an_oversized_body_is_413_before_parsing():
    with pytest.raises(RequestError) as e:
        parse(b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert e.value.status == 413 and e.value.field == "" and "the limit is" in str(e.value)


def test_the_postcode_pattern_can_be_configured(monkeypatch):
    monkeypatch.setenv("SCORING_POSTCODE_PATTERN", "[A-Z]{1,2}[0-9]{1,2}")
    assert parse({"input": "x.csv", "postcodes": ["SW1", "N7"]}).postcodes == ["N7", "SW1"]
    with pytest.raises(RequestError, match="invalid postcode '8001'"):
        parse({"input": "x.csv", "postcodes": ["8001"]})


def test_scheduled_runs_score_the_default_champion():
    request = scheduled_request(make_settings(DEFAULT_MODEL="parcels"), p.Trigger.BLOB, input_blob="daily/x.csv")
    assert (request.model, request.version, request.input_blob, request.trigger) == (
        "parcels", "champion", "daily/x.csv", p.Trigger.BLOB)
    assert scheduled_request(make_settings(), p.Trigger.TIMER).input_blob == "latest"
    with pytest.raises(RequestError, match="input"):
        scheduled_request(make_settings(), p.Trigger.BLOB, input_blob="bad name.csv")
