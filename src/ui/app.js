// promfed's web UI: a query page (instant and range, table and graph), the
// stores page and the cache page. Plain JavaScript, no dependencies; every
// request goes to promfed's own API on the same origin.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

/// A series' labels as Prometheus prints them: name{a="b", ...}.
function seriesName(metric) {
  const name = metric.__name__ || "";
  const labels = Object.keys(metric)
    .filter((k) => k !== "__name__")
    .sort()
    .map((k) => `${k}="${metric[k]}"`);
  return labels.length ? `${name}{${labels.join(", ")}}` : name || "{}";
}

/// Unix seconds from what the user typed (seconds or a date), or null.
function toSeconds(text) {
  const t = text.trim();
  if (t === "") return null;
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? NaN : ms / 1000;
}

function isoTime(sec) {
  return new Date(sec * 1000).toISOString().replace(".000Z", "Z");
}

async function api(path, params) {
  const body = new URLSearchParams(params || {});
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
    credentials: "same-origin",
  });
  let json = null;
  try {
    json = await resp.json();
  } catch (e) {
    json = { status: "error", error: `HTTP ${resp.status}: not JSON` };
  }
  return { resp, json };
}

async function apiGet(path) {
  const resp = await fetch(path, { credentials: "same-origin" });
  return resp.json();
}

// ---------- query page ----------

function syncMode() {
  const range = $("#mode").value === "range";
  document.querySelectorAll(".range-only").forEach((e) => (e.hidden = !range));
  document.querySelectorAll(".instant-only").forEach((e) => (e.hidden = range));
}

function showError(msg) {
  const e = $("#error");
  e.textContent = msg;
  e.hidden = !msg;
}

async function runQuery(ev) {
  if (ev) ev.preventDefault();
  const query = $("#expr").value;
  const range = $("#mode").value === "range";
  const params = { query };
  showError("");
  $("#warnings").replaceChildren();
  $("#result tbody").replaceChildren();
  $("#graph-box").hidden = true;
  $("#status").textContent = "running…";
  $("#backends").textContent = "";
  let path = "/api/v1/query";
  if (range) {
    path = "/api/v1/query_range";
    let end = toSeconds($("#end").value);
    if (end === null) end = Date.now() / 1000;
    let start = toSeconds($("#start").value);
    if (start === null) start = end - 3600;
    if (Number.isNaN(start) || Number.isNaN(end)) {
      showError("start and end must be Unix seconds or a date (RFC3339)");
      $("#status").textContent = "";
      return;
    }
    let step = $("#step").value.trim();
    if (step === "") step = String(Math.max(1, Math.floor((end - start) / 250)));
    Object.assign(params, { start: String(start), end: String(end), step });
  } else if ($("#time").value.trim() !== "") {
    params.time = $("#time").value.trim();
  }
  const began = performance.now();
  let out;
  try {
    out = await api(path, params);
  } catch (e) {
    $("#status").textContent = "";
    showError(`request failed: ${e}`);
    return;
  }
  const took = Math.round(performance.now() - began);
  const { resp, json } = out;
  for (const w of json.warnings || []) $("#warnings").append(el("li", { class: "warning" }, w));
  for (const w of json.infos || []) $("#warnings").append(el("li", { class: "info" }, w));
  if (json.status !== "success") {
    $("#status").textContent = `${took} ms`;
    showError(`${json.errorType || "error"}: ${json.error || resp.status}`);
    return;
  }
  const cache = resp.headers.get("x-promfed-cache");
  const backends = resp.headers.get("x-promfed-backends");
  $("#backends").textContent = backends
    ? `answered by: ${backends.split(",").join(", ")}`
    : cache === "hit" || cache === "coalesced"
      ? "answered from the cache"
      : "no backend was read";
  const data = json.data;
  const n = Array.isArray(data.result) && data.resultType !== "scalar" && data.resultType !== "string"
    ? data.result.length : 1;
  $("#status").textContent =
    `${data.resultType}: ${n} ${n === 1 ? "result" : "results"} · ${took} ms` + (cache ? ` · cache: ${cache}` : "");
  renderTable(data);
  if (data.resultType === "matrix") renderGraph(data.result);
}

function renderTable(data) {
  const body = $("#result tbody");
  const row = (name, value) =>
    body.append(el("tr", {}, el("td", { class: "labels" }, name), el("td", { class: "value" }, value)));
  switch (data.resultType) {
    case "vector":
      for (const s of data.result) row(seriesName(s.metric), s.value[1]);
      break;
    case "matrix":
      for (const s of data.result) {
        const last = s.values[s.values.length - 1];
        row(seriesName(s.metric), last ? `${last[1]} @${last[0]} (${s.values.length} points)` : "");
      }
      break;
    case "scalar":
    case "string":
      row(`${data.resultType}`, data.result[1]);
      break;
  }
}

const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#975a16", "#2c7a7b", "#c53030"];

/// Draws every series of a matrix as a line over a shared time axis.
function renderGraph(result) {
  const svg = $("#graph");
  svg.replaceChildren();
  $("#legend").replaceChildren();
  $("#graph-box").hidden = false;
  const W = Number(svg.getAttribute("width"));
  const H = Number(svg.getAttribute("height"));
  const m = { l: 64, r: 12, t: 10, b: 28 };
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity;
  for (const s of result)
    for (const [t, vs] of s.values) {
      const v = Number(vs);
      t0 = Math.min(t0, t);
      t1 = Math.max(t1, t);
      if (Number.isFinite(v)) {
        v0 = Math.min(v0, v);
        v1 = Math.max(v1, v);
      }
    }
  if (!Number.isFinite(t0)) return;
  if (!Number.isFinite(v0)) { v0 = 0; v1 = 1; }
  if (v0 === v1) { v0 -= 1; v1 += 1; }
  if (t0 === t1) { t0 -= 1; t1 += 1; }
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (W - m.l - m.r);
  const y = (v) => H - m.b - ((v - v0) / (v1 - v0)) * (H - m.t - m.b);
  for (let i = 0; i <= 4; i++) {
    const v = v0 + ((v1 - v0) * i) / 4;
    svg.append(svgEl("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    const label = svgEl("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = Number(v.toPrecision(4)).toString();
    svg.append(label);
    const t = t0 + ((t1 - t0) * i) / 4;
    const tl = svgEl("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" });
    tl.textContent = isoTime(t).slice(11, 19);
    svg.append(tl);
  }
  svg.append(svgEl("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
  svg.append(svgEl("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  result.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "";
    let pen = "M";
    for (const [t, vs] of s.values) {
      const v = Number(vs);
      if (!Number.isFinite(v)) { pen = "M"; continue; }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    const path = svgEl("path", { class: "series", d: d.trim(), stroke: color });
    const title = svgEl("title");
    title.textContent = seriesName(s.metric);
    path.append(title);
    svg.append(path);
    const swatch = el("i");
    swatch.style.background = color;
    $("#legend").append(el("span", {}, swatch, seriesName(s.metric)));
  });
}

// ---------- stores page ----------

let storesSeq = 0;

async function loadStores(probe) {
  const seq = ++storesSeq;
  $("#stores-status").textContent = probe ? "checking…" : "";
  let json;
  try {
    json = await apiGet(probe ? "/api/v1/stores?probe=true" : "/api/v1/stores");
  } catch (e) {
    if (seq === storesSeq) $("#stores-status").textContent = `request failed: ${e}`;
    return;
  }
  // A later load (e.g. "Check now" during the first) has the newer word.
  if (seq !== storesSeq) return;
  const body = $("#stores tbody");
  body.replaceChildren();
  let up = 0, total = 0;
  for (const [kind, stores] of Object.entries(json.data || {})) {
    for (const s of stores) {
      total++;
      const isUp = s.up === true || (s.up === undefined && s.lastCheck && !s.lastError);
      if (isUp) up++;
      const state = s.lastCheck ? (isUp ? "up" : "down") : "unknown";
      const labels = (s.labelSets || [])
        .map((ls) => "{" + Object.entries(ls).map(([k, v]) => `${k}="${v}"`).join(", ") + "}")
        .join(" ");
      body.append(
        el("tr", { "data-name": s.name },
          el("td", {}, kind),
          el("td", { class: "name" }, s.name),
          el("td", { class: "labels" }, labels),
          el("td", { class: `state ${state}` }, state),
          el("td", {}, s.lastCheck || "never"),
          el("td", { class: "latency" }, s.latencyMs == null ? "" : `${s.latencyMs.toFixed(1)} ms`),
          el("td", { class: "last-error" }, s.lastError || "")));
    }
  }
  $("#stores-status").textContent = `${up} of ${total} up · shown ${new Date().toISOString()}`;
}

// ---------- cache page ----------

async function loadCache() {
  const json = await apiGet("/api/v1/status/cache");
  const d = json.data || {};
  if (!d.enabled) {
    $("#cache-summary").textContent = "the cache is off (no `cache:` in the config)";
    return;
  }
  $("#cache-summary").textContent = `grid ${d.gridSeconds} s · store: ${d.store}`;
  const kinds = {};
  for (const r of d.requests) (kinds[r.kind] = kinds[r.kind] || {})[r.result] = r.value;
  for (const r of d.evaluations) (kinds[r.kind] = kinds[r.kind] || {}).evaluations = r.value;
  const body = $("#cache-requests tbody");
  body.replaceChildren();
  for (const [kind, c] of Object.entries(kinds)) {
    body.append(el("tr", { "data-kind": kind }, el("td", {}, kind),
      ...["hit", "miss", "coalesced", "partial", "bypass", "evaluations"].map((k) =>
        el("td", { class: k }, c[k] || 0))));
  }
  $("#warm").replaceChildren(...d.warmQueries.map((q) => el("li", { class: "query" }, q)));
  if (d.warmQueries.length === 0) $("#warm").append(el("li", {}, "none configured"));
  const cells = $("#cells tbody");
  cells.replaceChildren();
  for (const c of d.cells)
    cells.append(el("tr", {}, el("td", { class: "query" }, c.query), el("td", {}, isoTime(c.time)),
      el("td", { class: "evaluations" }, c.evaluations), el("td", {}, isoTime(c.lastEvaluation))));
}

// ---------- analyze page ----------

async function runAnalysis(ev) {
  if (ev) ev.preventDefault();
  const out = $("#analyze-phase");
  const err = $("#analyze-error");
  err.hidden = true;
  $("#measurements tbody").replaceChildren();
  out.textContent = "running…";
  out.className = "status";
  let resp, json;
  try {
    resp = await fetch("/ui/analyze", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      credentials: "same-origin",
      body: new URLSearchParams({
        template: $("#template").value,
        args: $("#args").value,
        from: $("#from").value.trim(),
        to: $("#to").value.trim(),
      }),
    });
    json = await resp.json();
  } catch (e) {
    json = { status: "error", error: `request failed: ${e}` };
  }
  if (json.status !== "success") {
    out.textContent = "";
    err.textContent = json.error || `HTTP ${resp && resp.status}`;
    err.hidden = false;
    return;
  }
  const run = json.data.run;
  out.textContent = `phase: ${run.phase}` + (run.message ? ` — ${run.message}` : "");
  out.className = `status phase-${run.phase}`;
  out.dataset.phase = run.phase;
  const body = $("#measurements tbody");
  for (const m of json.data.measurements)
    body.append(el("tr", { "data-at-ms": m.at_ms },
      el("td", {}, new Date(m.at_ms).toISOString()),
      el("td", {}, m.metric),
      el("td", { class: `phase ${m.phase}` }, m.phase),
      el("td", { class: "value" }, m.value),
      el("td", {}, m.message + (m.warnings && m.warnings.length ? ` (warnings: ${m.warnings.join("; ")})` : ""))));
}

// ---------- navigation ----------

let refresh = null;

function show() {
  const page = (location.hash.match(/^#\/(\w+)/) || [null, "query"])[1];
  document.querySelectorAll(".page").forEach((p) => (p.hidden = p.id !== `page-${page}`));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  clearInterval(refresh);
  if (page === "stores") {
    loadStores(false);
    refresh = setInterval(() => loadStores(false), 10000);
  } else if (page === "cache") {
    loadCache();
  }
}

$("#query-form").addEventListener("submit", runQuery);
$("#mode").addEventListener("change", syncMode);
$("#probe").addEventListener("click", () => loadStores(true));
$("#cache-refresh").addEventListener("click", loadCache);
$("#analyze-form").addEventListener("submit", runAnalysis);
$("#expr").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    runQuery();
  }
});
window.addEventListener("hashchange", show);
syncMode();
show();
