// The swarm dashboard: the board, registry and questions from /api/state (fetched again shortly after feed
// events arrive), the feed live from /events, one worker's pane live from /panes/W/events. Every text from
// the swarm goes into the page as text (textContent), never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const STATUSES = ["open", "assigned", "in_progress", "validating", "done", "blocked", "cancelled"];
const FEED_KEEP = 500;
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function age(seconds, since) {
  if (seconds === null || seconds === undefined) return "-";
  const s = seconds + (Date.now() - since) / 1000;
  return s < 90 ? `${Math.round(s)}s` : `${Math.round(s / 60)}m`;
}

async function act(name, body) {
  $("#error").textContent = "";
  const response = await fetch(`/api/actions/${name}`, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
    body: JSON.stringify(body || {}),
  });
  const result = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) $("#error").textContent = `${name}: ${result.error || response.status}`;
  scheduleRefresh();
  return result;
}

// ----- state: board, registry, waiting --------------------------------------------------------------------
let fetchedAt = Date.now();
let lastState = null;

function renderBoard(tasks) {
  const columns = $("#board .columns");
  columns.replaceChildren();
  for (const status of STATUSES) {
    const mine = tasks.filter((t) => t.status === status);
    if (!mine.length && (status === "cancelled" || status === "validating")) continue;
    const column = el("div", {class: `column status-${status}`, "data-status": status},
                      el("h3", {}, `${status.replace("_", " ")} (${mine.length})`));
    for (const task of mine) column.append(renderTask(task));
    columns.append(column);
  }
}

function renderTask(task) {
  const failed = task.attempts.filter((a) => a.outcome !== "running" && a.outcome !== "passed");
  const last = task.attempts[task.attempts.length - 1];
  const card = el("div", {class: "task", "data-task": task.id},
    el("span", {class: "id"}, task.id), " ", el("span", {class: "title"}, task.title),
    el("div", {class: "meta"},
      task.assignee ? `worker ${task.assignee} · ` : "",
      `attempts ${task.attempts.length}`,
      task.blocked_by.length ? ` · after ${task.blocked_by.join(", ")}` : "",
      task.notes.length ? ` · ${task.notes.length} notes` : ""));
  if (last && last.reason) card.append(el("div", {class: "meta reason"}, `last: ${last.reason.split("\n")[0]}`));
  for (const note of task.notes.slice(-3)) card.append(el("div", {class: "meta note"}, `${note.kind}: ${note.text}`));
  if (task.status === "blocked" || (task.status === "open" && failed.length)) {
    card.append(el("button", {type: "button", class: "retry", onclick: () => act("retry", {tasks: [task.id]})}, "retry"));
  }
  return card;
}

function renderRegistry(agents) {
  const body = $("#registry tbody");
  body.replaceChildren();
  for (const agent of agents) {
    const row = el("tr", {"data-agent": agent.name},
      el("td", {}, agent.name), el("td", {}, agent.role), el("td", {class: "state"}, agent.agent_state ? `${agent.status} (${agent.agent_state})` : agent.status),
      el("td", {}, agent.task || ""), el("td", {class: "age"}, age(agent.heartbeat_age, fetchedAt)), el("td", {}));
    const actions = row.lastChild;
    if (agent.pane !== "gone") {
      actions.append(el("button", {type: "button", class: "view", onclick: () => showPane(agent.name)}, "pane"));
      if (agent.role !== "supervisor") {
        actions.append(el("button", {type: "button", class: "kill",
                                     onclick: () => confirm(`kill ${agent.name}?`) && act("kill", {worker: agent.name})}, "kill"));
      }
    }
    body.append(row);
  }
}

function renderWaiting(waiting) {
  const section = $("#waiting");
  const list = section.querySelector("ul");
  section.classList.toggle("some", waiting.length > 0);
  const typing = new Map([...list.querySelectorAll("input")].map((i) => [i.name, i.value]));
  list.replaceChildren();
  for (const worker of waiting) {
    const input = el("input", {name: worker.name, placeholder: "your answer", autocomplete: "off"});
    input.value = typing.get(worker.name) || "";
    const form = el("form", {class: "answer", "data-worker": worker.name},
      el("b", {}, worker.name), ` (${worker.task}) asks: `, el("q", {class: "question"}, worker.question), " ",
      input, el("button", {type: "submit"}, "answer"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await act("reply", {worker: worker.name, text: input.value});
      if (result.id) input.value = "";
    });
    list.append(el("li", {}, form));
  }
}

function render(state) {
  lastState = state;
  fetchedAt = Date.now();
  renderBoard(state.tasks);
  renderRegistry(state.agents);
  renderWaiting(state.waiting);
  $("#supervisor").textContent = state.supervisor.running ? `supervisor pid ${state.supervisor.pid}` : "supervisor not running";
  $("#dispatch").textContent = state.paused ? "dispatch PAUSED" : "dispatch on";
  $("#pause").hidden = state.paused;
  $("#resume").hidden = !state.paused;
}

let refreshTimer = null;
async function refresh() {
  refreshTimer = null;
  const response = await fetch("/api/state", {credentials: "same-origin"});
  if (response.ok) render(await response.json());
}
function scheduleRefresh() {
  if (refreshTimer === null) refreshTimer = setTimeout(refresh, 200);
}

// ----- the feed -------------------------------------------------------------------------------------------
function appendEvent(event) {
  const list = $("#feed ol");
  const time = event.ts.slice(11, 19);
  list.prepend(el("li", {"data-seq": event.seq, class: `type-${event.type}`},
    `${event.seq} ${time} ${event.agent} ${event.type}${event.task ? " " + event.task : ""}: ${event.summary}`));
  while (list.children.length > FEED_KEEP) list.lastChild.remove();
}

function followFeed(since) {
  const source = new EventSource(`/events?since=${since}`);
  source.onopen = () => { $("#connection").textContent = "live"; };
  source.onerror = () => { $("#connection").textContent = "reconnecting"; };
  source.onmessage = (message) => {
    appendEvent(JSON.parse(message.data));
    scheduleRefresh();
  };
}

// ----- one worker's pane ----------------------------------------------------------------------------------
let paneSource = null;
function showPane(worker) {
  if (paneSource) paneSource.close();
  $("#pane .worker").textContent = worker;
  $("#pane").dataset.worker = worker;
  const pre = $("#pane pre");
  pre.textContent = "";
  paneSource = new EventSource(`/panes/${encodeURIComponent(worker)}/events`);
  paneSource.onmessage = (message) => {
    const text = JSON.parse(message.data).text;
    pre.textContent = text === null ? "(the session has ended)" : text;
    pre.scrollTop = pre.scrollHeight;
  };
}

// ----- start ----------------------------------------------------------------------------------------------
$("#pause").addEventListener("click", () => act("pause"));
$("#resume").addEventListener("click", () => act("resume"));
$("#steer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const worker = $("#pane").dataset.worker;
  const input = event.target.elements.text;
  if (!worker) { $("#error").textContent = "choose a worker's pane first"; return; }
  const result = await act("steer", {worker, text: input.value});
  if (result.id) input.value = "";
});
setInterval(() => {  // heartbeat ages move on between fetches: counted here, the server is not asked
  if (!lastState) return;
  for (const agent of lastState.agents) {
    const cell = document.querySelector(`#registry tr[data-agent="${CSS.escape(agent.name)}"] .age`);
    if (cell) cell.textContent = age(agent.heartbeat_age, fetchedAt);
  }
}, 1000);

(async () => {
  await refresh();
  followFeed(Math.max(0, (lastState ? lastState.seq : 0) - 200));
})();
