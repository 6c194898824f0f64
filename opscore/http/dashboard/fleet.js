// The fleet: the overview (counts and the last hour's charts), the agents, one agent's page.
import { act, ago, api, ask, badge, button, el, facts, json, link, pager, short, table, time } from "./ui.js";

// --- overview -------------------------------------------------------------------------------------
export function overviewView(root) {
  const cards = el("div", "cards");
  const charts = el("div", "cards");
  root.append(el("h2", "", "Overview"), cards, charts);
  async function refresh(poll) {
    const [agents, running, waiting, dead, activity] = await Promise.all([
      api("/v1/opscore/agents", { params: { limit: 500 }, poll }),
      api("/v1/opscore/sessions", { params: { status: "running", limit: 1 }, poll }),
      api("/v1/opscore/waiting", { params: { limit: 1 }, poll }),
      api("/v1/opscore/dead-letters", { params: { limit: 1 }, poll }),
      api("/v1/opscore/activity", { poll }),
    ]);
    const states = {};
    for (const a of agents.items) states[a.state || "unknown"] = (states[a.state || "unknown"] || 0) + 1;
    const stateText = Object.entries(states).map(([s, n]) => `${n} ${s}`).join(" · ") || "none registered";
    cards.replaceChildren(
      card("Agents", agents.total, stateText, "#/agents"),
      card("Running runs", running.total, "now", "#/runs?status=running"),
      card("Waiting", waiting.total, "approvals, signals, input", "#/waiting"),
      card("Dead letters", dead.total, "tasks out of retries", "#/dead-letters"),
    );
    const m = activity.minutes;
    charts.replaceChildren(
      chartCard("Tasks per minute", m, [["completed", "a", "completed"], ["failed", "b", "failed attempts"]]),
      chartCard("Runs per minute", m, [["runsCompleted", "a", "completed"], ["runsFailed", "b", "failed"]]),
      chartCard("Queue depth", m, [["queueDepth", "c", "tasks waiting"]]),
    );
  }
  return refresh;
}

function card(title, number, note, href) {
  const box = el("a", "card");
  box.href = href;
  box.append(el("div", "muted", title), el("div", "big", number), el("div", "muted", note));
  return box;
}

// One bar chart per series pair over the last hour: SVG built with DOM calls (no library).
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function chartCard(title, minutes, series) {
  const box = el("div", "card");
  const w = 600; const h = 120; const pad = 18;
  const peak = Math.max(0, ...minutes.flatMap((m) => series.map(([k]) => m[k] || 0)));
  const max = Math.max(1, peak);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img" });
  chart.setAttribute("aria-label", `${title}, last ${minutes.length} minutes`);
  chart.append(svg("line", { x1: 0, y1: h - pad, x2: w, y2: h - pad }));
  const slot = w / Math.max(minutes.length, 1);
  const bar = Math.max(1, slot / series.length - 1);
  minutes.forEach((m, i) => {
    series.forEach(([k, cls], j) => {
      const v = m[k] || 0;
      if (!v) return;
      const height = ((h - pad - 4) * v) / max;
      const rect = svg("rect", { class: cls, x: i * slot + j * bar, y: h - pad - height, width: bar, height });
      const tip = svg("title", {}); tip.textContent = `${new Date(m.at).toLocaleTimeString()}: ${v}`;
      rect.append(tip);
      chart.append(rect);
    });
  });
  const totals = series.map(([k, , name]) => `${minutes.reduce((s, m) => s + (k === "queueDepth" ? 0 : m[k] || 0), 0)} ${name}`);
  const last = minutes[minutes.length - 1] || {};
  const note = series[0][0] === "queueDepth"
    ? `now ${last.queueDepth ?? "-"}, at most ${peak} in the last hour`
    : `${totals.join(" · ")} in the last hour (peak ${peak}/min)`;
  box.append(el("div", "muted", title), chart, el("div", "muted", note));
  return box;
}

// --- agents ---------------------------------------------------------------------------------------
export function agentsView(root, params) {
  const filter = el("input");
  filter.placeholder = "Filter by id, name, capability or state";
  filter.value = params.get("q") || "";
  filter.setAttribute("aria-label", "filter agents");
  const list = el("div");
  const bar = el("div", "toolbar"); bar.append(filter);
  root.append(el("h2", "", "Agents"), bar, list);
  let offset = 0;
  let page = null;
  const render = () => {
    if (!page) return;
    const needle = filter.value.trim().toLowerCase();
    const shown = page.items.filter((a) => !needle || [a.agentId, a.agentName, a.state || "", a.delivery, ...a.capabilities].some((v) => v.toLowerCase().includes(needle)));
    list.replaceChildren(
      table(["Agent", "Name", "State", "Takes work", "Capabilities", "Tasks", "Last seen"], shown.map((a) => [
        link(`#/agents/${encodeURIComponent(a.agentId)}`, a.agentId), a.agentName, badge(a.state), a.delivery,
        { text: a.capabilities.join(", "), cls: "wrap" }, `${a.activeTasks.length}/${a.maxConcurrency}`, ago(a.lastSeen),
      ]), { empty: needle ? "No agent matches." : "No agents registered yet." }),
      pager(page, (o) => { offset = o; refresh(false); }),
    );
  };
  filter.addEventListener("input", render);
  async function refresh(poll) {
    page = await api("/v1/opscore/agents", { params: { limit: 100, offset }, poll });
    render();
  }
  return refresh;
}

export function agentView(root, params, id) {
  const head = el("div"); const tasks = el("div"); const history = el("div");
  root.append(head, tasks, history);
  const path = encodeURIComponent(id);
  async function refresh(poll) {
    const [a, states] = await Promise.all([
      api(`/v1/opscore/agents/${path}`, { poll }),
      api(`/v1/opscore/agent/${path}/state/history`, { params: { limit: 50 }, poll }),
    ]);
    const title = el("h2", "", `${a.agentName} `);
    title.append(badge(a.state));
    const actions = el("div", "actions");
    actions.append(button("Deregister", async () => {
      if (await ask({ title: `Deregister ${a.agentId}?`, text: "Its history goes; tasks it runs are queued again.", confirm: "Deregister", danger: true })) {
        await act("Deregistered", () => api(`/v1/opscore/agents/${path}`, { method: "DELETE" }), () => { location.hash = "#/agents"; });
      }
    }, { scope: "agents:write", cls: "danger" }));
    const pairs = [
      ["Id", el("code", "", a.agentId)], ["Version", a.version], ["Takes work", a.delivery],
      ["Capabilities", a.capabilities.join(", ") || "-"], ["Endpoint", a.contactEndpoint || "-"],
      ["Slots", `${a.activeTasks.length} of ${a.maxConcurrency} busy`],
      ["Last seen", `${time(a.lastSeen)} (${ago(a.lastSeen)})`],
      ["Liveness", a.heartbeatIntervalSeconds ? `heartbeat every ${a.heartbeatIntervalSeconds}s` : `probed${a.lastProbeAt ? ` ${ago(a.lastProbeAt)}` : ""}; ${a.probeFailures} miss(es) in a row`],
      ["Offline since", a.offlineSince ? time(a.offlineSince) : "-"],
      ["Registered", `${time(a.registeredAt)} via ${a.source}`],
    ];
    if (a.a2a) pairs.push(["A2A", `${a.a2a.protocolBinding} ${a.a2a.protocolVersion} at ${a.a2a.url}${a.a2a.pushNotifications ? " (pushes)" : ""}`]);
    const panel = el("div", "panel");
    panel.append(facts(pairs));
    if (Object.keys(a.metadata || {}).length) { const d = el("details"); d.append(el("summary", "", "Metadata"), json(a.metadata)); panel.append(d); }
    head.replaceChildren(title, actions, panel);

    const working = await Promise.all(a.activeTasks.slice(0, 20).map((t) => api(`/v1/opscore/tasks/${encodeURIComponent(t)}`, { poll }).catch(() => null)));
    const rows = working.filter(Boolean).map((t) => [
      link(`#/runs/${encodeURIComponent(t.sessionId)}?task=${encodeURIComponent(t.taskId)}`, `${t.stepId} (${short(t.taskId)})`),
      badge(t.status), ago(t.dispatchedAt), t.attempts,
    ]);
    const taskPanel = el("div", "panel");
    taskPanel.append(el("h3", "", "Working on"), table(["Task", "Status", "Since", "Attempt"], rows, { empty: "Nothing right now." }));
    if (a.lostTasks.length) taskPanel.append(el("p", "muted", `Tasks re-queued when it went offline: ${a.lostTasks.join(", ")}`));
    tasks.replaceChildren(taskPanel);

    const historyPanel = el("div", "panel");
    historyPanel.append(el("h3", "", `State history (${states.total})`), table(["When", "State", "By", "Details"], states.items.map((r) => [
      time(r.timestamp), badge(r.state), r.reason ? `Ops-Core: ${r.reason}` : "agent", { text: Object.keys(r.details || {}).length ? JSON.stringify(r.details) : "", cls: "wrap" },
    ]), { empty: "No state reported yet." }));
    history.replaceChildren(historyPanel);
  }
  return refresh;
}
