// Ops-Core console: the shell. Sign-in, the router (every view has a link: #/runs/<id>...),
// search by id, and the refresh loop of the view on screen. Views live in their own modules.
import { agentView, agentsView, overviewView } from "./fleet.js";
import { logsView } from "./logs.js";
import { deadLettersView, runView, runsView, waitingView } from "./runs.js";
import { $, ApiError, api, el, key, session, setKey, toast } from "./ui.js";
import { deliveriesView, eventsView, schedulesView, templateView, templatesView } from "./work.js";

const REFRESH_MS = 2500;
const ROUTES = [
  [/^$|^overview$/, overviewView, "overview"],
  [/^agents$/, agentsView, "agents"],
  [/^agents\/(.+)$/, agentView, "agents"],
  [/^runs$/, runsView, "runs"],
  [/^runs\/(.+)$/, runView, "runs"],
  [/^waiting$/, waitingView, "waiting"],
  [/^dead-letters$/, deadLettersView, "dead-letters"],
  [/^templates$/, templatesView, "templates"],
  [/^templates\/(.+)$/, templateView, "templates"],
  [/^schedules$/, schedulesView, "schedules"],
  [/^webhooks$/, eventsView, "webhooks"],
  [/^webhooks\/(.+)$/, deliveriesView, "webhooks"],
  [/^logs$/, logsView, "logs"],
];
const current = { timer: null, stop: null, generation: 0 };

function stopView() {
  clearTimeout(current.timer);
  current.timer = null;
  if (current.stop) current.stop();
  current.stop = null;
  current.generation += 1;
}

async function route() {
  if (!session.me) return;
  stopView();
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const main = $("#view");
  main.replaceChildren();
  const match = ROUTES.find(([re]) => re.test(path));
  if (!match) { main.append(el("h2", "", "Not found"), el("p", "muted", `Nothing at #/${path}.`)); return; }
  const [re, view, tab] = match;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  const id = decodeURIComponent((path.match(re) || [])[1] || "");
  const made = view(main, params, id);
  const generation = current.generation;
  if (typeof made === "function") {
    const loop = async (poll) => {
      try {
        await made(poll);
        $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (error) {
        if (generation !== current.generation) return;
        if (error instanceof ApiError && error.status === 404 && !poll) {
          main.replaceChildren(el("h2", "", "Not found"), el("p", "error", error.message));
          return;
        }
        $("#status").textContent = `error: ${error.message}`;
      }
      if (generation === current.generation) current.timer = setTimeout(() => loop(true), REFRESH_MS);
    };
    loop(false);
  } else if (made && made.stop) {
    current.stop = made.stop;
  }
}

// --- search by id: a run, a task (its run), an agent or a template ---------------------------------
async function search(id) {
  const q = encodeURIComponent(id);
  const tries = [
    [`/v1/opscore/sessions/${q}`, () => `#/runs/${q}`],
    [`/v1/opscore/tasks/${q}`, (t) => `#/runs/${encodeURIComponent(t.sessionId)}?task=${q}`],
    [`/v1/opscore/agents/${q}`, () => `#/agents/${q}`],
    [`/v1/opscore/workflows/${q}`, () => `#/templates/${q}`],
  ];
  for (const [path, target] of tries) {
    try { location.hash = target(await api(path)); return; } catch (error) { if (!(error instanceof ApiError) || error.status >= 500) break; }
  }
  toast(`No run, task, agent or template has the id '${id}'.`, true);
}

// --- sign-in --------------------------------------------------------------------------------------
async function signIn(candidate) {
  setKey(candidate);
  try {
    session.me = await api("/v1/opscore/me");
  } catch (error) {
    setKey(null);
    $("#login-error").textContent = error.status === 401 ? "That key was not accepted." : error.message;
    return;
  }
  $("#login").hidden = true;
  $("#login-error").textContent = "";
  $("#key").value = "";
  for (const id of ["#app", "#nav", "#search", "#who", "#signout"]) $(id).hidden = false;
  $("#who").textContent = `${session.me.name} · ${session.me.role}`;
  $("#who").title = $("#who").textContent;
  $("#version").textContent = `v${session.me.version}`;
  route();
}

function signOut(message) {
  stopView();
  setKey(null);
  session.me = null;
  for (const id of ["#app", "#nav", "#search", "#who", "#signout"]) $(id).hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("#key").value.trim()); });
  $("#signout").addEventListener("click", () => signOut(""));
  document.addEventListener("opscore:signout", () => { if (session.me) signOut("That key is no longer accepted."); });
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("#search-id").value.trim();
    if (id) search(id);
  });
  window.addEventListener("hashchange", route);
  if (key()) signIn(key());
});
