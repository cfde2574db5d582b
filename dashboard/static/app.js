// The run dashboard: polls the JSON routes under /api/dashboard and draws runs, shards, groups, failures,
// forecasts and cost. Every data call carries the function key (x-functions-key) when one is set; the key
// lives in sessionStorage (this tab only). Text from the server is only ever set as textContent.
"use strict";

const BASE = document.body.dataset.base;            // e.g. /api/dashboard
const API = BASE.replace(/\/dashboard$/, "");       // e.g. /api
const KEY = "functionKey";
const POLL_MS = 2000;
let selectedRun = null;
let chart = null;
let chartKey = "";
let runsSignature = "";

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { "x-functions-key": key } : {};
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

async function call(path, options) {
  const r = await fetch(path, { ...(options || {}), headers: { ...headers(), ...((options || {}).headers || {}) } });
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const message = (body && body.error) || (r.status === 401 ? "the function key was refused" : String(body));
    const err = new Error(`${r.status}: ${message}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

const get = (path) => call(`${BASE}${path}`);

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function fmtUsd(v) { return v === null || v === undefined ? "" : `$${Number(v).toFixed(4)}`; }
function stateBadge(state) { return el("span", state, `state state-${state}`); }

async function download(runId, path) {
  try {
    const r = await fetch(`${BASE}/runs/${runId}/files/${path}`, { headers: headers() });
    if (!r.ok) throw new Error(`${r.status}: ${(await r.json()).error}`);
    const url = URL.createObjectURL(await r.blob());
    const a = el("a");
    a.href = url;
    a.download = `${runId}-${path.replace(/\//g, "-")}`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    setStatus(`download ${path}: ${e.message}`, true);
  }
}

function fileLink(runId, path, label) {
  const a = el("a", label);
  a.addEventListener("click", (ev) => { ev.preventDefault(); ev.stopPropagation(); download(runId, path); });
  a.dataset.file = path;
  return a;
}

// ------------------------------------------------------------------------------------------------ runs

function renderRuns(runs) {
  const body = $("runs-body");
  body.replaceChildren();
  if (!runs.length) {
    const tr = el("tr");
    const td = el("td", "No runs in the last 30 days.", "note");
    td.colSpan = 10;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const run of runs) {
    const tr = el("tr");
    tr.dataset.run = run.id;
    if (run.id === selectedRun) tr.classList.add("selected");
    const idCell = el("td");
    const link = el("a", run.id);
    link.addEventListener("click", () => selectRun(run.id));
    idCell.appendChild(link);
    const state = el("td");
    state.appendChild(stateBadge(run.stage && run.state === "running" ? run.stage : run.state));
    const files = el("td");
    if (run.files.manifest) {
      files.append(fileLink(run.id, "manifest.json", "manifest"), " ", fileLink(run.id, "results.csv", "results"), " ");
    }
    const logs = el("a", "logs");  // one log per shard attempt: listed with the run's shards
    logs.dataset.logs = run.id;
    logs.addEventListener("click", () => { selectRun(run.id); $("shards").scrollIntoView(); });
    files.appendChild(logs);
    tr.append(idCell, el("td", run.trigger), el("td", `${run.model || ""} ${run.version || ""}`), state,
      el("td", fmtTime(run.started)), el("td", fmtSeconds(run.durationSeconds)),
      el("td", `${run.postcodes.scored}/${run.postcodes.total}`, "num"), el("td", run.postcodes.failed, "num"),
      el("td", fmtUsd(run.costUsd), "num"), files);
    body.appendChild(tr);
  }
}

async function refreshRuns() {
  const data = await get("/runs");
  renderRuns(data.runs);
  // Cost changes when a run finishes: refresh it then, not on every poll.
  const signature = data.runs.map((r) => `${r.id}:${r.runtimeStatus}`).join(",");
  if (signature !== runsSignature) { runsSignature = signature; refreshCost().catch(showError); }
  if (!selectedRun && data.runs.length) selectRun(data.runs[0].id);
}

// ---------------------------------------------------------------------------------------------- one run

function shardRow(runId, bar) {
  const row = el("div", null, "shard");
  row.dataset.shard = bar.index;
  row.dataset.state = bar.state;
  const label = el("div");
  label.append(`shard ${bar.index} `, stateBadge(bar.state));
  const track = el("div", null, "bar");
  const fill = el("div", null, `fill ${bar.state}`);
  const last = bar.attempts[bar.attempts.length - 1];
  const deadline = (bar.deadlineMinutes || 60) * 60;
  const elapsed = last && last.elapsedSeconds !== null ? last.elapsedSeconds : 0;
  fill.style.width = `${Math.min(100, Math.max(bar.state === "pending" ? 0 : 2, (100 * elapsed) / deadline))}%`;
  track.title = `elapsed ${fmtSeconds(elapsed)} of a ${bar.deadlineMinutes} min deadline`;
  track.appendChild(fill);
  const detail = el("div", null, "note");
  const parts = [`attempts ${bar.attempts.length}`];
  if (last) {
    parts.push(`group ${last.group || "-"}`, `${fmtSeconds(elapsed)} / ${bar.deadlineMinutes} min`);
    if (last.exitCode !== null && last.exitCode !== undefined) parts.push(`exit ${last.exitCode}`);
  }
  detail.append(parts.join(" · "));
  if (last && last.log) { detail.append(" · "); detail.appendChild(fileLink(runId, last.log, "log")); }
  if (bar.reason) detail.append(` · ${bar.reason}`);
  row.append(label, track, detail);
  return row;
}

async function refreshRun() {
  if (!selectedRun) return;
  const runId = selectedRun;
  const run = await get(`/runs/${runId}`);
  if (runId !== selectedRun) return;
  $("run").hidden = false;
  $("run-id").textContent = run.id;
  $("run-state").replaceChildren(stateBadge(run.state));
  $("run-summary").textContent = [
    `${run.trigger} run of ${run.model || "?"} ${run.version || ""}`,
    `started ${fmtTime(run.started)}`, `duration ${fmtSeconds(run.durationSeconds)}`,
    `shards ${run.shards.done}/${run.shards.total}`,
    `postcodes scored ${run.postcodes.scored}, failed ${run.postcodes.failed}`,
    run.costUsd !== null ? `cost ${fmtUsd(run.costUsd)}` : "",
    ...run.errors, ...run.cleanupErrors].filter(Boolean).join(" · ");
  $("cancel-run").disabled = !run.canCancel;
  $("retry-run").disabled = !run.canRetry;
  $("shards").replaceChildren(...run.shardBars.map((b) => shardRow(run.id, b)));
  const failures = await get(`/runs/${runId}/failures`);
  const fb = $("failures-body");
  fb.replaceChildren();
  for (const f of failures.failures) {
    const tr = el("tr");
    tr.dataset.postcode = f.postcode;
    tr.append(el("td", f.postcode), el("td", f.reason));
    fb.appendChild(tr);
  }
  if (!failures.failures.length) {
    const tr = el("tr");
    const td = el("td", "None.", "note");
    td.colSpan = 2;
    tr.appendChild(td);
    fb.appendChild(tr);
  }
  if (run.published && $("postcode").dataset.run !== run.id) await loadPostcodes(run.id);
  if (!run.published) { $("postcode").replaceChildren(); $("postcode").dataset.run = ""; clearChart("not published (yet)"); }
}

function selectRun(runId) {
  selectedRun = runId;
  $("run-action").textContent = "";
  for (const tr of document.querySelectorAll("#runs-body tr")) tr.classList.toggle("selected", tr.dataset.run === runId);
  refreshRun().catch(showError);
}

async function runAction(action) {
  const runId = selectedRun;
  try {
    const r = await call(`${API}/runs/${runId}/${action}`, { method: "POST" });
    if (action === "retry") selectRun(r.id);  // follow the retry run
    $("run-action").textContent = action === "retry" ? `retry started: ${r.id}` : `cancelling ${runId}`;
  } catch (e) {
    $("run-action").textContent = `${action}: ${e.message}`;
  }
}

// ----------------------------------------------------------------------------------------------- forecast

async function loadPostcodes(runId) {
  const data = await get(`/runs/${runId}/postcodes`);
  const select = $("postcode");
  select.replaceChildren(...data.postcodes.map((pc) => { const o = el("option", pc); o.value = pc; return o; }));
  select.dataset.run = runId;
  if (data.postcodes.length) await drawForecast(runId, data.postcodes[0]);
}

function clearChart(note) {
  if (chart) { chart.destroy(); chart = null; chartKey = ""; }
  $("forecast-note").textContent = note || "";
  $("accuracy").textContent = "";
}

// Metrics come from the accuracy feature's metrics.csv: counts are integers, NA arrives as null.
function metricText(name, v) {
  if (v === null || v === undefined) return "NA";
  return name === "n" || name.startsWith("n_") ? String(v) : v.toFixed(3);
}

async function drawForecast(runId, postcode) {
  const f = await get(`/runs/${runId}/forecast/${postcode}`);
  const key = `${runId}/${postcode}`;
  const xs = f.dates.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const actual = f.actual || f.dates.map(() => null);
  const data = [xs, f.volume, f.lower_80, f.upper_80, f.lower_95, f.upper_95, actual];
  const hasBands = f.lower_95.some((v) => v !== null);
  const opts = {
    width: Math.max(320, $("chart").clientWidth || 800), height: 300,
    title: `postcode ${f.postcode} · ${f.model || ""} ${f.version || ""}`,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "forecast", stroke: "#1d5fbf", width: 2 },
      { label: "80% low", stroke: "rgba(29,95,191,0.35)", width: 1 },
      { label: "80% high", stroke: "rgba(29,95,191,0.35)", width: 1 },
      { label: "95% low", stroke: "rgba(29,95,191,0.2)", width: 1, dash: [4, 4] },
      { label: "95% high", stroke: "rgba(29,95,191,0.2)", width: 1, dash: [4, 4] },
      { label: "actual", stroke: "#c0392b", width: 2, points: { show: true } },
    ],
    bands: [
      { series: [5, 4], fill: "rgba(29,95,191,0.10)" },
      { series: [3, 2], fill: "rgba(29,95,191,0.20)" },
    ],
  };
  if (chart) chart.destroy();
  chart = new uPlot(opts, data, $("chart"));
  chartKey = key;
  $("chart").dataset.postcode = postcode;
  $("chart").dataset.points = String(xs.length);
  $("chart").dataset.actuals = String(actual.filter((v) => v !== null).length);  // for tests and a11y tools
  $("forecast-note").textContent = hasBands ? "bands: 80% (dark) and 95% (light)" : "this model gives no intervals";
  $("accuracy").textContent = f.accuracy
    ? "accuracy: " + Object.entries(f.accuracy).map(([k, v]) => `${k} ${metricText(k, v)}`).join(", ")
    : (f.actual ? "" : "no actuals yet");
}

// ------------------------------------------------------------------------------------------ groups, cost

async function refreshGroups() {
  const data = await get("/groups");
  const body = $("groups-body");
  body.replaceChildren();
  for (const g of data.groups) {
    const tr = el("tr");
    tr.dataset.group = g.name;
    tr.append(el("td", g.name), el("td", g.run || "?"), el("td", g.shard ?? ""),
      el("td", g.ageMinutes === null ? "?" : fmtSeconds(g.ageMinutes * 60)), el("td", g.state || ""),
      el("td", g.orphan ? `orphan (swept once ${g.sweptAfterMinutes} min old)` : "", g.orphan ? "orphan" : ""));
    body.appendChild(tr);
  }
  $("groups-note").textContent = data.groups.length ? `${data.groups.length} live, ${data.orphans} orphaned`
    : "No live container groups.";
}

async function refreshCost() {
  const data = await get("/cost");
  $("cost-total").textContent = `${fmtUsd(data.totalUsd)} over ${data.runs.length} priced run(s)`;
  const max = Math.max(...data.daily.map((d) => d.costUsd), 1e-9);
  $("cost-days").replaceChildren(...data.daily.map((d) => {
    const bar = el("div", null, "day");
    bar.style.height = `${(100 * d.costUsd) / max}%`;
    bar.title = `${d.day}: ${fmtUsd(d.costUsd)}`;
    return bar;
  }));
  $("cost-note").textContent = data.note;
}

// ---------------------------------------------------------------------------------------------- wiring

function showError(e) { setStatus(e.message, true); }

async function startRun() {
  const body = {};
  const model = $("start-model").value.trim();
  const version = $("start-version").value.trim();
  const input = $("start-input").value.trim();
  const horizon = $("start-horizon").value.trim();
  if (model) body.model = model;
  if (version) body.version = version;
  if (input) body.input = input;
  if (horizon) body.horizon = Number(horizon);
  try {
    const r = await call(`${API}/runs`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify(body) });
    $("start-result").textContent = `started ${r.id}`;
    selectRun(r.id);
    await refreshRuns();
  } catch (e) {
    $("start-result").textContent = `not started: ${e.message}`;
  }
}

let ticks = 0;

async function poll() {
  // Container groups come from ARM (a list call per refresh, counted against ARM's read limits): every poll
  // while a run is going, every 5th (10 s) otherwise.
  const going = runsSignature.includes(":Running") || runsSignature.includes(":Pending");
  const groups = going || ticks++ % 5 === 0;
  try {
    await Promise.all([refreshRuns(), groups ? refreshGroups() : null, refreshRun()]);
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    showError(e);
  }
}

function init() {
  if (document.body.dataset.auth === "app-service") {
    // Signed in through App Service Authentication: reading needs no key; the run routes still want one.
    $("key-label").textContent = "Function key (only to start, cancel or retry runs)";
  }
  $("key").value = sessionStorage.getItem(KEY) || "";
  $("save-key").addEventListener("click", () => { sessionStorage.setItem(KEY, $("key").value.trim()); poll(); });
  $("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); $("key").value = ""; });
  $("start-run").addEventListener("click", startRun);
  $("cancel-run").addEventListener("click", () => runAction("cancel"));
  $("retry-run").addEventListener("click", () => runAction("retry"));
  $("postcode").addEventListener("change", (ev) => drawForecast(selectedRun, ev.target.value).catch(showError));
  poll();
  setInterval(poll, POLL_MS);
}

init();
