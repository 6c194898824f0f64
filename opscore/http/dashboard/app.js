// Ops-Core dashboard: agents, session timelines and live logs, over the same API as the SDK.
// Every value from the API is written with textContent (never innerHTML): agent names are input.
"use strict";

const KEY_SLOT = "opscore.apiKey";
const MAX_LOG_LINES = 2000;
const state = { tab: "agents", agents: [], selectedSession: null, logAbort: null, paused: false,
                pendingLogs: [], logCount: 0, timers: [] };

const $ = (sel) => document.querySelector(sel);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
};
const key = () => sessionStorage.getItem(KEY_SLOT);

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) url.searchParams.set(k, v);
  const response = await fetch(url, { headers: { Authorization: `Bearer ${key()}` } });
  if (response.status === 401) { signOut("That key was not accepted."); throw new Error("unauthorized"); }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || response.statusText);
  }
  return response.json();
}

function badge(status) { return el("span", `badge s-${status || "none"}`, status || "-"); }

function ago(iso) {
  if (!iso) return "-";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(0)}s ago`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(0)}m ago`;
  return `${(seconds / 3600).toFixed(1)}h ago`;
}

function setStatus(text) { $("#status").textContent = text; }

// --- login ------------------------------------------------------------------------------------
async function signIn(candidate) {
  sessionStorage.setItem(KEY_SLOT, candidate);
  try {
    await api("/v1/opscore/agents", { limit: 1 });
  } catch (error) {
    $("#login-error").textContent = error.message === "unauthorized" ? "That key was not accepted." : error.message;
    return;
  }
  $("#login").hidden = true;
  $("#login-error").textContent = "";
  $("#key").value = "";
  $("#app").hidden = false;
  $("#tabs").hidden = false;
  $("#signout").hidden = false;
  showTab(state.tab);
}

function signOut(message) {
  sessionStorage.removeItem(KEY_SLOT);
  stopLogs();
  state.timers.forEach(clearInterval);
  state.timers = [];
  $("#app").hidden = true;
  $("#tabs").hidden = true;
  $("#signout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

// --- tabs -------------------------------------------------------------------------------------
function showTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  for (const view of ["agents", "sessions", "logs"]) $(`#${view}-view`).hidden = view !== tab;
  state.timers.forEach(clearInterval);
  state.timers = [];
  stopLogs();
  if (tab === "agents") { refreshAgents(); state.timers.push(setInterval(refreshAgents, 2000)); }
  if (tab === "sessions") { refreshSessions(); state.timers.push(setInterval(refreshSessions, 2000)); }
  if (tab === "logs") startLogs();
}

// --- agents -----------------------------------------------------------------------------------
async function fetchAll(path, params) {
  const items = [];
  for (let offset = 0; ; offset += 500) {
    const page = await api(path, { ...params, limit: 500, offset });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0 || offset > 20000) return items;
  }
}

async function refreshAgents() {
  try {
    state.agents = await fetchAll("/v1/opscore/agents");
    renderAgents();
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) { setStatus(`error: ${error.message}`); }
}

function renderAgents() {
  const needle = $("#agent-filter").value.trim().toLowerCase();
  const rows = state.agents.filter((a) => !needle || [a.agentId, a.agentName, a.state || "", ...a.capabilities]
    .some((v) => v.toLowerCase().includes(needle)));
  const body = document.createDocumentFragment();
  for (const a of rows) {
    const tr = el("tr");
    tr.dataset.agentId = a.agentId;
    tr.append(el("td", "", a.agentId), el("td", "", a.agentName));
    const stateCell = el("td"); stateCell.append(badge(a.state)); tr.append(stateCell);
    tr.append(el("td", "", a.capabilities.join(", ")), el("td", "", `${a.activeTasks.length}/${a.maxConcurrency}`),
              el("td", "", ago(a.lastSeen)));
    body.append(tr);
  }
  $("#agents-table tbody").replaceChildren(body);
  $("#agent-count").textContent = `${rows.length} of ${state.agents.length} agents`;
}

// --- sessions and timelines -------------------------------------------------------------------
async function refreshSessions() {
  try {
    const page = await api("/v1/opscore/sessions", { status: $("#session-status").value, limit: 200 });
    const body = document.createDocumentFragment();
    for (const s of page.items) {
      const tr = el("tr", s.sessionId === state.selectedSession ? "selected" : "");
      tr.dataset.sessionId = s.sessionId;
      tr.append(el("td", "", s.sessionId.slice(0, 8)), el("td", "", s.workflowId || s.name || "-"));
      const statusCell = el("td"); statusCell.append(badge(s.status)); tr.append(statusCell);
      tr.append(el("td", "", new Date(s.createdAt).toLocaleTimeString()));
      tr.addEventListener("click", () => { state.selectedSession = s.sessionId; refreshSessions(); });
      body.append(tr);
    }
    $("#sessions-table tbody").replaceChildren(body);
    $("#session-count").textContent = `${page.total} sessions`;
    if (state.selectedSession) await renderTimeline(state.selectedSession);
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) { setStatus(`error: ${error.message}`); }
}

function segment(cls, from, to, t0, span, title) {
  const bar = el("div", `bar ${cls}`);
  bar.style.left = `${((from - t0) / span) * 100}%`;
  bar.style.width = `${Math.max(((to - from) / span) * 100, 0.3)}%`;
  bar.title = title;
  return bar;
}

async function renderTimeline(sessionId) {
  const s = await api(`/v1/opscore/sessions/${encodeURIComponent(sessionId)}`);
  const now = Date.now();
  const t0 = Date.parse(s.createdAt);
  const end = s.finishedAt ? Date.parse(s.finishedAt) : now;
  const span = Math.max(end - t0, 1);
  const box = el("div");
  const head = el("h3", "", `${s.workflowId || s.name || "session"} `);
  head.append(badge(s.status));
  box.append(head, el("p", "muted", `${s.sessionId} · ${(span / 1000).toFixed(2)}s · ${s.tasks.length} tasks`));
  if (s.error) box.append(el("p", "error", s.error));
  const gantt = el("div", "gantt");
  gantt.id = "gantt";
  for (const t of s.tasks) {
    const label = el("div", "", `${t.stepId} `);
    label.append(badge(t.status));
    const track = el("div", "track");
    track.dataset.step = t.stepId;
    if (t.queuedAt) {
      const firstDispatch = t.history.length ? Date.parse(t.history[0].dispatchedAt) : (t.finishedAt ? Date.parse(t.finishedAt) : now);
      track.append(segment("queued", Date.parse(t.queuedAt), firstDispatch, t0, span, "queued"));
    }
    for (const a of t.history) {
      const from = Date.parse(a.dispatchedAt);
      const to = a.finishedAt ? Date.parse(a.finishedAt) : now;
      const outcome = a.outcome || (t.status === "running" ? "running" : "dispatched");
      track.append(segment(outcome, from, to, t0, span,
        `attempt ${a.attempt} on ${a.agentId}: ${outcome}${a.error ? " - " + a.error : ""} (${((to - from) / 1000).toFixed(2)}s)`));
    }
    gantt.append(label, track);
  }
  box.append(gantt);
  const legend = el("div", "legend");
  for (const [cls, text] of [["queued", "queued"], ["running", "running"], ["completed", "completed"],
                             ["failed", "failed attempt"], ["agent_lost", "agent lost / cancelled"]]) {
    const item = el("span", "", text);
    item.prepend(el("i", `bar ${cls}`));
    item.firstChild.style.position = "static";
    legend.append(item);
  }
  box.append(legend);
  $("#timeline").replaceChildren(box);
}

// --- live logs --------------------------------------------------------------------------------
function logFilters() {
  return { level: $("#log-level").value, logger: $("#log-logger").value.trim(), agentId: $("#log-agent").value.trim(),
           sessionId: $("#log-session").value.trim(), q: $("#log-text").value.trim() };
}

function stopLogs() {
  if (state.logAbort) state.logAbort.abort();
  state.logAbort = null;
}

async function startLogs() {
  stopLogs();
  // A filter change while an earlier start still awaits its first page must win: the earlier
  // call sees a newer generation and drops what it fetched.
  const generation = (state.logGeneration = (state.logGeneration || 0) + 1);
  state.pendingLogs.splice(0);
  $("#log-lines").replaceChildren();
  state.logCount = 0;
  const filters = logFilters();
  try {
    const recent = await api("/v1/opscore/logs", { ...filters, order: "asc", limit: 200 });
    if (generation !== state.logGeneration) return;
    queueLogs(recent.items);
  } catch (error) { setStatus(`error: ${error.message}`); return; }
  if (generation !== state.logGeneration) return;
  const controller = new AbortController();
  state.logAbort = controller;
  const url = new URL("/v1/opscore/logs/stream", location.origin);
  for (const [k, v] of Object.entries(filters)) if (v) url.searchParams.set(k, v);
  try {
    // fetch, not EventSource: the key goes in a header, never in the URL.
    const response = await fetch(url, { headers: { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" },
                                         signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    setStatus("live");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      const records = [];
      for (const block of blocks) {
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) records.push(JSON.parse(data));
      }
      queueLogs(records);
    }
  } catch (error) {
    if (error.name !== "AbortError") setStatus(`log stream: ${error.message}`);
  }
}

function queueLogs(records) {
  if (!records.length) return;
  state.pendingLogs.push(...records);
  if (state.pendingLogs.length > MAX_LOG_LINES) state.pendingLogs.splice(0, state.pendingLogs.length - MAX_LOG_LINES);
  if (!state.paused) requestAnimationFrame(flushLogs);
}

function flushLogs() {
  if (state.paused || !state.pendingLogs.length) return;
  const box = $("#log-lines");
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 20;
  const fragment = document.createDocumentFragment();
  for (const r of state.pendingLogs.splice(0)) {
    const line = el("div", "log");
    line.append(el("span", "muted", `${(r.timestamp || "").slice(11, 23)} `), el("span", `lv-${r.level}`, `${(r.level || "").padEnd(7)} `),
                el("b", "", `${r.logger} `), el("span", "", r.message));
    const ctx = ["state", "agentId", "sessionId", "taskId", "status", "durationMs", "error"].filter((k) => r[k] != null).map((k) => `${k}=${r[k]}`);
    if (ctx.length) line.append(el("span", "ctx", `  ${ctx.join(" ")}`));
    fragment.append(line);
    state.logCount += 1;
  }
  box.append(fragment);
  while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
  if (stick) box.scrollTop = box.scrollHeight;
  $("#log-count").textContent = `${box.childElementCount} lines shown (${state.logCount} received)`;
}

// --- wiring -----------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("#key").value.trim()); });
  $("#signout").addEventListener("click", () => signOut(""));
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("#agent-filter").addEventListener("input", renderAgents);
  $("#session-status").addEventListener("change", refreshSessions);
  for (const id of ["#log-level", "#log-logger", "#log-agent", "#log-session", "#log-text"]) $(id).addEventListener("change", startLogs);
  $("#log-pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("#log-pause").textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) flushLogs();
  });
  if (key()) signIn(key());
});
