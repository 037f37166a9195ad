// The NetSpectra console: plain JavaScript over the documented HTTP JSON (docs/console.md).
// No build step, nothing from elsewhere: uPlot is vendored beside this file.
"use strict";

const state = { start: null, end: null, tasks: [], status: null, charts: [] };
const $ = (id) => document.getElementById(id);

// --- numbers and addresses for people ------------------------------------------------------
function si(value, unit = "") {
  const n = Number(value);
  const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, prefix] of steps) {
    if (Math.abs(n) >= size) return `${(n / size).toFixed(n / size >= 100 ? 0 : n / size >= 10 ? 1 : 2)} ${prefix}${unit}`;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(n >= 10 ? 1 : 2)}${unit ? " " + unit : ""}`;
}
const bytesText = (n) => si(n, "B");
const rateBytes = (n) => `${si(n * 8, "bit/s")} (${si(n, "B/s")})`;
function fullIPv6(text) {
  // the store keeps compressed IPv6 ("2001:db8::1"); people compare addresses in full
  if (typeof text !== "string" || !text.includes(":")) return text;
  const [head, tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : (tail ? tail.split(":") : []);
  const missing = 8 - left.length - right.length;
  const groups = [...left, ...Array(tail === undefined ? 0 : missing).fill("0"), ...right];
  return groups.map((g) => g.padStart(4, "0")).join(":");
}
const PROTOCOLS = { 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP" };
const protoText = (p) => (p === null || p === undefined ? "–" : `${PROTOCOLS[p] || p} (${p})`);
const timeText = (s) => new Date(s * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC");

// --- the HTTP JSON -----------------------------------------------------------------------------
class ApiError extends Error {}
// An offline report (netspectra analyze --html) carries the answers in the page: read them there.
const REPORT = (() => {
  const blob = document.getElementById("netspectra-report");
  return blob ? JSON.parse(blob.textContent) : null;
})();
function reportKey(name, body) {
  // the same key as netspectra/api/console_report.py's request_key
  const kept = Object.keys(body).filter((k) => body[k] !== null && body[k] !== undefined).sort();
  return `${name} ${JSON.stringify(Object.fromEntries(kept.map((k) => [k, body[k]])))}`;
}
async function api(name, body = {}) {
  if (REPORT) {
    const answer = REPORT.answers[reportKey(name, body)];
    if (answer === undefined) throw new ApiError("this offline report holds the whole capture's panels; filters, other windows and traces need the live console");
    return answer;
  }
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("netspectra-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`/api/v1/${name}`, { method: "POST", headers, body: JSON.stringify(body) });
  if (response.status === 401) {
    const given = window.prompt("This NetSpectra api needs its bearer token (kept in this tab only):");
    if (given) { sessionStorage.setItem("netspectra-token", given); return api(name, body); }
  }
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(answer.error || `HTTP ${response.status}`);
  return answer;
}
const windowed = (body) => ({ ...body, start: state.start, end: state.end });
function showError(error) {
  const box = $("error");
  box.textContent = error instanceof ApiError ? `The api answered: ${error.message}` : `${error}`;
  box.hidden = false;
}

// --- the time-range picker ---------------------------------------------------------------------
const toLocalInput = (s) => (s === null ? "" : new Date(s * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19));
const fromLocalInput = (v) => (v ? Math.floor(new Date(v).getTime() / 1000) : null);
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("start") || params.has("end")) {
    $("range-preset").value = "custom";
    state.start = params.get("start") ? Number(params.get("start")) : null;
    state.end = params.get("end") ? Number(params.get("end")) : null;
    return true;
  }
  return false;
}
function applyPreset() {
  const preset = $("range-preset").value;
  if (preset === "custom") {
    state.start = fromLocalInput($("range-start").value);
    state.end = fromLocalInput($("range-end").value);
  } else if (preset === "all") {
    state.start = null; state.end = null;
  } else {
    state.end = null; state.start = Math.floor(Date.now() / 1000) - Number(preset);
  }
}
function showWindow() {
  if (REPORT) { $("window-text").textContent = `offline report: ${REPORT.title}`; return; }
  $("range-start").value = toLocalInput(state.start);
  $("range-end").value = toLocalInput(state.end);
  const from = state.start === null ? "the period's start" : timeText(state.start);
  const to = state.end === null ? "now" : timeText(state.end);
  $("window-text").textContent = `showing ${from} → ${to}`;
  $("window-text").dataset.start = state.start ?? "";
  $("window-text").dataset.end = state.end ?? "";
}

// --- panels --------------------------------------------------------------------------------------
function noSnapshotText() {
  const every = state.status && state.status.snapshot_interval_s;
  return every ? `no snapshot yet: the first comes after ${every} s` : "no snapshot yet: no store writer is configured to write one";
}
function fillSelect(select, tasks) {
  const keep = select.value;
  select.replaceChildren(...tasks.map((t) => new Option(t.name, t.name)));
  if (tasks.some((t) => t.name === keep)) select.value = keep;
}
function cell(row, text, exact, numeric = false) {
  const td = row.insertCell();
  td.textContent = text;
  if (exact !== undefined) { td.dataset.exact = String(exact); td.title = String(exact); }
  if (numeric) td.className = "num";
  return td;
}
function setEmpty(id, text) { const p = $(id); p.textContent = text || ""; p.hidden = !text; }

async function loadTraffic() {
  state.charts.forEach((chart) => chart.destroy());
  state.charts = [];
  const task = $("traffic-task").value;
  if (!task) { setEmpty("traffic-empty", state.status.stored_tasks ? "no exact task is configured" : noSnapshotText()); return; }
  const answer = await api("series", windowed({ task }));
  if (!answer.points.length) {
    setEmpty("traffic-empty", state.status.stored_tasks ? "no snapshot of this task in this window" : noSnapshotText());
    return;
  }
  if (!answer.rates.length) { setEmpty("traffic-empty", "one snapshot in this window: a rate needs two"); return; }
  setEmpty("traffic-empty", "");
  const times = answer.rates.map((r) => r.time);
  const lo = times[0] - (times.length > 1 ? 0 : 60);
  const hi = times[times.length - 1] + (times.length > 1 ? 0 : 60);
  const width = Math.max(400, $("traffic-panel").clientWidth - 40);
  const make = (title, values, label, format, into) => new uPlot({
    title, width, height: 180,
    // the window's own span; one point (two snapshots) still gets a readable axis, a minute either side
    scales: { x: { time: true, auto: false, range: () => [lo, hi] } },
    series: [{}, { label, stroke: "#2a6fdb", value: (u, v) => (v === null ? "–" : format(v)) }],
    axes: [{}, { values: (u, ticks) => ticks.map(format), size: 90 }],
  }, [times, values], $(into));
  state.charts.push(make("packets/s", answer.rates.map((r) => r.packets_per_s), "packets/s", (v) => si(v, "pkt/s"), "chart-packets"));
  state.charts.push(make("bit/s", answer.rates.map((r) => r.bytes_per_s), "rate", (v) => si(v * 8, "bit/s"), "chart-bytes"));
  $("chart-packets").dataset.points = String(times.length);
}

function filters(prefix) {
  const body = {};
  for (const [key, id] of [["src_ip", "src-ip"], ["dst_ip", "dst-ip"], ["src_port", "src-port"], ["dst_port", "dst-port"], ["protocol", "protocol"]]) {
    const value = $(`${prefix}-${id}`).value.trim();
    if (value) body[key] = value;
  }
  return body;
}

async function loadTop() {
  await loadTopPanel();
  $("top-panel").dataset.loaded = String(Number($("top-panel").dataset.loaded || 0) + 1);
}
async function loadTopPanel() {
  $("top-panel").dataset.rows = "0";
  const body = $("top-table").tBodies[0];
  body.replaceChildren();
  const task = $("top-task").value;
  $("top-totals").textContent = "";
  if (!task) { setEmpty("top-empty", state.status.stored_tasks ? "no exact task is configured" : noSnapshotText()); return; }
  const chosen = filters("f");
  const [top, totals] = await Promise.all([
    api("top", windowed({ task, by: $("top-by").value, limit: 20, ...chosen })),
    api("totals", windowed({ task, ...chosen })),
  ]);
  const total = totals.totals.find((t) => t.task === task) || { packets: 0, bytes: 0, flows: 0 };
  const line = $("top-totals");
  line.textContent = `Total: ${si(total.packets)} packets, ${bytesText(total.bytes)}, ${si(total.flows)} flows`;
  Object.assign(line.dataset, { packets: total.packets, bytes: total.bytes, flows: total.flows });
  if (!top.flows.length) {
    setEmpty("top-empty", !state.status.stored_tasks ? noSnapshotText()
      : Object.keys(chosen).length ? "no flow matches these filters in this window" : "no traffic in this window");
    return;
  }
  setEmpty("top-empty", "");
  $("top-panel").dataset.rows = String(top.flows.length);
  for (const flow of top.flows) {
    const row = body.insertRow();
    cell(row, flow.src_ip === null ? "–" : fullIPv6(flow.src_ip), flow.src_ip ?? "");
    cell(row, flow.dst_ip === null ? "–" : fullIPv6(flow.dst_ip), flow.dst_ip ?? "");
    cell(row, flow.src_port ?? "–", flow.src_port ?? "");
    cell(row, flow.dst_port ?? "–", flow.dst_port ?? "");
    cell(row, protoText(flow.protocol), flow.protocol ?? "");
    cell(row, si(flow.packets), flow.packets, true);
    cell(row, bytesText(flow.bytes), flow.bytes, true);
  }
}

const HITTER_TYPES = { count_min: [[0, "by packets", si], [1, "by bytes", bytesText]] };
const SPREAD = [[2, "super-spreaders (distinct peers)", si]];
async function loadHitters() {
  const box = $("hitters");
  box.replaceChildren();
  const sketches = state.tasks.filter((t) => t.kind.startsWith("sketch"));
  if (!sketches.length) {
    const p = document.createElement("p"); p.className = "empty";
    p.textContent = state.status.stored_tasks ? "no sketch task is configured" : noSnapshotText();
    box.append(p); return;
  }
  for (const task of sketches) {
    const algorithm = task.kind.split(":")[1] || "";
    const kinds = HITTER_TYPES[algorithm] || (algorithm.includes("spread") ? SPREAD : [[0, "by packets", si]]);
    for (const [type, title, format] of kinds) {
      const answer = await api("hitters", windowed({ task: task.name, type, limit: 10 }));
      const part = document.createElement("div");
      part.className = "hitter-list"; part.dataset.task = task.name; part.dataset.type = String(type);
      const h = document.createElement("h3"); h.textContent = `${task.name} ${title}`; part.append(h);
      if (!answer.hitters.length) {
        const p = document.createElement("p"); p.className = "empty";
        p.textContent = state.status.stored_tasks ? "no hitter reported in this window" : noSnapshotText();
        part.append(p);
      } else {
        const table = document.createElement("table");
        for (const hitter of answer.hitters) {
          const row = table.insertRow();
          cell(row, fullIPv6(hitter.flow), hitter.flow);
          cell(row, format(hitter.value), hitter.value, true);
        }
        part.append(table);
      }
      box.append(part);
    }
  }
}

async function runTrace(event) {
  if (event) event.preventDefault();
  const out = $("trace-result");
  const chosen = filters("t");
  const names = { src_ip: "SrcIP", dst_ip: "DstIP", src_port: "SrcPort", dst_port: "DstPort", protocol: "Protocol" };
  const keys = Object.fromEntries(Object.entries(chosen).map(([k, v]) => [names[k], v]));
  if (!Object.keys(keys).length) { out.textContent = "Give at least one key field and press Trace."; out.className = "empty"; return; }
  try {
    const answer = await api("trace", windowed({ task: $("trace-task").value, keys }));
    out.className = answer.found ? "" : "empty";
    out.textContent = answer.found
      ? `first seen ${timeText(answer.first_seen)}, last seen ${timeText(answer.last_seen)}: ${si(answer.packets)} packets, ${bytesText(answer.bytes)}`
      : answer.message;
    if (answer.found) Object.assign(out.dataset, { packets: answer.packets, bytes: answer.bytes });
  } catch (error) { showError(error); }
}

async function loadAlerts() {
  const body = $("alerts-table").tBodies[0];
  body.replaceChildren();
  $("alerts-table").hidden = true;
  if (!state.status.alerting.configured) { $("alerts-text").textContent = "Alerting is not configured."; return; }
  // active alerts (firing first) then the resolved ones, newest first: the alerter's state now,
  // not the window's (an alert's times are in its row)
  const answer = await api("alerts", { state: "all", limit: 50 });
  $("alerts-panel").dataset.alerts = String(answer.alerts.length);
  if (!answer.alerts.length) { $("alerts-text").textContent = "No alert has fired or is pending."; return; }
  const firing = answer.alerts.filter((a) => a.status === "firing").length;
  $("alerts-text").textContent = `${firing} firing, ${answer.alerts.length - firing} pending or resolved`;
  $("alerts-table").hidden = false;
  for (const alert of answer.alerts) {
    const row = body.insertRow();
    row.className = `alert-${alert.status}`;
    row.dataset.id = alert.id;
    cell(row, alert.status);
    cell(row, alert.severity);
    cell(row, alert.rule);
    cell(row, alert.task || "–");
    cell(row, alert.key || "–");
    cell(row, si(alert.value), alert.value, true);
    cell(row, alert.condition);
    cell(row, timeText(alert.fired_at ?? alert.pending_since));
    cell(row, alert.resolved_at === null ? "–" : timeText(alert.resolved_at));
  }
}

async function refresh() {
  $("error").hidden = true;
  showWindow();
  try {
    state.status = await api("status");
    state.tasks = (await api("tasks")).tasks;
    const exact = state.tasks.filter((t) => t.kind === "exact");
    for (const id of ["traffic-task", "top-task", "trace-task"]) fillSelect($(id), exact);
    await Promise.all([loadAlerts(), loadTraffic(), loadTop(), loadHitters()]);
    // every panel is in the DOM; the mark lands at the frame that paints them (bench/console.py
    // measures the page load as the first byte → this mark)
    if (!document.body.dataset.loaded) requestAnimationFrame(() => performance.mark("netspectra-panels-rendered"));
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (error) { showError(error); }
}

$("range").addEventListener("submit", (event) => { event.preventDefault(); applyPreset(); refresh(); });
$("range-preset").addEventListener("change", () => { if ($("range-preset").value !== "custom") { applyPreset(); refresh(); } });
$("top-filters").addEventListener("submit", (event) => { event.preventDefault(); loadTop().catch(showError); });
$("traffic-task").addEventListener("change", () => loadTraffic().catch(showError));
$("top-task").addEventListener("change", () => loadTop().catch(showError));
$("top-by").addEventListener("change", () => loadTop().catch(showError));
$("trace-form").addEventListener("submit", runTrace);
if (REPORT) {
  // the whole capture, as analyzed: the controls that would ask the api for anything else are off
  $("range").hidden = true;
  for (const id of ["f-src-ip", "f-dst-ip", "f-src-port", "f-dst-port", "f-protocol", "top-apply"]) $(id).disabled = true;
  for (const input of $("trace-form").elements) input.disabled = true;
  $("trace-result").textContent = "Flow traces need the live console (this is an offline report).";
} else if (!readHash()) { $("range-preset").value = "all"; applyPreset(); }
refresh();
