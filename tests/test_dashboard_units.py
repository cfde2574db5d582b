"""The dashboard's pieces without a host: the results index and its ranged reads (against Azurite), the JSON
views (from real SDK status objects), and the vendored uPlot against the npm package it came from."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from conftest import REPO

from dashboard import overlays, views
from dashboard.results_index import (
    PostcodeNotFound,
    ResultsChanged,
    ResultsIndexer,
    ResultsIndexError,
    build_index_from_bytes,
    index_blob,
    lookup,
    read_postcode_rows,
    write_results_index,
)
from pipeline.accuracy import METRIC_COLUMNS, evaluate_run
from pipeline.aci.client import GroupSummary
from pipeline.publish import RESULT_COLUMNS
from pipeline.revisions import flip_pointer, revision_prefix
from scoring.blobstore import BlobStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def results_csv(postcodes: list[str], days: int = 3) -> bytes:
    """As publish writes it: header, rows sorted by postcode then date, "\\n" line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for pc in sorted(postcodes):
        for d in range(days):
            writer.writerow([pc, f"2026-12-{d + 1:02d}", f"{int(pc) % 97 + d}.5", "1", "2", "0", "3", "m", "v1"])
    return out.getvalue().encode()


# ------------------------------------------------------------------------------------------ results index


def test_index_ranges_cover_exactly_each_postcodes_rows():
    data = results_csv(["1000", "1001", "20000"], days=4)
    index = build_index_from_bytes(data)
    assert index["columns"] == RESULT_COLUMNS and index["size"] == len(data)
    spans = sorted(index["postcodes"].values())
    assert spans[0][0] == data.index(b"\n") + 1  # the first postcode starts right after the header
    for (offset, length, rows), nxt in zip(spans, spans[1:] + [[len(data)]], strict=True):
        assert offset + length == nxt[0] and rows == 4  # contiguous, no gaps, nothing left over
    for pc, (offset, length, _) in index["postcodes"].items():
        chunk = data[offset:offset + length].decode()
        assert all(line.startswith(pc + ",") for line in chunk.splitlines())


@pytest.mark.parametrize(("data", "says"), [
    (b"", "not even a header"),
    (b"postcode,date\n1001,2026-12-01\n1000,2026-12-01\n", "not sorted by postcode: 1000 comes after 1001"),
    (b"postcode,date\n1000,2026-12-01\n1001,2026-12-01\n1000,2026-12-02\n", "not grouped by postcode: 1000"),
])
def test_index_refuses_what_it_cannot_index(data, says):
    with pytest.raises(ResultsIndexError, match=says):
        build_index_from_bytes(data)


def test_index_reads_quoted_first_fields_and_crlf():
    data = b'postcode,date\r\n"1000",2026-12-01\r\n"1000",2026-12-02\r\n1001,2026-12-01\r\n'
    index = build_index_from_bytes(data)
    assert index["postcodes"] == {"1000": [15, 38, 2], "1001": [53, 17, 1]} and index["size"] == len(data)
    assert data[15:53] == b'"1000",2026-12-01\r\n"1000",2026-12-02\r\n' and data[53:] == b"1001,2026-12-01\r\n"


def test_lookup_errors():
    index = build_index_from_bytes(results_csv(["1000"]))
    with pytest.raises(PostcodeNotFound, match="postcode 1001 has no rows"):
        lookup(index, "1001")
    with pytest.raises(ResultsIndexError, match="format 7 is not 1"):
        lookup({**index, "format": 7}, "1000")


def test_ranged_read_from_blob_storage_equals_filtering_the_whole_file(blobs):
    postcodes = [str(1000 + i) for i in range(300)]
    data = results_csv(postcodes, days=60)
    name = "runs/run-index-test/results.csv"
    blobs.write_bytes("results", name, data, content_type="text/csv")
    assert write_results_index(blobs, "results", name, data) == "runs/run-index-test/results.index.json"
    whole = list(csv.DictReader(io.StringIO(data.decode())))
    for pc in ("1000", "1150", "1299"):
        assert read_postcode_rows(blobs, "results", name, pc) == [r for r in whole if r["postcode"] == pc]
    # One postcode is ~1/300 of the file: the read is a range, not the whole blob.
    offset, length, _ = json.loads(blobs.read_bytes("results", index_blob(name)))["postcodes"]["1150"]
    assert length * 200 < len(data)
    with pytest.raises(PostcodeNotFound):
        read_postcode_rows(blobs, "results", name, "9999")


def test_results_rewritten_after_the_index_are_detected(blobs):
    name = "runs/run-index-changed/results.csv"
    data = results_csv(["1000", "1001", "1002"])
    blobs.write_bytes("results", name, data)
    write_results_index(blobs, "results", name, data)
    blobs.write_bytes("results", name, results_csv(["1000", "1002"]))  # a new revision, index not yet rewritten
    with pytest.raises(ResultsChanged, match="read it again"):
        read_postcode_rows(blobs, "results", name, "1002")


def test_results_without_index_say_so(blobs):
    blobs.write_bytes("results", "runs/run-no-index/results.csv", results_csv(["1000"]))
    with pytest.raises(ResultsIndexError, match="has no index"):
        read_postcode_rows(blobs, "results", "runs/run-no-index/results.csv", "1000")


# ------------------------------------------------------------------------------------------------- views


def status(instance_id: str, runtime: str, output=None, custom=None, created=NOW - timedelta(minutes=5),
           updated=NOW - timedelta(minutes=1), name="score_run", input_=None) -> DurableOrchestrationStatus:
    return DurableOrchestrationStatus.from_json({
        "name": name, "instanceId": instance_id, "createdTime": created.isoformat(),
        "lastUpdatedTime": updated.isoformat(), "runtimeStatus": runtime, "output": output,
        "customStatus": custom, "input": input_})


@pytest.mark.parametrize(("run_id", "trigger"), [
    ("daily-parcels-2026-11-23", "timer"), ("blob-0123456789abcdef0123", "blob"), ("run-abc", "http"),
    ("run-abc-retry2", "retry"), ("daily-parcels-2026-11-23-retry1", "retry"), ("odd", "unknown"),
])
def test_trigger_from_the_run_id_while_running(run_id, trigger):
    assert views.trigger_of(run_id, {}) == trigger


def test_run_summary_running_and_finished():
    running = views.run_summary(status("run-a", "Running", custom={
        "stage": "scoring", "shards_total": 3, "shards_done": 1, "shards_running": 2, "postcodes_total": 300,
        "postcodes_scored": 100, "postcodes_failed": 2}), NOW, {"model": "parcels", "version": "champion"})
    assert running["state"] == "running" and running["stage"] == "scoring" and running["durationSeconds"] == 300
    assert running["postcodes"] == {"total": 300, "scored": 100, "failed": 2} and running["costUsd"] is None
    assert running["model"] == "parcels" and running["files"] == {} and not running["published"]

    output = {"state": "completed_with_failures", "trigger": "timer", "model": "parcels", "version": "v3",
              "postcodes_scored": 299, "postcodes_failed": {"1000": "R error"}, "cost": {"price_usd": 0.25},
              "manifest": "results/runs/run-b/manifest.json"}
    done = views.run_summary(status("run-b", "Completed", output=output, custom={"postcodes_total": 300}), NOW)
    assert done["state"] == "completed_with_failures" and done["durationSeconds"] == 240  # created -> updated
    assert done["postcodes"] == {"total": 300, "scored": 299, "failed": 1} and done["costUsd"] == 0.25
    assert done["files"]["manifest"] == "runs/run-b/manifest.json" and done["version"] == "v3"
    assert views.run_summary(status("run-c", "Terminated"), NOW)["state"] == "cancelled"
    # Runs since slim history carry a count and the failures blob, not the list (an old run's list still counts).
    slim = {**output, "postcodes_failed": {}, "postcodes_failed_count": 7,
            "failures": "results/runs/run-d/revisions/run-d/failures.json"}
    counted = views.run_summary(status("run-d", "Completed", output=slim), NOW)
    assert counted["postcodes"] == {"total": 306, "scored": 299, "failed": 7}


def test_shard_bars_live_from_shard_orchestrations_and_finished_from_the_output():
    since = (NOW - timedelta(seconds=90)).isoformat()
    live = {0: status("run-a:shard-000", "Running", name="score_shard",
                      custom={"attempt": 2, "group": "run-a-s000-a2", "since": since},
                      input_={"timing": {"deadline_minutes": 30}}),
            1: status("run-a:shard-001", "Completed", name="score_shard", output={
                "index": 1, "state": "succeeded", "reason": "", "attempts": [
                    {"attempt": 1, "group": "run-a-s001", "state": "succeeded", "exit_code": 0,
                     "started": "2026-11-23T11:58:00+00:00", "finished": "2026-11-23T11:59:00+00:00",
                     "logs": "results/runs/run-a/logs/shard-001-a1.log", "deleted": True}]})}
    bars = views.shard_bars(3, "run-a", live, {}, NOW)
    assert [b["state"] for b in bars] == ["running", "succeeded", "pending"]
    assert bars[0]["attempts"][0]["group"] == "run-a-s000-a2" and bars[0]["attempts"][0]["elapsedSeconds"] == 90
    assert bars[0]["deadlineMinutes"] == 30 and bars[0]["attempts"][0]["log"] is None  # not saved yet
    assert bars[1]["attempts"][0]["exitCode"] == 0 and bars[1]["attempts"][0]["log"] == "logs/shard-001-a1.log"
    assert bars[1]["attempts"][0]["elapsedSeconds"] == 60 and bars[2]["attempts"] == []


def test_groups_are_orphans_only_when_no_active_run_owns_them():
    created = (NOW - timedelta(minutes=42)).strftime("%Y-%m-%dT%H:%M:%SZ")
    group = GroupSummary("run-a-s000", {"app": "r-scoring", "run": "run-a", "shard": "0", "created": created},
                         "Succeeded")
    owned = views.group_view(group, True, NOW).to_json(180)
    assert owned["orphan"] is False and owned["ageMinutes"] == 42 and owned["run"] == "run-a" and owned["shard"] == 0
    assert views.group_view(group, False, NOW).to_json(180)["orphan"] is True
    assert views.group_view(group, None, NOW).to_json(180)["orphan"] is False  # unknown is not an orphan
    odd = views.group_view(GroupSummary("x", {"run": "../etc"}, None), False, NOW).to_json(180)
    assert odd["run"] is None and odd["ageMinutes"] is None and odd["orphan"] is True


def test_cost_over_the_last_30_days_by_day():
    runs = [{"id": "a", "started": (NOW - timedelta(days=1)).isoformat(), "costUsd": 0.5},
            {"id": "b", "started": (NOW - timedelta(days=1, hours=1)).isoformat(), "costUsd": 0.25},
            {"id": "c", "started": (NOW - timedelta(days=31)).isoformat(), "costUsd": 9.0},  # too old
            {"id": "d", "started": NOW.isoformat(), "costUsd": None}]  # still running
    cost = views.cost_view(runs, NOW)
    assert cost["totalUsd"] == 0.75 and [r["id"] for r in cost["runs"]] == ["a", "b"]
    assert len(cost["daily"]) == 30 and cost["daily"][-1]["day"] == "2026-11-23"
    assert cost["daily"][-2] == {"day": "2026-11-22", "costUsd": 0.75}


def test_forecast_view_nulls_for_missing_intervals_and_actuals_by_date():
    rows = [{"date": "2026-12-02", "volume": "5", "lower_80": "NA", "upper_80": "", "lower_95": "1",
             "upper_95": "9", "model": "m", "model_version": "v1"},
            {"date": "2026-12-01", "volume": "4", "lower_80": "3", "upper_80": "5", "lower_95": "2",
             "upper_95": "6", "model": "m", "model_version": "v1"}]
    f = views.forecast_view("run-a", "1000", rows, {"2026-12-02": 7.0}, {"mae": 1.0})
    assert f["dates"] == ["2026-12-01", "2026-12-02"] and f["volume"] == [4.0, 5.0]
    assert f["lower_80"] == [3.0, None] and f["upper_80"] == [5.0, None] and f["actual"] == [None, 7.0]
    assert views.forecast_view("run-a", "1000", rows, {}, None)["actual"] is None


@pytest.mark.parametrize("path", ["../manifest.json", "logs/../../x.log", "jobs/shard-000-a1.json", "_SUCCESS",
                                  "logs/Shard.log", "results.csv/x", ""])
def test_only_the_runs_own_files_are_served(path):
    with pytest.raises(views.ViewError, match="not a file the dashboard serves") as e:
        views.check_run_file(path)
    assert e.value.status == 404


def test_bad_run_id_is_a_400_naming_it():
    with pytest.raises(views.ViewError, match="'Run_1' is not a run id") as e:
        views.check_run_id("Run_1")
    assert e.value.status == 400


# ---------------------------------------------------------------------------------------------- vendoring


def test_vendored_uplot_is_the_npm_package_pinned_in_package_json():
    """dashboard/static/vendor holds uPlot's built files, unmodified, so that the Functions deployment (which
    ships no node_modules) serves them. `make` installs the pinned package: they must be byte-identical."""
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["uplot"]
    package = REPO / "node_modules" / "uplot"
    assert json.loads((package / "package.json").read_text())["version"] == pinned
    vendor = REPO / "dashboard" / "static" / "vendor"
    for ours, theirs in (("uPlot.iife.min.js", "dist/uPlot.iife.min.js"), ("uPlot.min.css", "dist/uPlot.min.css"),
                         ("uPlot.LICENSE", "LICENSE")):
        assert (vendor / ours).read_bytes() == (package / theirs).read_bytes(), ours


# --------------------------------------------------------------------------------------------------- auth


def request(headers: dict[str, str]):
    import azure.functions as func

    return func.HttpRequest("GET", "http://h/api/dashboard/runs", headers=headers, body=b"")


def test_app_service_mode_requires_the_principal_header_that_only_app_service_sets():
    from dashboard import auth

    assert auth.refusal(request({}), "function-key") is None  # the host checked the key
    assert "sign in first" in auth.refusal(request({}), "app-service")
    assert "sign in first" in auth.refusal(request({"X-MS-CLIENT-PRINCIPAL-ID": "  "}), "app-service")
    assert auth.refusal(request({"X-MS-CLIENT-PRINCIPAL-ID": "0b1c"}), "app-service") is None
    assert "not a known mode" in auth.refusal(request({}), "open")


@pytest.mark.parametrize(("mode", "level"), [("function-key", "FUNCTION"), ("app-service", "ANONYMOUS")])
def test_data_routes_auth_level_follows_dashboard_auth(mode, level):
    """The app as the host indexes it, with DASHBOARD_AUTH set: only the data routes change level."""
    import os
    import subprocess
    import sys

    script = ("import function_app\n"
              "for f in function_app.app.get_functions():\n"
              "    t = f.get_trigger()\n"
              "    if t.type == 'httpTrigger': print(f.get_function_name(), t.auth_level)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "DASHBOARD_AUTH": mode}).stdout
    levels = dict(line.split() for line in out.splitlines())
    assert levels["dashboard_page"].endswith("ANONYMOUS") and levels["dashboard_static"].endswith("ANONYMOUS")
    data = [name for name in levels if name.startswith("dashboard_") and name not in ("dashboard_page",
                                                                                      "dashboard_static")]
    assert len(data) == 8 and all(levels[name].endswith(level) for name in data), levels
    assert levels["start_run"].endswith("FUNCTION") and levels["cancel_run"].endswith("FUNCTION")


def test_status_fields_are_read_plain_or_in_the_sdks_envelope():
    envelope = {"__class__": "Progress", "__module__": "pipeline.payloads", "__data__": {"stage": "scoring"}}
    assert views.plain(envelope) == {"stage": "scoring"}
    assert views.plain(json.dumps(envelope)) == {"stage": "scoring"}
    assert views.plain({"stage": "done"}) == {"stage": "done"}
    assert views.plain(None) == {} and views.plain("not json") == {} and views.plain([1, 2]) == {}
    summary = views.run_summary(status("run-a", "Running", custom=envelope), NOW)
    assert summary["stage"] == "scoring"


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_index_of_a_stream_in_any_chunking_equals_the_index_of_the_whole(size):
    """A streaming publish feeds chunks that cut lines anywhere: same index as from the whole bytes."""
    data = results_csv([str(1000 + i) for i in range(40)], days=5)
    indexer = ResultsIndexer()
    passed = b"".join(indexer.wrap(data[i:i + size] for i in range(0, len(data), size)))
    assert passed == data and indexer.finish() == build_index_from_bytes(data)


def test_the_app_package_ships_the_dashboard_and_its_vendored_files():
    """What the deployment zips (infra/artifacts.py, .funcignore applied): the page, its script and uPlot."""
    from infra import artifacts

    files = {p.as_posix() for p in artifacts.package_files()}
    assert {"dashboard/routes.py", "dashboard/static/index.html", "dashboard/static/app.js",
            "dashboard/static/vendor/uPlot.iife.min.js", "dashboard/static/vendor/uPlot.min.css"} <= files


# --------------------------------------------------------------------- overlays from the accuracy feature


def _evaluated_run(blobs, run_id: str, actuals: str) -> dict:
    """A published run (a revision's results.csv, then the pointer) evaluated by the accuracy feature itself."""
    blobs.write_bytes("results", revision_prefix(run_id, run_id) + "results.csv", results_csv(["1000", "1002"]))
    flip_pointer(blobs, "results", run_id, run_id, "2026-11-23T00:00:00Z", None)
    blobs.write_bytes("input", f"actuals/{run_id}/a.csv", ("postcode,date,volume\n" + actuals).encode())
    return evaluate_run(run_id, "eval-test", blobs, "results", "input", "actuals/")


def test_overlay_follows_the_accuracy_pointer_to_pairs_and_the_postcode_metrics(blobs):
    run_id = "run-overlay-ok"
    assert overlays.read_overlays(blobs, "results", run_id, "1000") == ({}, None)  # not evaluated: no overlay
    # 1000 forecasts 30.5, 31.5, 32.5 with 80% band [1, 2]; 1002 forecasts 32.5, 33.5 (day 3 not observed).
    _evaluated_run(blobs, run_id, "1000,2026-12-01,33.5\n1000,2026-12-02,29.5\n"
                                  "1002,2026-12-01,32.5\n1002,2026-12-02,30.5\n")
    actuals, metrics = overlays.read_overlays(blobs, "results", run_id, "1000")
    assert actuals == {"2026-12-01": 33.5, "2026-12-02": 29.5}
    assert metrics["n"] == 2 and metrics["me"] == pytest.approx(0.5) and metrics["mae"] == pytest.approx(2.5)
    assert metrics["rmse"] == pytest.approx(6.5 ** 0.5)  # errors +3 and -2
    assert metrics["wape"] == pytest.approx(5 / 63) and metrics["mase"] is None  # no 7-day pair: scale is NA
    assert metrics["n_80"] == 2 and metrics["coverage_80"] == 0.0
    assert set(metrics) == {c for c in METRIC_COLUMNS if c not in ("level", "key")}
    other, other_metrics = overlays.read_overlays(blobs, "results", run_id, "1002")
    assert other == {"2026-12-01": 32.5, "2026-12-02": 30.5} and other_metrics["me"] == pytest.approx(-1.5)
    # A postcode the actuals did not cover has neither.
    assert overlays.read_overlays(blobs, "results", run_id, "1150") == ({}, None)


def test_overlay_pointer_to_missing_files_is_no_overlay_and_a_warning(blobs, caplog):
    run_id = "run-overlay-gone"
    pointer = _evaluated_run(blobs, run_id, "1000,2026-12-01,33.5\n")
    blobs.delete("results", pointer["pairs"].partition("/")[2])
    with caplog.at_level("WARNING", logger="dashboard.overlays"):
        assert overlays.read_overlays(blobs, "results", run_id, "1000") == ({}, None)
    assert any(run_id in r.getMessage() and "pairs.csv" in r.getMessage() for r in caplog.records), caplog.text


class CountingBlobStore(BlobStore):
    """The real store (same Azurite client), recording every download: (blob, offset, length, bytes read)."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner._service)
        self.reads: list[tuple[str, int | None, int | None, int]] = []

    def read_bytes(self, container, name, offset=None, length=None):
        data = super().read_bytes(container, name, offset, length)
        self.reads.append((f"{container}/{name}", offset, length, len(data)))
        return data

    def read_versioned(self, container, name):
        data, etag = super().read_versioned(container, name)
        self.reads.append((f"{container}/{name}", None, None, len(data)))
        return data, etag

    def stream(self, container, name, chunk_bytes=None):
        for chunk in super().stream(container, name, chunk_bytes):
            self.reads.append((f"{container}/{name}", None, None, len(chunk)))
            yield chunk

    def bytes_read(self) -> int:
        return sum(r[3] for r in self.reads)


def _evaluated_big_run(blobs, run_id: str, postcodes: list[str], days: int) -> dict:
    blobs.write_bytes("results", revision_prefix(run_id, run_id) + "results.csv", results_csv(postcodes, days))
    flip_pointer(blobs, "results", run_id, run_id, "2026-11-23T00:00:00Z", None)
    actuals = "".join(f"{pc},2026-12-{d + 1:02d},{(int(pc) * 7 + d * 3) % 50}.25\n" for pc in postcodes
                      for d in range(days) if (int(pc) + d) % 5)  # some days without actuals
    blobs.write_bytes("input", f"actuals/{run_id}/a.csv", ("postcode,date,volume\n" + actuals).encode())
    return evaluate_run(run_id, "eval-big", blobs, "results", "input", "actuals/")


def test_overlay_reads_only_the_postcodes_slices_and_equals_the_whole_file_read(blobs):
    run_id = "run-overlay-indexed"
    postcodes = [str(1000 + 2 * i) for i in range(120)]
    pointer = _evaluated_big_run(blobs, run_id, postcodes, days=20)
    pairs_size = blobs.info("results", pointer["pairs"].partition("/")[2]).size
    metrics_size = blobs.info("results", pointer["metrics"].partition("/")[2]).size
    whole_pairs = blobs.read_bytes("results", pointer["pairs"].partition("/")[2]).decode()
    whole_metrics = blobs.read_bytes("results", pointer["metrics"].partition("/")[2]).decode()
    for postcode in ("1000", "1118", "1238", "1999"):  # first, middle, last, and one the run does not have
        counting = CountingBlobStore(blobs)
        got = overlays.read_overlays(counting, "results", run_id, postcode)
        expected = overlays.postcode_actuals(whole_pairs, postcode), overlays.postcode_metrics(whole_metrics, postcode)
        assert got == expected
        whole_reads = [r for r in counting.reads if r[0] in (pointer["pairs"], pointer["metrics"]) and r[1] is None]
        assert whole_reads == []  # never the whole pairs.csv or metrics.csv
        ranged = {r[0]: r for r in counting.reads if r[1] is not None}
        if postcode == "1999":
            assert ranged == {} and got == ({}, None)
            continue
        assert set(ranged) == {pointer["pairs"], pointer["metrics"]}
        assert len(got[0]) == 16 and got[1]["n"] == 16  # 20 days, every fifth without an actual
        # The slices are exactly the postcode's rows: 16 pair rows and one metrics row.
        pairs_slice = ranged[pointer["pairs"]]
        assert pairs_slice[3] == pairs_slice[2] and whole_pairs.encode()[
            pairs_slice[1]:pairs_slice[1] + pairs_slice[2]].count(b"\n") == 16
        assert counting.bytes_read() < (pairs_size + metrics_size) / 4, (counting.reads, pairs_size)


def test_overlay_of_an_evaluation_without_indexes_reads_the_files_whole(blobs):
    """Evaluations published before the indexes: their pointer names no index; the overlay is the same."""
    run_id = "run-overlay-old"
    pointer = _evaluated_big_run(blobs, run_id, [str(1000 + 2 * i) for i in range(30)], days=10)
    indexed = overlays.read_overlays(blobs, "results", run_id, "1010")
    old = {k: v for k, v in pointer.items() if k not in ("pairs_index", "metrics_index")}
    blobs.write_json("results", f"runs/{run_id}/accuracy.json", old)
    for name in ("pairs_index", "metrics_index"):
        blobs.delete("results", pointer[name].partition("/")[2])
    counting = CountingBlobStore(blobs)
    assert overlays.read_overlays(counting, "results", run_id, "1010") == indexed and indexed[1]["n"] == 8
    assert {r[0] for r in counting.reads if r[1] is None} >= {pointer["pairs"], pointer["metrics"]}
