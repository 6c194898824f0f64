// Live logs, newest first: the latest records, then the stream on top of them. Filters apply as
// they are typed. The stream is read with fetch (the key in a header, never in the URL).
import { api, el, key } from "./ui.js";

const MAX_LINES = 1000;
const FIELDS = [["level", "select"], ["logger", "logger (e.g. opscore.task)"], ["agentId", "agentId"], ["sessionId", "sessionId"], ["q", "text"]];

export function logsView(root, params) {
  const inputs = {};
  const bar = el("div", "toolbar");
  for (const [name, hint] of FIELDS) {
    let input;
    if (hint === "select") {
      input = el("select");
      for (const level of ["", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]) { const o = el("option", "", level || "all levels"); o.value = level; input.append(o); }
    } else { input = el("input"); input.placeholder = hint; }
    input.value = params.get(name) || "";
    input.setAttribute("aria-label", name);
    inputs[name] = input;
    bar.append(input);
  }
  const pause = el("button", "", "Pause");
  const count = el("span", "muted");
  bar.append(pause, count);
  const lines = el("div");
  lines.id = "log-lines";
  lines.setAttribute("aria-live", "off");
  root.append(el("h2", "", "Live logs"), bar, lines);

  const state = { abort: null, generation: 0, paused: false, held: [], received: 0 };
  const filters = () => Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()]));

  function show(records) {
    // records arrive oldest first; the newest goes on top
    const fragment = document.createDocumentFragment();
    for (const r of records) {
      const line = el("div", "log");
      line.append(el("span", "muted", `${(r.timestamp || "").slice(11, 23)} `), el("span", `lv-${r.level}`, `${(r.level || "").padEnd(7)} `),
        el("b", "", `${r.logger} `), el("span", "", r.message));
      const ctx = ["state", "agentId", "sessionId", "taskId", "status", "durationMs", "error"].filter((k) => r[k] != null).map((k) => `${k}=${r[k]}`);
      if (ctx.length) line.append(el("span", "ctx", `  ${ctx.join(" ")}`));
      fragment.prepend(line);
      state.received += 1;
    }
    lines.prepend(fragment);
    while (lines.childElementCount > MAX_LINES) lines.lastElementChild.remove();
    count.textContent = `${lines.childElementCount} shown, newest first (${state.received} received)`;
  }

  function queue(records) {
    if (!records.length) return;
    if (state.paused) { state.held.push(...records); state.held.splice(0, Math.max(0, state.held.length - MAX_LINES)); return; }
    show(records);
  }

  async function start() {
    if (state.abort) state.abort.abort();
    const generation = ++state.generation;
    lines.replaceChildren();
    state.received = 0;
    const f = filters();
    let recent;
    try {
      recent = await api("/v1/opscore/logs", { params: { ...f, order: "desc", limit: 200 } });
    } catch (error) { count.textContent = `error: ${error.message}`; return; }
    if (generation !== state.generation) return;
    queue(recent.items.slice().reverse());
    const controller = new AbortController();
    state.abort = controller;
    const url = new URL("/v1/opscore/logs/stream", location.origin);
    for (const [k, v] of Object.entries(f)) if (v) url.searchParams.set(k, v);
    try {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" }, signal: controller.signal });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
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
        if (generation === state.generation) queue(records);
      }
    } catch (error) {
      if (error.name !== "AbortError") count.textContent = `stream: ${error.message}`;
    }
  }

  let typing;
  for (const input of Object.values(inputs)) {
    input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(start, 300); });
  }
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) show(state.held.splice(0));
  });
  start();
  return { stop: () => { state.generation += 1; if (state.abort) state.abort.abort(); } };
}
