// What operators set up: templates (with their graph, and a trigger), schedules, and the
// webhooks events go out to (with their delivery logs).
import { act, ago, api, ask, badge, button, can, el, facts, link, pager, short, table, time } from "./ui.js";

// --- templates ------------------------------------------------------------------------------------
export function templatesView(root) {
  const list = el("div");
  root.append(el("h2", "", "Templates"), list);
  let offset = 0;
  async function refresh(poll) {
    const page = await api("/v1/opscore/workflows", { params: { limit: 50, offset }, poll });
    list.replaceChildren(table(["Template", "Version", "Steps", "Description", "Created"], page.items.map((w) => [
      link(`#/templates/${encodeURIComponent(w.id)}`, w.id), w.version, w.tasks.length, { text: w.description || w.name, cls: "wrap" }, ago(w.createdAt),
    ]), { empty: "No templates yet: POST one to /v1/opscore/workflows or run `opscore workflows create FILE`." }),
    pager(page, (o) => { offset = o; refresh(false); }));
  }
  return refresh;
}

export function templateView(root, params, id) {
  const head = el("div"); const graph = el("div"); const steps = el("div");
  root.append(head, graph, steps);
  let drawn = false;
  async function refresh(poll) {
    if (drawn && poll) return; // a template does not change under a version: draw once
    const w = await api(`/v1/opscore/workflows/${encodeURIComponent(id)}`, { poll });
    drawn = true;
    const title = el("h2", "", `${w.name || w.id} `);
    title.append(el("span", "muted", `version ${w.version}`));
    const actions = el("div", "actions");
    actions.append(
      button("Trigger a run", () => trigger(w), { scope: "runs:write", cls: "primary" }),
      Object.assign(link(`#/runs?workflow=${encodeURIComponent(w.id)}`, "Its runs"), { className: "button" }),
    );
    const panel = el("div", "panel");
    panel.append(facts([["Id", el("code", "", w.id)], ["Description", w.description || "-"], ["Runs at once", w.maxConcurrentRuns ?? "no limit"], ["Created", time(w.createdAt)]]));
    head.replaceChildren(title, actions, panel);
    const g = el("div", "panel");
    g.append(el("h3", "", "Graph"), drawGraph(w.tasks));
    graph.replaceChildren(g);
    steps.replaceChildren(table(["Step", "Kind", "Runs on", "After", "When", "Retry", "Timeout"], w.tasks.map((t) => [
      t.taskId, t.kind || "agent", t.agentId || t.agentCapability || "-", (t.dependsOn || []).join(", ") || "-",
      { text: t.when || "", cls: "wrap" }, t.retry && t.retry.maxAttempts ? `${t.retry.maxAttempts} attempts` : "default", t.timeoutSeconds ? `${t.timeoutSeconds}s` : "-",
    ])));
    if (params.get("trigger") && can("runs:write")) {
      const from = params.get("from");
      const payload = from ? (await api(`/v1/opscore/sessions/${encodeURIComponent(from)}`).catch(() => ({}))).initialPayload : {};
      history.replaceState(null, "", `#/templates/${encodeURIComponent(id)}`);
      trigger(w, payload || {});
    }
  }
  return refresh;
}

async function trigger(w, payload = {}) {
  const body = await ask({ title: `Run ${w.id}`, text: "The run's input payload, as JSON (read as ${input.<key>}).", input: "json", value: JSON.stringify(payload, null, 2), confirm: "Run" });
  if (body === null) return;
  try {
    const run = await api(`/v1/opscore/workflows/${encodeURIComponent(w.id)}/runs`, { method: "POST", body: { initialPayload: body } });
    location.hash = `#/runs/${encodeURIComponent(run.sessionId)}`;
  } catch (error) {
    act("Trigger", () => Promise.reject(error));
  }
}

// Layered drawing: a step's column is one more than its deepest prerequisite's.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function drawGraph(tasks) {
  const byId = new Map(tasks.map((t) => [t.taskId, t]));
  const before = new Map(tasks.map((t) => [t.taskId, new Set(t.dependsOn || [])]));
  for (const t of tasks) if (t.nextTaskId && before.has(t.nextTaskId)) before.get(t.nextTaskId).add(t.taskId);
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...[...(before.get(id) || [])].filter((p) => byId.has(p)).map((p) => depthOf(p, seen))) + 1;
    depth.set(id, d);
    return d;
  };
  tasks.forEach((t) => depthOf(t.taskId));
  const columns = [];
  for (const t of tasks) (columns[depth.get(t.taskId)] ||= []).push(t.taskId);
  const W = 150; const H = 46; const GX = 50; const GY = 18;
  const pos = new Map();
  columns.forEach((ids, c) => ids.forEach((id, r) => pos.set(id, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  root.setAttribute("aria-label", `graph of ${tasks.length} steps`);
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z" }));
  defs.append(marker);
  root.append(defs);
  const edge = (from, to, cls) => {
    const a = pos.get(from); const b = pos.get(to);
    if (!a || !b) return;
    const x1 = a.x + W; const y1 = a.y + H / 2; const x2 = b.x; const y2 = b.y + H / 2;
    root.append(svg("path", { d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`, class: cls, "marker-end": "url(#arrow)" }));
  };
  for (const [id, prereqs] of before) for (const p of prereqs) edge(p, id, "");
  for (const t of tasks) if (t.fallbackTaskId) edge(t.taskId, t.fallbackTaskId, "fallback");
  for (const t of tasks) {
    const { x, y } = pos.get(t.taskId);
    const g = svg("g", { "data-step": t.taskId });
    g.append(svg("rect", { x, y, width: W, height: H, rx: 6, class: t.kind || "agent" }));
    g.append(svg("text", { x: x + 8, y: y + 18 }, t.taskId.slice(0, 20)));
    const sub = t.kind && t.kind !== "agent" ? t.kind : t.agentId || t.agentCapability || "";
    g.append(svg("text", { x: x + 8, y: y + 35, class: "sub" }, `${sub}${t.when ? " · if" : ""}`.slice(0, 26)));
    root.append(g);
  }
  const box = el("div", "scroll");
  box.append(root);
  return box;
}

// --- schedules ------------------------------------------------------------------------------------
export function schedulesView(root) {
  const list = el("div");
  root.append(el("h2", "", "Schedules"), list);
  async function refresh(poll) {
    const page = await api("/v1/opscore/schedules", { params: { limit: 100 }, poll });
    const path = (s, verb) => `/v1/opscore/schedules/${encodeURIComponent(s.scheduleId)}/${verb}`;
    list.replaceChildren(table(["Schedule", "Template", "When", "State", "Next", "Last run", "Fired", "Last error", ""], page.items.map((s) => {
      const actions = el("div", "actions");
      actions.append(
        s.paused
          ? button("Resume", () => act("Resumed", () => api(path(s, "resume"), { method: "POST" }), () => refresh(false)), { scope: "workflows:write" })
          : button("Pause", async () => {
            if (await ask({ title: `Pause ${s.scheduleId}?`, text: "No runs start until it is resumed; missed ticks are not caught up.", confirm: "Pause" })) {
              await act("Paused", () => api(path(s, "pause"), { method: "POST" }), () => refresh(false));
            }
          }, { scope: "workflows:write" }),
        button("Run now", () => act("Triggered", () => api(path(s, "trigger"), { method: "POST" }), () => refresh(false)), { scope: "runs:write" }),
      );
      return [
        el("code", "", s.scheduleId), link(`#/templates/${encodeURIComponent(s.workflowId)}`, s.workflowId),
        s.cron ? `${s.cron} (${s.timezone})` : `every ${s.intervalSeconds}s`, badge(s.paused ? "paused" : "active"),
        s.paused ? "-" : ago(s.nextFireAt), s.lastSessionId ? link(`#/runs/${encodeURIComponent(s.lastSessionId)}`, ago(s.lastFiredAt)) : "-",
        `${s.fired} (${s.skipped} skipped)`, { text: s.lastError || "", cls: "wrap" }, actions,
      ];
    }), { empty: "No schedules." }));
  }
  return refresh;
}

// --- events out -----------------------------------------------------------------------------------
export function eventsView(root) {
  const list = el("div");
  root.append(el("h2", "", "Webhooks"), el("p", "muted", "Signed events out to other systems; each has a delivery log."), list);
  async function refresh(poll) {
    const page = await api("/v1/opscore/subscriptions", { params: { limit: 100 }, poll });
    list.replaceChildren(table(["Subscription", "URL", "Events", "Active", "Created", ""], page.items.map((s) => [
      link(`#/webhooks/${encodeURIComponent(s.subscriptionId)}`, short(s.subscriptionId)), { text: s.url, cls: "wrap" },
      { text: s.events.join(", "), cls: "wrap" }, badge(s.active ? "active" : "paused"), ago(s.createdAt),
      button("Ping", () => act("Ping sent", () => api(`/v1/opscore/subscriptions/${encodeURIComponent(s.subscriptionId)}/ping`, { method: "POST" })), { scope: "events:write" }),
    ]), { empty: "No subscriptions." }));
  }
  return refresh;
}

export function deliveriesView(root, params, id) {
  const head = el("div"); const list = el("div");
  root.append(head, list);
  const base = `/v1/opscore/subscriptions/${encodeURIComponent(id)}`;
  let offset = 0;
  async function refresh(poll) {
    const [s, page] = await Promise.all([api(base, { poll }), api(`${base}/deliveries`, { params: { limit: 50, offset }, poll })]);
    const title = el("h2", "", "Webhook ");
    title.append(badge(s.active ? "active" : "paused"));
    const panel = el("div", "panel");
    panel.append(facts([["Id", el("code", "", s.subscriptionId)], ["URL", s.url], ["Events", s.events.join(", ")], ["Secret", `…${s.secretHint || ""}`], ["Description", s.description || "-"]]));
    head.replaceChildren(title, panel);
    list.replaceChildren(el("h3", "", "Deliveries"), table(["Delivery", "Event", "Status", "Attempts", "Last answer", "Created", ""], page.items.map((d) => [
      el("code", "", `…${d.deliveryId.slice(-6)}`), d.event && d.event.type ? d.event.type : "-", badge(d.status), d.attempts, { text: d.lastError || (d.lastStatusCode ? `HTTP ${d.lastStatusCode}` : "-"), cls: "wrap" }, ago(d.createdAt),
      button("Redeliver", () => act("Queued again", () => api(`${base}/deliveries/${encodeURIComponent(d.deliveryId)}/redeliver`, { method: "POST" }), () => refresh(false)), { scope: "events:write" }),
    ]), { empty: "Nothing delivered yet." }), pager(page, (o) => { offset = o; refresh(false); }));
  }
  return refresh;
}
