// UTE's page: reads /api/state once a second and draws it. Every name and message goes into the
// DOM as text (textContent, title), never as markup.
"use strict";

const CSRF = document.querySelector('meta[name="ute-csrf"]').content;
const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
let pollTimer = null;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child ?? "");
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function number(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function say(text, isError = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "banner error" : "banner";
  box.hidden = !text;
}

async function act(fileId, action, body = {}) {
  try {
    const response = await fetch(`/api/files/${encodeURIComponent(fileId)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-UTE-CSRF": CSRF },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    say(answer.message || answer.error, !response.ok);
  } catch (error) {
    say(`${action} failed: ${error}`, true);
  }
  refresh();
}

async function showLog(fileId) {
  const panel = document.getElementById("log-panel");
  const pre = document.getElementById("log");
  try {
    const response = await fetch(`/api/files/${encodeURIComponent(fileId)}/log`);
    pre.textContent = response.ok ? await response.text() : (await response.json()).error;
  } catch (error) {
    pre.textContent = `no log: ${error}`;
  }
  panel.hidden = false;
  panel.scrollIntoView({ behavior: "smooth" });
}

function button(label, onClick, action) {
  return el("button", { type: "button", onclick: onClick, data: { action } }, label);
}

function fileActions(file) {
  const other = file.queue === "high" ? "low" : "high";
  const buttons = [];
  if (["queued", "encoding"].includes(file.state)) buttons.push(button("pause", () => act(file.id, "pause"), "pause"));
  if (file.state === "paused") buttons.push(button("resume", () => act(file.id, "resume"), "resume"));
  if (["queued", "encoding", "paused"].includes(file.state)) {
    buttons.push(button(`to ${other}`, () => act(file.id, "move", { queue: other }), "move"));
    buttons.push(button("cancel", () => act(file.id, "cancel"), "cancel"));
  }
  if (["failed", "cancelled"].includes(file.state)) buttons.push(button("retry", () => act(file.id, "retry"), "retry"));
  if (file.work_id || file.state === "done") buttons.push(button("log", () => showLog(file.id), "log"));
  return buttons;
}

function progressBar(done, total) {
  const fill = el("div", { class: "fill" });
  fill.style.width = `${total ? (100 * done) / total : 0}%`;
  return el("div", { class: "bar", title: `${done} of ${total} frames` }, fill);
}

function chunkCell(cell) {
  const node = el("span", { class: `cell ${cell.state}`, data: { index: cell.index, state: cell.state } });
  let tip = `chunk ${cell.index}: ${cell.state}`;
  if (cell.state === "encoding") {
    const fill = el("span", { class: "fill" });
    fill.style.height = `${cell.frames ? (100 * cell.frames_done) / cell.frames : 0}%`;
    node.append(fill);
    tip += ` ${cell.frames_done}/${cell.frames} frames`;
  } else {
    tip += `, ${cell.frames} frames`;
  }
  if (cell.worker) tip += `, ${{ encoding: "on", failed: "failed on" }[cell.state] ?? "by"} ${cell.worker}`;
  if (cell.bytes) tip += `, ${bytes(cell.bytes)}`;
  if (cell.tries) tip += `, attempt ${cell.tries + 1}`;
  node.title = tip;
  return node;
}

function drawFiles(files) {
  const body = document.querySelector("#files tbody");
  const rows = [];
  for (const file of files) {
    const name = el("td", { class: "name" }, el("div", {}, file.name), el("div", { class: "id" }, file.id));
    if (file.error) name.append(el("div", { class: "error-text" }, file.error));
    const progress = el("td", {}, `${file.frames_total ? Math.floor((100 * file.frames_done) / file.frames_total) : 0}%`,
                        progressBar(file.frames_done, file.frames_total));
    rows.push(el("tr", { class: "file", data: { id: file.id, state: file.state } },
      name,
      el("td", { class: `state-${file.state}` }, file.state),
      el("td", {}, file.queue ?? "–"),
      progress,
      el("td", { class: "num" }, `${file.chunks_done}/${file.chunks_total}`),
      el("td", { class: "num" }, file.fps ? number(file.fps) : "–"),
      el("td", { class: "num" }, duration(file.eta_seconds)),
      el("td", { class: "num" }, bytes(file.bytes_done)),
      el("td", {}, ...fileActions(file))));
    if (file.chunk_map && file.chunk_map.length) {
      rows.push(el("tr", { class: "chunks", data: { id: file.id } },
        el("td", { colSpan: 9 }, el("div", { class: "chunkmap" }, ...file.chunk_map.map(chunkCell)))));
    }
  }
  body.replaceChildren(...rows);
  document.getElementById("no-files").hidden = files.length > 0;
}

// "shared folder", or "network" with the bytes the coordinator sent it and got back.
function inputText(worker) {
  if (worker.input !== "network") return worker.input ?? "–";
  return `network · ↓${bytes(worker.bytes_sent)} ↑${bytes(worker.bytes_received)}`;
}

function drawWorkers(workers, files) {
  const names = new Map(files.map((file) => [file.id, file.name]));
  const body = document.querySelector("#workers tbody");
  body.replaceChildren(...workers.map((worker) => {
    const chunk = worker.chunk;
    const what = chunk
      ? `${names.get(chunk.file_id) ?? chunk.file_id} · chunk ${chunk.index} · ${chunk.frames_done}/${chunk.frames}`
      : "idle";
    return el("tr", { class: "worker", data: { name: worker.name } },
      el("td", {}, worker.name), el("td", {}, worker.host), el("td", { class: "name" }, what),
      el("td", { class: "num" }, worker.fps ? number(worker.fps) : "–"),
      el("td", { class: "num" }, worker.cpu_percent == null ? "–" : `${Math.round(worker.cpu_percent)}%`),
      el("td", { class: "num" }, bytes(worker.memory_bytes)),
      el("td", {}, inputText(worker)));
  }));
  document.getElementById("no-workers").hidden = workers.length > 0;
}

function drawChart(points) {
  const svg = document.getElementById("fps-chart");
  const max = Math.max(1, ...points.map((p) => p.fps));
  const xy = points.map((p, i) => `${(i * 360) / Math.max(1, points.length - 1)},${100 - (95 * p.fps) / max}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", xy.join(" "));
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("points", ["0,100", ...xy, "360,100"].join(" "));
  svg.replaceChildren(area, line);
  document.getElementById("fps-max").textContent = `peak ${number(max)} fps`;
}

function drawHistory(entries) {
  const body = document.querySelector("#history tbody");
  body.replaceChildren(...entries.map((entry) => {
    const change = entry.size_change_percent === null ? "–" : `${number(entry.size_change_percent)}%`;
    const actions = [button("log", () => showLog(entry.id), "log")];
    if (["failed", "cancelled"].includes(entry.outcome)) actions.unshift(button("retry", () => act(entry.id, "retry"), "retry"));
    return el("tr", { class: "history", data: { id: entry.id } },
      el("td", {}, new Date(entry.finished_at * 1000).toLocaleString()),
      el("td", { class: "name" }, el("div", {}, entry.name), el("div", { class: "id" }, entry.id)),
      el("td", { class: `state-${entry.outcome}` }, entry.outcome),
      el("td", { class: "num" }, bytes(entry.source_bytes)), el("td", { class: "num" }, bytes(entry.output_bytes)),
      el("td", { class: "num" }, change), el("td", { class: "num" }, duration(entry.encode_seconds)),
      el("td", { class: "num" }, number(entry.fps)),
      el("td", { class: "error-text" }, entry.error ?? ""), el("td", {}, ...actions));
  }));
  document.getElementById("no-history").hidden = entries.length > 0;
}

function draw(state) {
  const busy = state.workers.filter((worker) => worker.state === "busy").length;
  document.getElementById("swarm-fps").textContent = `${number(state.swarm_fps)} fps`;
  document.getElementById("workers-busy").textContent = `workers ${busy}/${state.workers.length} busy`;
  document.getElementById("queue-eta").textContent = `queue ETA ${duration(state.queue_eta_seconds)}`;
  const paused = document.getElementById("farm-paused");
  paused.textContent = state.paused ? `The farm is paused: ${state.paused}` : "";
  paused.hidden = !state.paused;
  drawFiles(state.jobs);
  drawWorkers(state.workers, state.jobs);
  drawChart(state.fps_history);
  drawHistory(state.history);
}

async function refresh() {
  clearTimeout(pollTimer);
  const status = document.getElementById("connection");
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    draw(answer);
    status.textContent = "";
    document.body.dataset.updated = String(Date.now());
  } catch (error) {
    status.textContent = `not updating: ${error.message}`;
  }
  pollTimer = setTimeout(refresh, POLL_MS);
}

document.getElementById("log-close").addEventListener("click", () => {
  document.getElementById("log-panel").hidden = true;
});
refresh();
