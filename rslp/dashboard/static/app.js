// rslp dashboard: polls api/view and redraws; never writes anything.
//
// Every string in the view comes from a job root or a message: it reaches the page only
// as text (textContent, text nodes, canvas fillText), never as markup.
"use strict";

const POLL_MS = 2000;
const STEP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                      "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);

// An element with text children only: strings become text nodes, never HTML.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "title") node.title = value;
    else if (key === "href") node.href = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replaceRows(table, headers, rows) {
  const head = el("tr", null, ...headers.map(([text, cls]) => el("th", cls ? { class: cls } : null, text)));
  table.replaceChildren(el("thead", null, head), el("tbody", null, ...rows));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.round(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
}

const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "-");
const fixed = (x, digits) => (x === null || x === undefined ? "-" : Number(x).toFixed(digits));

function legend(container, items) {
  container.replaceChildren(...items.map(([label, colour]) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    return el("span", null, swatch, label);
  }));
}

// -- one job -------------------------------------------------------------------------

function renderSteps(view) {
  const states = view.task_states;
  const rows = view.steps.map((s) => {
    const bar = el("div", { class: "bar", title: states.map((k) => `${k}: ${s.counts[k]}`).join(", ") });
    for (const k of states) {
      if (!s.counts[k]) continue;
      const seg = el("span", { "data-state": k });
      seg.style.width = `${(100 * s.counts[k]) / Math.max(s.total, 1)}%`;
      seg.style.background = view.task_colours[k];
      bar.append(seg);
    }
    const state = s.remaining === 0 && s.counts.done === s.total ? "done" : s.counts.dead ? "dead" : "";
    return el("tr", { "data-step": s.step, "data-state": state || "active" },
      el("td", null, s.step), el("td", null, s.topic), el("td", null, bar),
      el("td", { class: "num" }, `${s.counts.done}/${s.total}`),
      ...["running", "queued", "failed", "dead"].map((k) => el("td", { class: "num" }, s.counts[k])),
      el("td", { class: "num" }, fixed(s.rate, 1)),
      el("td", { class: "num" }, s.remaining ? duration(s.eta_seconds) : "done"));
  });
  replaceRows($("steps"), [["step"], ["topic"], ["progress"], ["done", "num"], ["running", "num"],
    ["queued", "num"], ["failed", "num"], ["dead", "num"], ["done/min", "num"], ["eta", "num"]], rows);
  legend($("state-legend"), states.map((k) => [k, view.task_colours[k]]));
  let eta;
  if (view.finished) eta = view.dead_total ? "nothing left to run; some tasks are dead" : "finished: every task is done";
  else if (view.eta_seconds === null) {
    eta = `eta unknown: no task of ${view.eta_unknown_steps.join(", ")} done in the last ${duration(view.rate_window_seconds)}`;
  }
  else eta = `eta ${duration(view.eta_seconds)}` + (view.eta_unknown_steps.length ? ` at least (no throughput yet in ${view.eta_unknown_steps.join(", ")})` : "");
  $("eta").textContent = eta;
}

// The map: one quadrilateral per partition, from the outlines fetched once
// (float32 x, y of four corners each, WGS84); below six pixels, an axis-aligned square.
const map = { corners: null, count: 0, codes: "", colours: {}, labels: {}, zoom: 1, dx: 0, dy: 0, fit: null };

async function loadLayout(count) {
  const response = await fetch("api/layout");
  if (!response.ok) return;
  map.corners = new Float32Array(await response.arrayBuffer());
  map.count = count;
  fitMap();
}

function fitMap() {
  const c = map.corners;
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
  for (let i = 0; i < c.length; i += 2) {
    if (Number.isNaN(c[i])) continue;
    w = Math.min(w, c[i]); e = Math.max(e, c[i]); s = Math.min(s, c[i + 1]); n = Math.max(n, c[i + 1]);
  }
  if (!Number.isFinite(w)) { map.fit = null; return; }
  const stretch = 1 / Math.max(Math.cos(((s + n) / 2) * Math.PI / 180), 0.01); // keep tiles' shape
  const canvas = $("map");
  const margin = 8;
  const scale = Math.min((canvas.width - 2 * margin) / Math.max(e - w, 1e-9),
                         (canvas.height - 2 * margin) / Math.max((n - s) * stretch, 1e-9));
  map.fit = { w, n, scale, stretch, margin };
  map.zoom = 1; map.dx = 0; map.dy = 0;
}

// Partition i's corners on the canvas: [x0, y0, ..., x3, y3].
function screenCorners(i) {
  const f = map.fit, c = map.corners, k = f.scale * map.zoom, out = new Array(8);
  for (let j = 0; j < 4; j++) {
    out[2 * j] = f.margin + (c[8 * i + 2 * j] - f.w) * k + map.dx;
    out[2 * j + 1] = f.margin + (f.n - c[8 * i + 2 * j + 1]) * k * f.stretch + map.dy;
  }
  return out;
}

function drawMap() {
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!map.corners || !map.fit) return;
  const codes = map.codes;
  for (const [code, colour] of Object.entries(map.colours)) { // one path per colour: fast at 100k
    ctx.fillStyle = colour;
    ctx.beginPath();
    for (let i = 0; i < codes.length; i++) {
      if (codes[i] !== code || Number.isNaN(map.corners[8 * i])) continue;
      const p = screenCorners(i);
      const x0 = Math.min(p[0], p[2], p[4], p[6]), x1 = Math.max(p[0], p[2], p[4], p[6]);
      const y0 = Math.min(p[1], p[3], p[5], p[7]), y1 = Math.max(p[1], p[3], p[5], p[7]);
      if (x1 < 0 || y1 < 0 || x0 > canvas.width || y0 > canvas.height) continue;
      if (x1 - x0 < 6 || y1 - y0 < 6) { // too small for its skew to show: an axis-aligned square, no anti-aliasing
        ctx.rect(Math.floor(x0), Math.floor(y0), Math.max(Math.round(x1 - x0), 1), Math.max(Math.round(y1 - y0), 1));
        continue;
      }
      ctx.moveTo(p[0], p[1]); ctx.lineTo(p[2], p[3]); ctx.lineTo(p[4], p[5]); ctx.lineTo(p[6], p[7]); ctx.closePath();
    }
    ctx.fill();
  }
  if (map.count <= 5000) { // outlines while tiles are big enough to show them
    ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = 0; i < map.count; i++) {
      if (Number.isNaN(map.corners[8 * i])) continue;
      const p = screenCorners(i);
      ctx.moveTo(p[0], p[1]); ctx.lineTo(p[2], p[3]); ctx.lineTo(p[4], p[5]); ctx.lineTo(p[6], p[7]); ctx.closePath();
    }
    ctx.stroke();
  }
}

function partitionAt(px, py) {
  if (!map.corners || !map.fit) return -1;
  for (let i = 0; i < map.count; i++) {
    if (Number.isNaN(map.corners[8 * i])) continue;
    const p = screenCorners(i);
    if (px >= Math.min(p[0], p[2], p[4], p[6]) - 0.5 && px <= Math.max(p[0], p[2], p[4], p[6]) + 0.5 &&
        py >= Math.min(p[1], p[3], p[5], p[7]) - 0.5 && py <= Math.max(p[1], p[3], p[5], p[7]) + 0.5) return i;
  }
  return -1;
}

function zoomAt(factor, px, py) {
  map.zoom *= factor;
  map.dx = px - (px - map.dx) * factor;
  map.dy = py - (py - map.dy) * factor;
  drawMap();
}

function canvasPoint(event) {
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (canvas.width / rect.width), (event.clientY - rect.top) * (canvas.height / rect.height)];
}

function wireMap() {
  const canvas = $("map");
  let drag = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomAt(event.deltaY < 0 ? 1.25 : 0.8, ...canvasPoint(event));
  }, { passive: false });
  canvas.addEventListener("mousedown", (event) => { drag = canvasPoint(event); canvas.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { drag = null; canvas.style.cursor = "grab"; });
  canvas.addEventListener("mousemove", (event) => {
    const [x, y] = canvasPoint(event);
    if (drag) {
      map.dx += x - drag[0]; map.dy += y - drag[1]; drag = [x, y];
      drawMap();
      return;
    }
    const i = partitionAt(x, y);
    // Partition ids are "p" and the plan index, 5 digits at least (rslp.jobroot.partition_id).
    $("map-hover").textContent = i < 0 ? "" : `p${String(i).padStart(5, "0")}: ${map.labels[map.codes[i]] || "?"}`;
  });
  canvas.addEventListener("dblclick", (event) => zoomAt(2, ...canvasPoint(event)));
  $("zoom-in").addEventListener("click", () => zoomAt(1.5, canvas.width / 2, canvas.height / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, canvas.width / 2, canvas.height / 2));
  $("zoom-reset").addEventListener("click", () => { fitMap(); drawMap(); });
}

async function renderMap(view) {
  const p = view.partitions;
  map.codes = p.states;
  map.colours = Object.fromEntries(p.legend.map((l) => [l.code, l.colour]));
  map.labels = Object.fromEntries(p.legend.map((l) => [l.code, l.label]));
  if (!map.corners || map.count !== p.count) await loadLayout(p.count);
  drawMap();
  const counts = {};
  for (const c of p.states) counts[c] = (counts[c] || 0) + 1;
  legend($("map-legend"), p.legend.map((l) => [`${l.label}: ${counts[l.code] || 0}`, l.colour]));
  $("map-summary").textContent = `${counts.d || 0}/${p.count} done`;
}

// A line chart on a canvas: series of [x, y] points, x as epoch seconds.
function lineChart(canvas, series, { xLabels, threshold } = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 10, T = 10, B = 28;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const points = series.flatMap((s) => s.points).filter((p) => p[1] !== null);
  if (!points.length) {
    ctx.fillStyle = "#666"; ctx.font = "13px sans-serif"; ctx.fillText("nothing yet", L, H / 2);
    return;
  }
  const x0 = Math.min(...points.map((p) => p[0])), x1 = Math.max(...points.map((p) => p[0]));
  const highest = Math.max(threshold || 0, ...points.map((p) => p[1])) || 1;
  const magnitude = 10 ** Math.floor(Math.log10(highest / 4));
  const tick = [1, 2, 5, 10].map((m) => m * magnitude).find((t) => 4 * t >= highest); // 4 round ticks
  const top = 4 * tick;
  const sx = (x) => L + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (W - L - R);
  const sy = (y) => H - B - (y / top) * (H - T - B);
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#666"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = (top * k) / 4;
    ctx.beginPath(); ctx.moveTo(L, sy(y)); ctx.lineTo(W - R, sy(y)); ctx.stroke();
    ctx.fillText(String(Number(y.toPrecision(3))), 4, sy(y) + 4);
  }
  if (xLabels) xLabels.forEach(([x, text]) => ctx.fillText(text, sx(x) - 10, H - 10));
  else { ctx.fillText(clock(x0), L, H - 10); ctx.fillText(clock(x1), W - R - 60, H - 10); }
  if (threshold !== undefined && threshold !== null) {
    ctx.strokeStyle = "#d62728"; ctx.setLineDash([5, 4]);
    ctx.beginPath(); ctx.moveTo(L, sy(threshold)); ctx.lineTo(W - R, sy(threshold)); ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    ctx.strokeStyle = s.colour; ctx.fillStyle = s.colour; ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (y === null) { started = false; continue; }
      if (started) ctx.lineTo(sx(x), sy(y)); else ctx.moveTo(sx(x), sy(y));
      started = true;
    }
    ctx.stroke();
    for (const [x, y] of s.points) if (y !== null) ctx.fillRect(sx(x) - 2, sy(y) - 2, 4, 4);
  }
}

function renderThroughput(view) {
  const series = view.steps.map((s, i) => ({ points: s.throughput, colour: STEP_COLOURS[i % STEP_COLOURS.length] }));
  lineChart($("throughput"), series);
  legend($("throughput-legend"), view.steps.map((s, i) => [s.step, STEP_COLOURS[i % STEP_COLOURS.length]]));
}

function renderWorkers(view) {
  const now = view.time;
  const rows = view.workers.map((w) => el("tr", { class: w.stalled ? "stalled" : "" },
    el("td", null, w.worker), el("td", null, w.step), el("td", null, w.partition),
    el("td", null, w.since ? `${clock(w.since)} (${duration(now - w.since)})` : "-"),
    el("td", { class: "num" }, `${duration(w.heartbeat_age)} ago`),
    el("td", null, w.stalled ? "STALLED: no heartbeat for two leases" : w.handed_back ? "handed back" : "running")));
  if (!rows.length) rows.push(el("tr", null, el("td", { colspan: "6", class: "note" }, "no task is running")));
  replaceRows($("workers"), [["worker"], ["step"], ["partition"], ["running since (seen)"],
    ["last heartbeat", "num"], ["state"]], rows);
  const alive = new Set(view.workers.filter((w) => !w.stalled && !w.handed_back).map((w) => w.worker));
  const stalled = view.workers.filter((w) => w.stalled).length;
  $("workers-summary").textContent = `${alive.size} alive` + (stalled ? `, ${stalled} stalled tasks` : "");
}

function renderBacklog(view) {
  const show = (x) => (x === null || x === undefined ? "-" : x);
  const rows = view.backlog.map((b) => el("tr", null, el("td", null, b.topic), el("td", null, b.steps.join(", ")),
    el("td", { class: "num" }, show(b.backlog)), el("td", { class: "num" }, show(b.in_flight)),
    el("td", { class: "num" }, duration(b.oldest_unacked_seconds)), el("td", { class: "num" }, show(b.dead_letters))));
  replaceRows($("backlog"), [["topic"], ["steps"], ["backlog", "num"], ["in flight", "num"],
    ["oldest unacked", "num"], ["dead letters", "num"]], rows);
  const notes = [view.queue_note];
  if (view.lost) notes.push(`${view.lost} queued tasks but the queue is empty: their messages are lost; rerun rslp write-jobs with the same arguments`);
  $("queue-note").textContent = notes.filter(Boolean).join(" ");
}

function renderFailures(view) {
  replaceRows($("failures"), [["count", "num"], ["state"], ["step"], ["kind"], ["reason"], ["e.g."]],
    view.failures.map((g) => el("tr", null, el("td", { class: "num" }, g.count), el("td", { class: `state-${g.state}` }, g.state),
      el("td", null, g.step), el("td", null, g.kind), el("td", { class: "reason" }, g.reason), el("td", null, g.example))));
  const sampled = view.failures_read === view.failures_total ? "" : `, counted in a sample of ${view.failures_read}`;
  $("failures-summary").textContent = view.failures_total
    ? `${view.failures_total} failed or dead tasks, grouped by reason${sampled}` : "none";
  replaceRows($("dead"), [["step"], ["partition"], ["task id"], ["kind"], ["reason"]],
    view.dead.map((d) => el("tr", { class: "dead-letter" }, el("td", null, d.step), el("td", null, d.partition),
      el("td", null, d.task_id.slice(0, 12)), el("td", null, d.kind), el("td", { class: "reason" }, d.reason))));
  $("dead-summary").textContent = view.dead_total
    ? `${view.dead_total} dead tasks` + (view.dead_total > view.dead.length ? ` (first ${view.dead.length} shown)` : "")
    : "none";
  const commands = $("commands");
  if (!view.dead_total) { commands.replaceChildren(); return; }
  commands.replaceChildren(
    el("p", { class: "note" }, "after fixing the cause, list and replay them from a shell (this page changes nothing):"),
    el("pre", { class: "command" }, `${view.commands.list}\n${view.commands.replay}`));
}

let thumbnailShown = false;
function renderDone(view) {
  const done = view.finished && (view.outputs.length || view.observe);
  $("done-row").hidden = !done;
  if (!done) return;
  const size = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`);
  $("outputs").replaceChildren(...view.outputs.map((o) =>
    el("li", null, el("a", { href: `files/${encodeURIComponent(o.name)}` }, o.name), ` (${size(o.bytes)})`)));
  if (view.thumbnail && !thumbnailShown) {
    $("thumbnail").src = `thumbnail.png?t=${Math.round(view.time)}`;
    $("thumbnail").hidden = false;
    thumbnailShown = true;
  }
  const o = view.observe;
  if (!o) return;
  const names = [...new Set([...Object.keys(o.distribution || {}), ...Object.keys(o.reference || {})])];
  $("distribution").replaceChildren(...names.map((name) => {
    const fill = el("div", { class: "fill" }); fill.style.width = `${100 * ((o.distribution || {})[name] || 0)}%`;
    const ref = el("div", { class: "ref" }); ref.style.width = `${100 * ((o.reference || {})[name] || 0)}%`;
    const value = `${fixed((o.distribution || {})[name], 3)}` + (o.reference ? ` (ref ${fixed(o.reference[name], 3)})` : "");
    return el("div", { class: "dist-row" }, el("span", { class: "name", title: name }, name),
      el("div", { class: "track" }, fill, o.reference ? ref : null), el("span", { class: "value" }, value));
  }));
  $("drift").textContent = o.drift === null ? `${o.pixels} pixels, no reference`
    : `drift ${fixed(o.drift, 3)} (${o.metric})` + (o.threshold === null ? "" : `, threshold ${o.threshold}`);
  $("observe-warning").hidden = !o.warning;
  $("observe-warning").textContent = o.warning || "";
}

async function renderJob(view) {
  $("title").textContent = `job ${view.job_id}`;
  $("meta").textContent = `root ${view.job_root} · queue ${view.queue || "-"} · read at ${clock(view.time)} in ${view.refresh_seconds}s`;
  renderSteps(view);
  renderThroughput(view);
  renderWorkers(view);
  renderBacklog(view);
  renderFailures(view);
  renderDone(view);
  await renderMap(view);
}

// -- a rolling root ------------------------------------------------------------------

function renderRoot(view) {
  $("title").textContent = "rolling root";
  $("meta").textContent = `root ${view.root} · read at ${clock(view.time)} in ${view.refresh_seconds}s`;
  replaceRows($("periods"), [["period"], ["time range"], ["tasks", "num"], ["status"], ["drift/ref", "num"],
    ["drift/prev", "num"], ["warning"]], view.periods.map((p) => el("tr", null,
      el("td", null, p.id), el("td", null, `${p.start || "-"} .. ${p.end || "-"}`),
      el("td", { class: "num" }, `${p.done}/${p.total}`), el("td", { class: `state-${p.status}` }, p.status),
      el("td", { class: "num" }, fixed(p.drift_reference, 3)), el("td", { class: "num" }, fixed(p.drift_previous, 3)),
      el("td", null, p.warning || ""))));
  const xs = view.periods.map((p, i) => [i, p.id]);
  const thresholds = [...new Set(view.periods.map((p) => p.threshold).filter((t) => t !== null))];
  lineChart($("drift-plot"), [
    { colour: "#1f77b4", points: view.periods.map((p, i) => [i, p.drift_reference]) },
    { colour: "#ff7f0e", points: view.periods.map((p, i) => [i, p.drift_previous]) },
  ], { xLabels: xs, threshold: thresholds.length === 1 ? thresholds[0] : undefined });
  legend($("drift-legend"), [["vs reference", "#1f77b4"], ["vs previous period", "#ff7f0e"],
    ...(thresholds.length === 1 ? [["threshold", "#d62728"]] : [])]);
}

// -- polling -------------------------------------------------------------------------

async function poll() {
  try {
    const response = await fetch("api/view", { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    const view = await response.json();
    $("error").hidden = !view.error;
    $("error").textContent = view.error ? `last read failed: ${view.error}` : "";
    if (view.kind === "job" || view.kind === "root") {
      $("loading").hidden = true;
      $(view.kind).hidden = false;
      await (view.kind === "job" ? renderJob(view) : renderRoot(view));
      document.body.dataset.updated = String(view.time);
    }
  } catch (error) {
    $("error").hidden = false;
    $("error").textContent = `cannot reach the dashboard server: ${error.message}`;
  }
  setTimeout(poll, POLL_MS);
}

wireMap();
poll();
