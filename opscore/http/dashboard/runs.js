// Runs: the list (filters, paging), a run's page (actions, gantt, tasks, joined timeline),
// dead letters and the steps waiting for a decision.
import { act, ago, api, ask, badge, button, duration, el, facts, json, link, pager, short, table, time } from "./ui.js";

const runHref = (id) => `#/runs/${encodeURIComponent(id)}`;
const RUN_STATUSES = ["", "queued", "running", "completed", "failed", "cancelled"];

// --- the list -----------------------------------------------------------------------------------
export function runsView(root, params) {
  const filters = { status: params.get("status") || "", workflowId: params.get("workflow") || "", offset: Number(params.get("offset") || 0) };
  const status = el("select");
  for (const s of RUN_STATUSES) { const o = el("option", "", s || "all statuses"); o.value = s; status.append(o); }
  status.value = filters.status;
  status.setAttribute("aria-label", "status");
  const workflow = el("input");
  workflow.placeholder = "workflow id";
  workflow.value = filters.workflowId;
  workflow.setAttribute("aria-label", "workflow");
  const list = el("div");
  const go = () => {
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (workflow.value.trim()) q.set("workflow", workflow.value.trim());
    location.hash = `#/runs?${q}`;
  };
  status.addEventListener("change", go);
  let typing;
  workflow.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(go, 400); });
  root.append(el("h2", "", "Runs"), toolbar(status, workflow), list);

  async function refresh(poll) {
    const page = await api("/v1/opscore/sessions", {
      params: { status: filters.status, workflowId: filters.workflowId, limit: 50, offset: filters.offset }, poll,
    });
    const rows = page.items.map((s) => [
      link(runHref(s.sessionId), short(s.sessionId)),
      s.workflowId ? link(`#/templates/${encodeURIComponent(s.workflowId)}`, s.workflowId) : s.name || "-",
      badge(s.status),
      ago(s.createdAt),
      duration(s.createdAt, s.finishedAt),
      { text: s.error || "", cls: "wrap" },
    ]);
    list.replaceChildren(
      table(["Run", "Workflow", "Status", "Started", "Took", "Error"], rows, { empty: "No runs match." }),
      pager(page, (offset) => { filters.offset = offset; refresh(false); }),
    );
  }
  return refresh;
}

function toolbar(...nodes) { const bar = el("div", "toolbar"); bar.append(...nodes); return bar; }

// --- one run --------------------------------------------------------------------------------------
export function runView(root, params, id) {
  const head = el("div"); const waiting = el("div"); const gantt = el("div"); const tasks = el("div"); const timeline = el("div");
  root.append(head, waiting, gantt, tasks, timeline);
  const openTask = params.get("task");

  async function refresh(poll) {
    const [run, line] = await Promise.all([
      api(`/v1/opscore/sessions/${encodeURIComponent(id)}`, { poll }),
      api(`/v1/opscore/sessions/${encodeURIComponent(id)}/timeline`, { poll }).catch(() => null),
    ]);
    renderHead(head, run, refresh);
    renderWaiting(waiting, run, refresh);
    renderGantt(gantt, run);
    renderTasks(tasks, run, openTask, refresh);
    renderTimeline(timeline, line);
  }
  return refresh;
}

function renderHead(box, run, refresh) {
  const title = el("h2", "", `Run ${short(run.sessionId)} `);
  title.append(badge(run.status));
  const actions = el("div", "actions");
  if (["running", "queued"].includes(run.status)) {
    actions.append(button("Cancel run", async () => {
      if (await ask({ title: "Cancel this run?", text: "Tasks on agents are told to stop; nothing more is dispatched.", confirm: "Cancel run", danger: true })) {
        await act("Run cancelled", () => api(`/v1/opscore/sessions/${encodeURIComponent(run.sessionId)}/cancel`, { method: "POST" }), refresh);
      }
    }, { scope: "runs:write", cls: "danger" }));
  }
  const dead = run.tasks.filter((t) => t.status === "failed");
  if (run.status === "failed" && dead.length) {
    actions.append(button("Retry run", async () => {
      if (await ask({ title: "Retry this run?", text: `Re-drive ${dead.map((t) => t.stepId).join(", ")}; completed steps stay done.`, confirm: "Retry" })) {
        await act("Run retried", async () => {
          for (const t of dead) await api(`/v1/opscore/dead-letters/${encodeURIComponent(t.taskId)}/redrive`, { method: "POST" });
        }, refresh);
      }
    }, { scope: "runs:write", cls: "primary" }));
  }
  if (run.workflowId) {
    actions.append(button("Run again", () => { location.hash = `#/templates/${encodeURIComponent(run.workflowId)}?trigger=1&from=${encodeURIComponent(run.sessionId)}`; }, { scope: "runs:write" }));
  }
  const pairs = [
    ["Session", el("code", "", run.sessionId)],
    ["Workflow", run.workflowId ? link(`#/templates/${encodeURIComponent(run.workflowId)}`, `${run.workflowId} ${run.workflowVersion || ""}`) : run.name || "-"],
    ["Started", `${time(run.createdAt)} (${ago(run.createdAt)})`],
    ["Took", duration(run.createdAt, run.finishedAt)],
    ["Trace", run.traceId || "-"],
  ];
  const panel = el("div", "panel");
  panel.append(facts(pairs));
  if (run.error) panel.append(el("p", "error", `Why it failed: ${run.error}`));
  if (Object.keys(run.initialPayload || {}).length) {
    const d = el("details"); d.append(el("summary", "", "Input payload"), json(run.initialPayload)); panel.append(d);
  }
  box.replaceChildren(title, actions, panel);
}

function renderWaiting(box, run, refresh) {
  const waiting = run.tasks.filter((t) => t.status === "waiting");
  if (!waiting.length) { box.replaceChildren(); return; }
  const panel = el("div", "panel");
  panel.append(el("h3", "", "Waiting for a decision"));
  for (const t of waiting) panel.append(decisionRow(t, run.sessionId, refresh));
  box.replaceChildren(panel);
}

// Approve/reject an approval step, or send the signal a signal step (or an A2A agent) waits for.
export function decisionRow(t, sessionId, refresh) {
  const row = el("div", "toolbar");
  const wait = t.wait || {};
  row.append(el("b", "", t.stepId), el("span", "", wait.prompt || t.prompt || ""));
  const signal = wait.signal || t.signal;
  const taskId = t.taskId;
  if ((t.kind || "agent") === "approval") {
    row.append(
      button("Approve", async () => {
        const comment = await ask({ title: `Approve ${t.stepId}?`, input: "comment (optional)", confirm: "Approve" });
        if (comment === null) return;
        await act("Approved", () => api(`/v1/opscore/tasks/${encodeURIComponent(taskId)}/approve`, { method: "POST", body: { comment: comment || null } }), refresh);
      }, { scope: "approvals:write", cls: "primary" }),
      button("Reject", async () => {
        const comment = await ask({ title: `Reject ${t.stepId}?`, input: "why (optional)", confirm: "Reject", danger: true });
        if (comment === null) return;
        await act("Rejected", () => api(`/v1/opscore/tasks/${encodeURIComponent(taskId)}/reject`, { method: "POST", body: { comment: comment || null } }), refresh);
      }, { scope: "approvals:write", cls: "danger" }),
    );
  } else if (signal) {
    row.append(button(`Send signal ${signal}`, async () => {
      const payload = await ask({ title: `Send '${signal}'`, text: "The payload, as JSON.", input: "json", value: "{}", confirm: "Send" });
      if (payload === null) return;
      await act(`Signal ${signal} sent`, () => api(`/v1/opscore/sessions/${encodeURIComponent(sessionId || t.sessionId)}/signals/${encodeURIComponent(signal)}`, { method: "POST", body: { payload } }), refresh);
    }, { scope: "signals:send", cls: "primary" }));
  }
  return row;
}

function segment(cls, from, to, t0, span, title) {
  const bar = el("i", `bar ${cls}`);
  bar.style.left = `${((from - t0) / span) * 100}%`;
  bar.style.width = `${Math.max(((to - from) / span) * 100, 0.4)}%`;
  bar.title = title;
  return bar;
}

function renderGantt(box, run) {
  const now = Date.now();
  const t0 = Date.parse(run.createdAt);
  const span = Math.max((run.finishedAt ? Date.parse(run.finishedAt) : now) - t0, 1);
  const grid = el("div", "gantt");
  grid.id = "gantt";
  for (const t of run.tasks) {
    const label = el("div", "", `${t.stepId} `);
    label.append(badge(t.status));
    const track = el("div", "track");
    track.dataset.step = t.stepId;
    if (t.queuedAt) {
      const first = t.history.length ? Date.parse(t.history[0].dispatchedAt) : t.finishedAt ? Date.parse(t.finishedAt) : now;
      track.append(segment("queued", Date.parse(t.queuedAt), first, t0, span, "queued"));
    }
    for (const a of t.history) {
      const from = Date.parse(a.dispatchedAt);
      const to = a.finishedAt ? Date.parse(a.finishedAt) : now;
      const outcome = a.outcome || (t.status === "running" ? "running" : "dispatched");
      track.append(segment(outcome, from, to, t0, span, `attempt ${a.attempt} on ${a.agentId}: ${outcome}${a.error ? ` - ${a.error}` : ""}`));
    }
    grid.append(label, track);
  }
  const legend = el("div", "legend");
  for (const [cls, text] of [["queued", "queued"], ["running", "running"], ["completed", "completed"], ["failed", "failed attempt"], ["agent_lost", "lost / cancelled"]]) {
    const item = el("span", "", text); item.prepend(el("i", `bar ${cls}`)); legend.append(item);
  }
  const panel = el("div", "panel");
  panel.append(el("h3", "", `Timeline (${duration(run.createdAt, run.finishedAt)})`), grid, legend);
  box.replaceChildren(panel);
}

function renderTasks(box, run, openTask, refresh) {
  const panel = el("div", "panel");
  panel.append(el("h3", "", `Tasks (${run.tasks.length})`));
  for (const t of run.tasks) {
    const d = el("details");
    d.id = `task-${t.taskId}`;
    if (t.taskId === openTask) d.open = true;
    const summary = el("summary");
    summary.append(el("b", "", `${t.stepId} `), badge(t.status), el("span", "muted", ` ${t.agentId ? `on ${t.agentId}` : ""} · ${t.attempts} attempt(s) · ${duration(t.dispatchedAt || t.queuedAt, t.finishedAt)}`));
    d.append(summary);
    if (t.error || t.skipReason) d.append(el("p", "error", t.error || t.skipReason));
    const pairs = [["Task", el("code", "", t.taskId)], ["Agent", t.agentId ? link(`#/agents/${encodeURIComponent(t.agentId)}`, t.agentId) : "-"],
                   ["Capability", t.agentCapability || t.kind]];
    if (t.a2a) pairs.push(["A2A task", `${t.a2a.taskId} (${t.a2a.state})`]);
    if (t.cancelDelivery) pairs.push(["Cancel", t.cancelDelivery]);
    d.append(facts(pairs));
    d.append(el("div", "muted", "Inputs"), json(t.resolvedParameters ?? t.parameters));
    if (t.result !== null && t.result !== undefined) d.append(el("div", "muted", "Result"), json(t.result));
    if (t.history.length) {
      d.append(table(["#", "Agent", "Dispatched", "Took", "Outcome", "Error"], t.history.map((a) => [
        a.attempt, a.agentId, time(a.dispatchedAt), duration(a.dispatchedAt, a.finishedAt), a.outcome ? badge(a.outcome) : "-", { text: a.error || "", cls: "wrap" },
      ])));
    }
    if (t.status === "failed" && run.status === "failed") {
      d.append(button("Re-drive this task", async () => {
        if (await ask({ title: `Re-drive ${t.stepId}?`, text: "It is queued again with fresh attempts.", confirm: "Re-drive" })) {
          await act("Re-driven", () => api(`/v1/opscore/dead-letters/${encodeURIComponent(t.taskId)}/redrive`, { method: "POST" }), refresh);
        }
      }, { scope: "runs:write" }));
    }
    panel.append(d);
  }
  // keep open what the operator opened across refreshes
  const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.id));
  for (const d of panel.querySelectorAll("details")) if (open.has(d.id)) d.open = true;
  box.replaceChildren(panel);
}

function renderTimeline(box, line) {
  const panel = el("div", "panel");
  panel.append(el("h3", "", "Everything that happened"));
  if (!line) { panel.append(el("p", "muted", "The joined timeline is not available.")); box.replaceChildren(panel); return; }
  const list = el("ol", "timeline");
  list.id = "run-events";
  for (const e of line.events) {
    const li = el("li");
    const what = el("span", "what", `${e.stepId ? `${e.stepId}: ` : ""}${e.event}`);
    const details = e.details || {};
    const extra = ["message", "error", "outcome", "status", "state", "agentId"].filter((k) => details[k] != null).map((k) => `${k}=${typeof details[k] === "object" ? JSON.stringify(details[k]) : details[k]}`);
    if (extra.length) what.append(el("span", "muted", `  ${extra.join(" ")}`));
    li.append(el("span", "mono", new Date(e.at).toLocaleTimeString()), el("span", "src", e.source), what);
    list.append(li);
  }
  if (line.partial && line.partial.length) {
    panel.append(el("p", "muted", `Some ${line.partial.join(" and ")} records may be missing: they are older than what this replica keeps.`));
  }
  panel.append(list);
  box.replaceChildren(panel);
}

// --- dead letters ---------------------------------------------------------------------------------
export function deadLettersView(root) {
  const list = el("div");
  root.append(el("h2", "", "Dead letters"), el("p", "muted", "Tasks that used up their retries. Re-driving queues them again; their run goes on."), list);
  let offset = 0;
  async function refresh(poll) {
    const page = await api("/v1/opscore/dead-letters", { params: { limit: 50, offset }, poll });
    const rows = page.items.map((d) => [
      link(`${runHref(d.sessionId)}?task=${encodeURIComponent(d.taskId)}`, `${d.stepId} (${short(d.taskId)})`),
      link(runHref(d.sessionId), short(d.sessionId)),
      d.attempts, ago(d.deadLetteredAt), { text: d.error || "", cls: "wrap" },
      button("Re-drive", async () => {
        if (await ask({ title: `Re-drive ${d.stepId}?`, text: d.error || "", confirm: "Re-drive" })) {
          await act(`Re-driven ${d.stepId}`, () => api(`/v1/opscore/dead-letters/${encodeURIComponent(d.taskId)}/redrive`, { method: "POST" }), () => refresh(false));
        }
      }, { scope: "runs:write" }),
    ]);
    list.replaceChildren(table(["Task", "Run", "Attempts", "When", "Error", ""], rows, { empty: "No dead letters." }),
      pager(page, (o) => { offset = o; refresh(false); }));
  }
  return refresh;
}

// --- approvals and signals ---------------------------------------------------------------------------
export function waitingView(root) {
  const list = el("div");
  root.append(el("h2", "", "Waiting"), el("p", "muted", "Approval steps, signal steps and A2A agents asking for input."), list);
  async function refresh(poll) {
    const page = await api("/v1/opscore/waiting", { params: { limit: 100 }, poll });
    if (!page.items.length) { list.replaceChildren(el("p", "muted", "Nothing waits for a decision.")); return; }
    const panel = el("div", "panel");
    for (const w of page.items) {
      const row = decisionRow(w, w.sessionId, () => refresh(false));
      row.prepend(link(runHref(w.sessionId), short(w.sessionId)), badge(w.kind));
      row.append(el("span", "muted", `waiting ${ago(w.waitingSince).replace(" ago", "")}${w.deadline ? `, until ${time(w.deadline)}` : ""}`));
      panel.append(row);
    }
    list.replaceChildren(panel);
  }
  return refresh;
}
