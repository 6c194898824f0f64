// Shared pieces of the console: the API call, the caller's role, DOM helpers, dialogs.
// Every value from the API is written with textContent (never innerHTML): names are input.

const KEY_SLOT = "opscore.apiKey";
export const session = { me: null };

export const $ = (sel, root = document) => root.querySelector(sel);
export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
export const key = () => sessionStorage.getItem(KEY_SLOT);
export const setKey = (value) => (value ? sessionStorage.setItem(KEY_SLOT, value) : sessionStorage.removeItem(KEY_SLOT));

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// The key travels in a header, never in a URL. Polls say so (X-OpsCore-Poll): the server logs
// them at DEBUG, so a watched run's log is not filled with the console's own reads.
export async function api(path, { method = "GET", params, body, poll = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) url.searchParams.set(k, v);
  const headers = { Authorization: `Bearer ${key()}` };
  if (poll) headers["X-OpsCore-Poll"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) { document.dispatchEvent(new CustomEvent("opscore:signout")); }
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    const err = data.error || {};
    throw new ApiError(response.status, err.code || String(response.status), err.message || data.detail || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

export const can = (scope) => Boolean(session.me && session.me.scopes.includes(scope));

export function badge(status) { return el("span", `badge s-${status || "none"}`, status || "-"); }
export function link(href, text) { const a = el("a", "", text); a.href = href; return a; }
export const short = (id) => (id && id.length > 12 ? id.slice(0, 8) : id || "-");

export function ago(iso) {
  if (!iso) return "-";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const s = Math.abs(seconds);
  const text = s < 60 ? `${s.toFixed(0)}s` : s < 3600 ? `${(s / 60).toFixed(0)}m` : s < 86400 ? `${(s / 3600).toFixed(1)}h` : `${(s / 86400).toFixed(1)}d`;
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}
export const time = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
export function duration(fromIso, toIso) {
  if (!fromIso) return "-";
  const ms = (toIso ? Date.parse(toIso) : Date.now()) - Date.parse(fromIso);
  return ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`;
}

export function json(value) { return el("pre", "json", JSON.stringify(value, null, 2)); }

// A table in a horizontally scrolling box (so 390 px never overflows the page).
export function table(headers, rows, { empty = "Nothing here." } = {}) {
  const box = el("div", "scroll");
  const t = el("table");
  const head = el("tr");
  for (const h of headers) head.append(el("th", "", h));
  t.append(el("thead")); t.tHead.append(head);
  const body = el("tbody");
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell);
      else if (cell && typeof cell === "object" && "text" in cell) { td.className = cell.cls || ""; td.textContent = cell.text ?? "-"; }
      else td.textContent = cell ?? "-";
      tr.append(td);
    }
    body.append(tr);
  }
  if (!rows.length) { const tr = el("tr"); const td = el("td", "muted", empty); td.colSpan = headers.length; tr.append(td); body.append(tr); }
  t.append(body);
  box.append(t);
  return box;
}

export function pager(page, onMove) {
  const box = el("div", "pager");
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  const prev = el("button", "", "Previous"); prev.disabled = page.offset <= 0;
  const next = el("button", "", "Next"); next.disabled = to >= page.total;
  prev.addEventListener("click", () => onMove(Math.max(0, page.offset - page.limit)));
  next.addEventListener("click", () => onMove(page.offset + page.limit));
  box.append(prev, el("span", "muted", `${from}-${to} of ${page.total}`), next);
  return box;
}

export function facts(pairs) {
  const dl = el("dl", "facts");
  for (const [name, value] of pairs) {
    dl.append(el("dt", "", name));
    const dd = el("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value ?? "-";
    dl.append(dd);
  }
  return dl;
}

export function toast(text, bad = false) {
  const box = $("#toast");
  const note = el("div", bad ? "bad" : "", text);
  note.setAttribute("role", bad ? "alert" : "status");
  box.append(note);
  while (box.childElementCount > 3) box.firstElementChild.remove(); // the latest three
  setTimeout(() => note.remove(), bad ? 10000 : 6000);
}

// A confirmation (and optional input) dialog; resolves to the input's value, true, or null.
export function ask({ title, text = "", confirm = "Confirm", danger = false, input = null, value = "" }) {
  return new Promise((resolve) => {
    const dialog = $("#dialog");
    const form = el("form");
    form.method = "dialog";
    form.append(el("h3", "", title));
    if (text) form.append(el("p", "muted", text));
    let field = null;
    if (input) {
      field = el(input === "json" ? "textarea" : "input");
      field.value = value;
      field.name = "value";
      field.setAttribute("aria-label", title);
      if (input !== "json") field.placeholder = input;
      form.append(field);
    }
    const error = el("p", "error");
    const buttons = el("div", "actions");
    const cancel = el("button", "", "Cancel"); cancel.value = "cancel"; cancel.type = "button";
    const ok = el("button", danger ? "danger" : "primary", confirm); ok.value = "ok";
    buttons.append(ok, cancel);
    form.append(error, buttons);
    dialog.replaceChildren(form);
    const done = (answer) => { dialog.close(); resolve(answer); };
    cancel.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", () => resolve(null), { once: true });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!field) return done(true);
      if (input === "json") {
        try { return done(field.value.trim() ? JSON.parse(field.value) : {}); }
        catch (e) { error.textContent = `Not JSON: ${e.message}`; return; }
      }
      done(field.value);
    });
    dialog.showModal();
    (field || ok).focus();
  });
}

// Run an action the user asked for; say what happened; refresh the view.
export async function act(label, call, after) {
  try {
    await call();
    toast(label);
    if (after) await after();
  } catch (error) {
    toast(`${label} failed: ${error.message}`, true);
  }
}

export function button(text, onClick, { scope = null, cls = "" } = {}) {
  const b = el("button", cls, text);
  if (scope && !can(scope)) { b.hidden = true; b.disabled = true; }
  b.addEventListener("click", onClick);
  return b;
}
