"""The run dashboard against the real local stack (Durable dev host, ARM stand-in, Azurite, R), through its
JSON routes and in a real headless Chromium (Debian's, driven by playwright; no browser download).

Screenshots go to test-artifacts/dashboard/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import HORIZON, REPO, sample_stack

from dashboard.page import CSP
from pipeline.aci.spec import APP_TAG

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in, the dev host and Chromium
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
KEY = "local-test-key"  # the dev host, like Core Tools, does not check keys; the test checks they are sent
BROKEN_INPUT = "manual/one-broken.csv"
REASON = f"volume is NA or infinite for {HORIZON} of {HORIZON} rows"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("dashboard"))
    overrides = {"MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
                 "SHARD_DEADLINE_MINUTES": "2"}
    with sample_stack(root, sample_models, overrides, host_args=["--blob-poll-interval", "86400"]) as s:
        yield s


@pytest.fixture(scope="module")
def broken(stack, sample_models) -> str:
    """An input whose feature is missing (NA) for one glm postcode: predict() gives NA, so that postcode
    fails, with its reason, and the others are scored."""
    _, input_csv = sample_models
    rows = list(csv.DictReader(input_csv.open()))
    postcode = sorted({r["postcode"] for r in rows})[0]
    for row in rows:
        if row["postcode"] == postcode:
            row["holiday"] = ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    stack.blobs.write_bytes("input", BROKEN_INPUT, out.getvalue().encode())
    return postcode


@pytest.fixture(scope="module")
def published(stack, broken) -> str:
    """A run started over HTTP (not from the page) and finished: for the API checks."""
    r = stack.post("/api/runs", {"input": BROKEN_INPUT, "horizon": HORIZON})
    assert r.status_code == 202, r.text
    view = stack.wait_for_run(r.json()["id"])
    assert view["state"] == "completed_with_failures", view["errors"]
    return view["id"]


def api(stack, path: str):
    return stack.get("/api/dashboard" + path)


# --------------------------------------------------------------------------------------------- JSON routes


def test_run_views_of_a_published_run(stack, published, broken, sample_models):
    runs = api(stack, "/runs").json()["runs"]
    run = next(r for r in runs if r["id"] == published)
    assert run["trigger"] == "http" and run["model"] == "parcels" and run["version"] == "v1"
    assert run["state"] == "completed_with_failures" and run["published"] is True
    assert run["postcodes"]["failed"] == 1 and run["costUsd"] > 0 and run["durationSeconds"] > 0

    detail = api(stack, f"/runs/{published}").json()
    assert [b["state"] for b in detail["shardBars"]] == ["succeeded", "partial"] or \
        {b["state"] for b in detail["shardBars"]} <= {"succeeded", "partial"}
    for bar in detail["shardBars"]:
        attempt = bar["attempts"][-1]
        assert attempt["exitCode"] in (0, 3) and attempt["deleted"] is True and attempt["elapsedSeconds"] > 0
        assert attempt["group"].startswith(published) and bar["deadlineMinutes"] == 2
        log = api(stack, f"/runs/{published}/files/{attempt['log']}")
        assert log.status_code == 200 and '"scored"' in log.text
    assert detail["canRetry"] is True and detail["canCancel"] is False

    failures = api(stack, f"/runs/{published}/failures").json()
    assert failures["failures"] == [{"postcode": broken, "reason": REASON}] and failures["count"] == 1

    models, _ = sample_models
    scored = sorted(p.stem for p in models.glob("*.rds") if p.stem != broken)
    assert api(stack, f"/runs/{published}/postcodes").json()["postcodes"] == scored


def test_forecast_is_one_ranged_read_with_overlays_when_present(stack, published):
    postcode = api(stack, f"/runs/{published}/postcodes").json()["postcodes"][0]
    f = api(stack, f"/runs/{published}/forecast/{postcode}").json()
    assert len(f["dates"]) == len(f["volume"]) == HORIZON and f["actual"] is None and f["accuracy"] is None
    from pipeline.revisions import current_revision

    results = list(csv.DictReader(io.StringIO(stack.blobs.read_bytes(
        "results", current_revision(stack.blobs, "results", published).results).decode())))
    mine = [r for r in results if r["postcode"] == postcode]
    assert f["volume"] == [float(r["volume"]) for r in mine] and f["dates"] == [r["date"] for r in mine]

    # Actuals evaluated through the accuracy feature's own route appear on the next read.
    evaluate(stack, published, f"{postcode},{mine[0]['date']},42\n")
    f = api(stack, f"/runs/{published}/forecast/{postcode}").json()
    assert f["actual"][0] == 42.0 and f["actual"][1:] == [None] * (HORIZON - 1)
    error = 42 - float(mine[0]["volume"])
    assert f["accuracy"]["n"] == 1 and f["accuracy"]["me"] == pytest.approx(error)
    assert f["accuracy"]["mae"] == pytest.approx(abs(error)) and f["accuracy"]["rmse"] == pytest.approx(abs(error))
    other = api(stack, f"/runs/{published}/postcodes").json()["postcodes"][1]
    assert api(stack, f"/runs/{published}/forecast/{other}").json()["accuracy"] is None  # not in the actuals


def evaluate(stack, run_id: str, rows: str, timeout: float = 60) -> dict:
    """Post actuals to POST /api/runs/{id}/evaluate and wait until the run's accuracy pointer names them."""
    r = stack.post(f"/api/runs/{run_id}/evaluate", data=("postcode,date,volume\n" + rows).encode(),
                   headers={"Content-Type": "text/csv"})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = stack.get(f"/api/runs/{run_id}/accuracy")
        if done.status_code == 200 and done.json()["evaluation"] == r.json()["id"]:
            return done.json()
        time.sleep(0.3)
    raise TimeoutError(f"evaluation {r.json()['id']} of {run_id} not published within {timeout} s")


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/runs/run-nosuchrun", 404, "no run 'run-nosuchrun'"),
    ("/runs/Bad_Id", 400, "'Bad_Id' is not a run id"),
    ("/runs/run-nosuchrun/failures", 404, "no run 'run-nosuchrun'"),
    ("/runs/run-nosuchrun/forecast/1000", 404, "no run 'run-nosuchrun'"),
    ("/runs/run-nosuchrun/postcodes", 404, "no run 'run-nosuchrun'"),
    ("/static/app.py", 404, "no static file 'app.py'"),
])
def test_bad_requests_get_errors_naming_the_problem(stack, path, status, says):
    r = api(stack, path)
    assert r.status_code == status and says in r.json()["error"], (r.status_code, r.text)


def test_forecast_and_file_errors(stack, published, broken):
    r = api(stack, f"/runs/{published}/forecast/{broken}")
    assert r.status_code == 404 and f"no forecast for postcode {broken}" in r.json()["error"]
    r = api(stack, f"/runs/{published}/forecast/12ab")
    assert r.status_code == 400 and "'12ab' is not a postcode" in r.json()["error"]
    for path in ("jobs/shard-000-a1.json", "logs/..%2f..%2fmanifest.log", "_SUCCESS"):
        r = api(stack, f"/runs/{published}/files/{path}")
        assert r.status_code == 404 and "not a file the dashboard serves" in r.json()["error"], (path, r.text)
    r = api(stack, f"/runs/{published}/files/logs/shard-009-a1.log")
    assert r.status_code == 404 and "has no file logs/shard-009-a1.log" in r.json()["error"]


def test_security_headers_on_every_dashboard_response(stack, published):
    for path in ("", "/static/app.js", "/static/uPlot.iife.min.js", "/runs", f"/runs/{published}", "/groups",
                 "/runs/run-nosuchrun"):
        r = api(stack, path)
        assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"
    page = api(stack, "").text
    assert "<script>" not in page and " style=" not in page and "http" not in page  # no inline code, no CDN


# ------------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_page_in_chromium(stack, browser, broken):
    """Loads with no console errors; a run started from the page shows its shards finishing; the group list
    ends empty; a forecast chart renders; the failed postcode shows its reason. Screenshots along the way."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    keyless: list[str] = []
    page.on("request", lambda r: keyless.append(r.url) if "/api/" in r.url and "/static/" not in r.url
            and not r.url.endswith("/api/dashboard") and r.headers.get("x-functions-key") != KEY else None)

    page.goto(stack.base_url + "/api/dashboard")
    page.fill("#key", KEY)
    page.click("#save-key")
    page.wait_for_selector("#groups-note:has-text('No live container groups')")
    keyless.clear()  # requests before the key was entered went without one, as they should
    page.screenshot(path=str(ARTIFACTS / "1-loaded.png"), full_page=True)

    page.fill("#start-input", BROKEN_INPUT)
    page.fill("#start-horizon", str(HORIZON))
    page.click("#start-run")
    page.wait_for_selector("#start-result:has-text('started run-')")
    run_id = page.text_content("#start-result").split()[-1]
    page.wait_for_selector("#shards .shard")
    page.wait_for_selector("#groups-body tr", timeout=60_000)  # its container groups show up while it runs
    page.screenshot(path=str(ARTIFACTS / "2-running.png"), full_page=True)

    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('#shards .shard')];"
        " return s.length === 2 && s.every(e => ['succeeded', 'partial'].includes(e.dataset.state)); }",
        timeout=120_000)
    assert page.text_content("#run-id") == run_id
    page.wait_for_selector("#run-state .state-completed_with_failures", timeout=60_000)
    page.wait_for_selector("#groups-note:has-text('No live container groups')", timeout=30_000)
    assert page.locator("#groups-body tr").count() == 0 and stack.standin.groups() == []

    reason = page.text_content(f"#failures-body tr[data-postcode='{broken}'] td:nth-child(2)")
    assert reason == REASON

    page.wait_for_selector("#chart canvas", timeout=30_000)
    page.wait_for_function(f"() => document.querySelector('#chart').dataset.points === '{HORIZON}'")
    assert _painted(page) > 500, "the forecast chart drew (almost) nothing"
    # The ets postcode has 80/95% intervals: pick it and the bands are drawn; actuals posted to the accuracy
    # route (POST /api/runs/{id}/evaluate) are overlaid with the postcode's metrics.
    ets = _ets_postcode(stack, run_id)
    forecast = api(stack, f"/runs/{run_id}/forecast/{ets}").json()
    observed = {d: round(v * (1.1 if i % 2 else 0.9), 1)
                for i, (d, v) in enumerate(zip(forecast["dates"][:10], forecast["volume"][:10], strict=True))}
    evaluate(stack, run_id, "".join(f"{ets},{d},{y!r}\n" for d, y in observed.items()))
    mae = sum(abs(y - v) for y, v in zip(observed.values(), forecast["volume"], strict=False)) / len(observed)
    page.select_option("#postcode", ets)
    page.wait_for_function(f"() => document.querySelector('#chart').dataset.postcode === '{ets}'")
    page.wait_for_selector("#forecast-note:has-text('bands: 80%')")
    page.wait_for_selector("#accuracy:has-text('accuracy: n 10,')")
    text = page.text_content("#accuracy")
    for metric in ("me", "rmse", "wape", "mase", "coverage_80", "winkler_80", "coverage_95", "winkler_95"):
        assert f", {metric} " in text, text
    assert f", mae {mae:.3f}," in text, text
    assert page.evaluate("() => document.querySelector('#chart').dataset.actuals") == "10"
    page.locator("#run").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "3-finished.png"), full_page=True)
    page.locator("#chart").screenshot(path=str(ARTIFACTS / "4-forecast.png"))

    # The manifest link downloads through the app (with the key), not from storage.
    with page.expect_download() as download:
        page.click(f"#runs-body tr[data-run='{run_id}'] a[data-file='manifest.json']")
    manifest = json.loads(Path(download.value.path()).read_text())
    assert manifest["run_id"] == run_id and manifest["postcodes_failed"] == {broken: REASON}

    assert not problems, problems
    assert not keyless, f"data calls without the function key: {keyless[:3]}"
    page.close()


def _painted(page) -> int:
    """Non-transparent pixels on the chart's canvas."""
    return page.evaluate("""() => {
        const c = document.querySelector('#chart canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")


def _ets_postcode(stack, run_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pc in api(stack, f"/runs/{run_id}/postcodes").json()["postcodes"]:
            if api(stack, f"/runs/{run_id}/forecast/{pc}").json()["lower_95"][0] is not None:
                return pc
        time.sleep(0.5)
    raise AssertionError("no postcode with intervals (the sample has an ets model every 10th postcode)")


def test_cancel_and_retry_from_the_page(stack, browser, published, broken):
    """Cancel stops a run whose containers hang (its groups are deleted); Retry failed reruns the failed
    postcode of a published run and the page follows the retry."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(stack.base_url + "/api/dashboard")
    page.wait_for_selector("#runs-body tr[data-run]")

    stack.standin.inject({"kind": "hang"})  # every container runs and never finishes
    try:
        page.fill("#start-input", "manual/input.csv")
        page.click("#start-run")
        page.wait_for_selector("#start-result:has-text('started run-')")
        run_id = page.text_content("#start-result").split()[-1]
        page.wait_for_function("() => document.querySelectorAll('#groups-body tr').length === 2", timeout=60_000)
        page.wait_for_selector("#cancel-run:not([disabled])")
        page.click("#cancel-run")
        page.wait_for_selector(f"#run-action:has-text('cancelling {run_id}')")
        page.wait_for_selector("#run-state .state-cancelled", timeout=60_000)
        page.wait_for_selector("#groups-note:has-text('No live container groups')", timeout=30_000)
        assert stack.standin.groups() == []
        assert {s.get_attribute("data-state") for s in page.query_selector_all("#shards .shard")} == {"cancelled"}
        page.screenshot(path=str(ARTIFACTS / "5-cancelled.png"), full_page=True)
    finally:
        stack.standin.clear_faults()

    page.click(f"#runs-body tr[data-run='{published}'] td a")
    page.wait_for_selector(f"#run-id:has-text('{published}')")
    page.wait_for_selector("#retry-run:not([disabled])")
    page.click("#retry-run")
    page.wait_for_selector(f"#run-action:has-text('retry started: {published}-retry1')")
    page.wait_for_selector(f"#run-id:has-text('{published}-retry1')")
    # The input still lacks that postcode's feature: the retry fails it again, with the same reason.
    page.wait_for_selector("#run-state .state-completed_with_failures", timeout=120_000)
    reason = page.text_content(f"#failures-body tr[data-postcode='{broken}'] td:nth-child(2)")
    assert reason == REASON
    # The retry published into the run it retried: the whole run's postcodes, and its forecasts.
    row = f"#runs-body tr[data-run='{published}-retry1'] td"  # the runs table refreshes on its own poll
    page.wait_for_function(f"() => document.querySelectorAll(\"{row}\")[6]?.textContent === '9/10'")
    assert page.locator(row).nth(7).text_content() == "1"
    page.wait_for_selector("#chart canvas", timeout=30_000)
    assert page.locator("#postcode option").count() == 9
    page.screenshot(path=str(ARTIFACTS / "6-retried.png"), full_page=True)
    retry = api(stack, f"/runs/{published}-retry1").json()
    log = retry["shardBars"][0]["attempts"][0]["log"]
    assert api(stack, f"/runs/{published}-retry1/files/{log}").status_code == 200  # the retry's own logs
    assert not problems, problems
    page.close()


def test_orphan_group_is_flagged_on_the_page(stack, browser):
    """A group of this app whose run does not exist (as a lost delete would leave it) shows as an orphan,
    with its age and run; a group of an active run would not (see test_page_in_chromium)."""
    from pipeline.aci.client import ContainerGroups
    from pipeline.aci.spec import scoring_spec
    from pipeline.settings import Settings

    settings = Settings.from_env(stack.settings)
    groups = ContainerGroups(settings)
    created = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = {**APP_TAG, "run": "run-gone0000000000000000", "shard": "3", "created": created}
    command = ["python", "-u", "-c", "import time; time.sleep(600)"]
    groups.create(scoring_spec(settings, "run-gone0000000000000000-s003", {}, tags=tags, command=command))
    try:
        listed = api(stack, "/groups").json()
        assert listed["orphans"] == 1, listed
        (orphan,) = listed["groups"]
        assert orphan["name"] == "run-gone0000000000000000-s003" and orphan["run"] == "run-gone0000000000000000"
        assert orphan["orphan"] is True and orphan["shard"] == 3 and 119 <= orphan["ageMinutes"] <= 125

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(stack.base_url + "/api/dashboard")
        row = page.wait_for_selector("#groups-body tr[data-group='run-gone0000000000000000-s003']")
        assert row.query_selector("td.orphan").text_content().startswith("orphan")
        page.locator("#groups").screenshot(path=str(ARTIFACTS / "7-orphan.png"))
        page.close()
    finally:
        groups.delete("run-gone0000000000000000-s003")
        groups.close()
    assert api(stack, "/groups").json() == {"groups": [], "orphans": 0}
