// The hopgraph dashboard: runs, a run drawn live, graphs, tools. Plain script, no build.
// It uses only the public HTTP API (same origin as this page) and the WebSocket API that
// GET /me names; every value from the API is put into the page as text, never as HTML
// (Mermaid's SVG aside, which Mermaid sanitizes: securityLevel "strict").
"use strict";

const BASE = location.pathname.replace(/\/ui\/?$/, ""); // the API, under any stage prefix
const TOKEN_KEY = "hopgraph.token";
const PAGE = 50; // runs and graphs per page
const STEP_PAGE = 500; // steps per request when a run page loads
const FIRST_STEPS = 60; // a run page draws first its last steps (where its timeline opens)
const TASK_PAGE = 100; // tasks of a superstep shown at once
const LANES_SHOWN = 12; // a wider superstep (a map) shows this many lanes and a summary
const ROW = 34; // px: the timeline's rows are this tall, so only the visible ones are drawn
const FINAL = new Set(["completed", "failed", "cancelled"]);

const session = { token: localStorage.getItem(TOKEN_KEY), me: null };
let leave = () => {}; // what the current view stops (timers, sockets) when another opens

// -- small helpers ---------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.type = error.type;
  }
}

async function api(path, options = {}) {
  const headers = { accept: "application/json", ...(options.headers || {}) };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const reply = await fetch(BASE + path, { ...options, headers });
  const body = await reply.json().catch(() => null);
  if (reply.status === 401 && !options.signingIn) signIn("Your session has ended: sign in again.");
  if (!reply.ok) throw new ApiError(reply.status, body);
  return body;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
function duration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
// From its start to its last change (or now, while it runs); ``last``: its last step, whose
// end is later than the header's last change (the start of the step that ended it).
function runDuration(run, last) {
  let end = FINAL.has(run.status) ? Date.parse(run.updated_at) : Date.now();
  if (last && FINAL.has(run.status)) {
    // a step read from the log has started_at; a step event, the time it committed (ts)
    const stepEnd = last.started_at ? Date.parse(last.started_at) + last.duration_ms
      : Date.parse(last.ts);
    if (!Number.isNaN(stepEnd)) end = Math.max(end, stepEnd);
  }
  return duration(end - Date.parse(run.created_at));
}
const badge = (status) => el("span", { class: `badge status-${status}` }, status);
const json = (value) => JSON.stringify(value, null, 2);
const clip = (text, limit) => (text.length > limit ? `${text.slice(0, limit)}…` : text);
function pre(value, limit = 20000) {
  const text = json(value) ?? "undefined";
  if (text.length <= limit) return el("pre", {}, text);
  return el("details", {}, el("summary", {}, `${text.length.toLocaleString()} characters`),
    el("pre", {}, text));
}
function failure(error) {
  return el("p", { class: "error", role: "alert" }, error.message || String(error));
}
// Each view (and the sign-in form) is a generation; a view still loading when another
// opens must not draw over it: the show() it was given throws Stale, which route() ignores.
let generation = 0;
class Stale extends Error {}
function showFor(mine) {
  return (...nodes) => {
    if (mine !== generation) throw new Stale();
    return show(...nodes);
  };
}
function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
  return main;
}

// -- sign-in ---------------------------------------------------------------------------------
// The local stack has its own token issuer (POST /local/token); on AWS the page takes a token
// of the deployment's identity provider (Cognito or another), pasted in.
async function localIssuer() {
  try {
    const reply = await fetch(`${BASE}/.well-known/openid-configuration`);
    return reply.ok && (await reply.json()).issuer !== undefined;
  } catch {
    return false;
  }
}

async function signIn(reason) {
  leave();
  generation += 1;
  session.me = null;
  document.getElementById("who").replaceChildren();
  const message = el("p", { class: "error", role: "alert" }, reason || "");
  const useToken = async (token) => {
    session.token = token;
    try {
      session.me = await api("/me", { signingIn: true });
    } catch (error) {
      session.token = null;
      message.textContent = `Not signed in: ${error.message}`;
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    route();
  };
  const pasted = el("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    useToken(event.target.token.value.trim());
  } }, el("h3", {}, "A bearer token"),
  el("textarea", { name: "token", rows: 4, placeholder: "eyJ…", required: true }),
  el("button", { type: "submit" }, "Sign in with this token"));
  const forms = el("div", { class: "signin" });
  show(el("h2", {}, "Sign in"), message, forms);
  if (await localIssuer()) {
    forms.append(el("form", { class: "card", id: "local-signin", onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        const ask = { user: form.user.value.trim(), admin: form.admin.checked };
        // Under --auth strict the issuer signs only for the stack's login secret
        if (form.secret.value) ask.secret = form.secret.value;
        const reply = await api("/local/token", { method: "POST", signingIn: true, json: ask });
        await useToken(reply.token);
      } catch (error) {
        message.textContent = error.message;
      }
    } }, el("h3", {}, "The local stack's issuer"),
    el("label", {}, "User ", el("input", { name: "user", value: "dev", required: true })),
    el("label", {}, el("input", { type: "checkbox", name: "admin" }), " admin"),
    el("label", {}, "Login secret (--auth strict: the stack's data folder, login-secret) ",
      el("input", { name: "secret", type: "password", autocomplete: "off" })),
    el("button", { type: "submit" }, "Sign in")));
  }
  forms.append(pasted);
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  session.token = null;
  signIn();
}

function showWho() {
  const me = session.me;
  document.getElementById("who").replaceChildren(
    el("span", { id: "user" }, me.user, me.admin ? " (admin)" : ""), " ",
    session.token ? el("button", { class: "link", onclick: signOut }, "sign out") : "");
}

// -- routing ---------------------------------------------------------------------------------
async function route() {
  leave();
  leave = () => {};
  const mine = ++generation;
  const view = showFor(mine);
  if (!session.me) {
    try {
      session.me = await api("/me", { signingIn: true });
    } catch (error) {
      if (error.status === 401) return signIn(session.token ? "That token is refused." : "");
      return show(failure(error));
    }
  }
  showWho();
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.view === parts[0]);
  }
  try {
    if (parts[0] === "runs" && parts[1]) await runPage(parts[1], view);
    else if (parts[0] === "graphs") await graphsPage(parts[1], view);
    else if (parts[0] === "tools") await toolsPage(view);
    else await runsPage(params, view);
  } catch (error) {
    if (!(error instanceof Stale) && mine === generation) show(failure(error));
  }
}
window.addEventListener("hashchange", route);

// -- graphs by id (names for the runs list) --------------------------------------------------
const graphNames = new Map();
async function graphName(graphId) {
  if (!graphNames.has(graphId)) {
    graphNames.set(graphId, api(`/graphs/${encodeURIComponent(graphId)}`)
      .then((g) => g.name || graphId, () => graphId));
  }
  return graphNames.get(graphId);
}

// -- Runs ------------------------------------------------------------------------------------
async function runsPage(params, show) {
  const status = params.get("status") || "";
  const graph = params.get("graph") || "";
  const filters = el("form", { class: "filters", onchange: (event) => {
    const form = event.currentTarget;
    const query = new URLSearchParams();
    if (form.status.value) query.set("status", form.status.value);
    if (form.graph.value) query.set("graph", form.graph.value);
    location.hash = `#/runs?${query}`;
  } },
  el("label", {}, "Status ", el("select", { name: "status" },
    ["", "running", "completed", "failed", "cancelled"].map((s) =>
      el("option", { value: s, selected: s === status }, s || "any")))),
  el("label", {}, "Graph ", el("select", { name: "graph" },
    el("option", { value: "" }, "any"))));
  const rows = el("tbody");
  const more = el("button", { class: "more", hidden: true }, "Load more");
  const error = el("div");
  const counts = el("div", { class: "counts", id: "run-counts" });
  const admin = session.me.admin;
  show(el("h2", {}, "Runs"), filters, counts, error, el("table", { class: "runs" },
    el("thead", {}, el("tr", {}, el("th", {}, "run"), el("th", {}, "status"),
      el("th", {}, "graph"), el("th", {}, "started"), el("th", {}, "duration"),
      el("th", {}, "steps"), admin ? el("th", {}, "owner") : null)),
    rows), more);
  api(`/graphs?limit=200`).then((page) => {
    for (const g of page.items) {
      graphNames.set(g.graph_id, Promise.resolve(g.name));
      filters.graph.append(el("option", { value: g.graph_id, selected: g.graph_id === graph },
        `${g.name} (${g.graph_id})`));
    }
  }, () => {});

  const filter = new URLSearchParams({ limit: PAGE });
  if (status) filter.set("status", status);
  if (graph) filter.set("graph_id", graph);
  const steps = new Map(); // run id -> [updated_at, steps]: the list has no step count
  const row = (run) => {
    const count = el("td", { class: "num" });
    const name = el("td");
    graphName(run.graph_id).then((n) => {
      name.textContent = n;
      const options = [...filters.graph.options].map((o) => o.value);
      if (!options.includes(run.graph_id)) { // a graph created since the page opened
        filters.graph.append(el("option", { value: run.graph_id }, `${n} (${run.graph_id})`));
      }
    });
    const known = steps.get(run.run_id);
    // a finished run's count is read once; a running run's, at each refresh
    if (known) count.textContent = known[1];
    if (!(known && known[0] === run.updated_at && FINAL.has(run.status))) api(`/runs/${run.run_id}`).then((r) => {
      steps.set(run.run_id, [run.updated_at, r.steps]);
      count.textContent = r.steps;
    }, () => {});
    return el("tr", { class: `status-${run.status}`, "data-run": run.run_id },
      el("td", {}, el("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
      el("td", {}, badge(run.status)), name, el("td", {}, when(run.created_at)),
      el("td", {}, runDuration(run)), count, admin ? el("td", {}, run.owner || "") : null);
  };
  let cursor = null;
  let extra = []; // rows of the pages after the first, kept as loaded
  const refresh = async () => {
    try {
      const page = await api(`/runs?${filter}`);
      if (extra.length === 0) cursor = page.next_cursor;
      rows.replaceChildren(...page.items.map(row), ...extra);
      more.hidden = !cursor;
      if (!page.items.length) rows.append(el("tr", {}, el("td", { colspan: 7, class: "muted" },
        "No runs yet: start one from a graph.")));
      error.replaceChildren();
    } catch (e) {
      error.replaceChildren(failure(e));
    }
  };
  more.onclick = async () => {
    const page = await api(`/runs?${filter}&cursor=${encodeURIComponent(cursor)}`);
    cursor = page.next_cursor;
    const added = page.items.map(row);
    extra = extra.concat(added);
    rows.append(...added);
    more.hidden = !cursor;
  };
  // Runs per status for the graph chosen: each a link to the list of that status. Counting
  // reads the index entries of every run counted, so it is refreshed less often than the list.
  const countQuery = graph ? `?graph_id=${encodeURIComponent(graph)}` : "";
  const refreshCounts = async () => {
    try {
      const reply = await api(`/runs/counts${countQuery}`);
      const link = (s, n) => {
        const query = new URLSearchParams({ status: s });
        if (graph) query.set("graph", graph);
        return el("a", { href: `#/runs?${query}`, "data-status": s },
          el("span", { class: `badge status-${s}${s === status ? " active" : ""}` },
            `${s} ${n}${reply.exact ? "" : "+"}`));
      };
      counts.replaceChildren(...Object.entries(reply.counts).map(([s, n]) => link(s, n)));
      const options = [...filters.status.options].map((o) => o.value);
      for (const s of Object.keys(reply.counts)) { // statuses the API knows (paused, when it has it)
        if (!options.includes(s)) filters.status.append(el("option", { value: s, selected: s === status }, s));
      }
    } catch (e) {
      counts.replaceChildren();
    }
  };
  const mine = generation;
  await Promise.all([refresh(), refreshCounts()]);
  if (mine !== generation) return; // another view opened meanwhile
  const timer = setInterval(refresh, 3000); // the list follows new runs and status changes
  const countTimer = setInterval(refreshCounts, 15000);
  leave = () => { clearInterval(timer); clearInterval(countTimer); };
}

// -- graph drawing ---------------------------------------------------------------------------
let drawings = 0;
if (window.mermaid) {
  window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral",
    flowchart: { useMaxWidth: true } });
}

// Mermaid text plus the classes that mark nodes: {visited: [...], running: [...], ...}.
function marked(doc, marks) {
  const lines = [doc.mermaid.trimEnd(),
    "    classDef visited fill:#d3f9d8,stroke:#2b8a3e,stroke-width:2px",
    "    classDef running fill:#d0ebff,stroke:#1c7ed6,stroke-width:3px",
    "    classDef failed fill:#ffe3e3,stroke:#e03131,stroke-width:3px",
    "    classDef ended stroke:#212529,stroke-width:4px"];
  for (const [name, nodes] of Object.entries(marks)) {
    const ids = [...nodes].map((n) => doc.node_ids[n]).filter(Boolean);
    if (ids.length) lines.push(`    class ${ids.join(",")} ${name}`);
  }
  return lines.join("\n") + "\n";
}

async function draw(container, doc, marks = {}) {
  if (!window.mermaid) {
    container.replaceChildren(el("p", { class: "muted" }, "Mermaid is not installed: run make."),
      el("pre", {}, doc.mermaid));
    return;
  }
  const { svg } = await window.mermaid.render(`graph-${++drawings}`, marked(doc, marks));
  container.innerHTML = svg; // Mermaid's own output, sanitized by it
  container.dataset.marks = JSON.stringify(marks, (k, v) => (v instanceof Set ? [...v] : v));
}

// -- A run -----------------------------------------------------------------------------------
function stepTasks(step) {
  // the lanes of a superstep: its tasks, or the one node of a chain step
  if (step.tasks && step.tasks.length) return step.tasks;
  return [{ task: step.node, node: step.node, status: step.status,
    duration_ms: step.duration_ms, error: step.error }];
}
const nextNodes = (step) => (Array.isArray(step.next) ? step.next : step.next ? [step.next] : [])
  .filter((n) => n !== "END");

async function runPage(runId, show) {
  let run = await api(`/runs/${encodeURIComponent(runId)}`);
  const steps = []; // by seq; a long run's are read a page at a time, the ones in view first
  let stopped = false; // the view was left: no more pages are read
  const pages = new Map(); // first seq -> the read of the steps before the tail from there
  const readSteps = (from) => { // steps from..from+STEP_PAGE-1 (those before the tail)
    if (!pages.has(from)) {
      const to = Math.min(from + STEP_PAGE, tail) - 1;
      pages.set(from, (async () => {
        for (let after = from - 1; after !== null && after < to;) { // a page may stop at 1 MB
          const page = await api(`/runs/${runId}/steps?after=${after}&limit=${to - after}`);
          for (const step of page.items) if (!steps[step.seq]) steps[step.seq] = step;
          after = page.next_after;
        }
      })());
    }
    return pages.get(from);
  };
  // The end of the log first (the timeline opens there); the rest once the page is drawn.
  const tail = Math.max(0, run.steps - FIRST_STEPS);
  const readTail = async () => {
    for (let after = tail - 1; after !== null;) {
      const page = await api(`/runs/${runId}/steps?after=${after}&limit=${STEP_PAGE}`);
      for (const step of page.items) steps[step.seq] = step;
      after = page.next_after;
    }
  };
  const [mermaidDoc, name] = await Promise.all([
    api(`/graphs/${encodeURIComponent(run.graph_id)}/mermaid?format=json`),
    graphName(run.graph_id), readTail()]);

  const graphTitle = `${name} (${run.graph_id})`;
  const header = el("div", { class: "run-header" });
  const graphBox = el("div", { class: "graph", id: "run-graph" });
  const timeline = el("div", { class: "timeline", id: "timeline" });
  const spacer = el("div", { class: "spacer" });
  const rowsBox = el("div", { class: "rows" });
  let rowsShown = new Map(); // seq -> {step, node}: the timeline's rows in the page
  timeline.append(spacer, rowsBox);
  const running = el("div", { class: "running", id: "running" });
  const detail = el("section", { class: "detail", id: "step-detail" },
    el("p", { class: "muted" }, "Choose a step in the timeline to see its updates and state."));
  const live = el("span", { class: "live", id: "live" });
  show(header, el("div", { class: "run-body" },
    el("section", {}, el("h3", {}, "Graph"), graphBox),
    el("section", {}, el("h3", {}, "Timeline ", live), timeline, running)), detail);

  let selected = null;
  // The controls and the questions' forms sit in slots of their own, drawn again only when
  // what they offer changes: taking a form or a button out of the page, even to put it back
  // at once, loses the cursor of whoever types in it, and a click that falls between.
  const about = el("div", { class: "about" });
  const controls = el("div", { class: "controls" });
  const questionsSlot = el("div", { class: "questions-slot" });
  const errorSlot = el("div", { class: "error-slot" });
  header.append(about, controls, questionsSlot, errorSlot);
  let offered = null;
  let asked = null;
  const renderHeader = () => {
    const act = async (call) => {
      try {
        const was = run.status;
        run = await call();
        if (FINAL.has(was) && !FINAL.has(run.status)) route(); // redriven: follow it live
        else update();
      } catch (error) { // the controls stay: their last refusal replaces the one before
        controls.querySelectorAll(".error").forEach((shown) => shown.remove());
        controls.append(failure(error));
      }
    };
    if (run.status !== offered) { // the controls depend on the run's status alone
      offered = run.status;
      controls.replaceChildren(...RUN_CONTROLS.map((control) => control(run, act)).filter(Boolean));
    }
    // the same forms while the same questions wait: a redraw keeps what is typed in them
    const nowAsked = JSON.stringify([run.status, run.pending || null]);
    if (nowAsked !== asked) {
      asked = nowAsked;
      const forms = resumeForms(run, () => act(() => api(`/runs/${runId}`)));
      questionsSlot.replaceChildren(...(forms.length ? [el("div", { id: "questions" }, forms)] : []));
    }
    const failedTask = steps.flatMap((s) => (s ? stepTasks(s) : []))
      .find((t) => t.status === "failed" && t.error);
    about.replaceChildren(
      el("h2", {}, "Run ", el("code", {}, runId), " ", badge(run.status)),
      el("dl", {},
        el("dt", {}, "graph"), el("dd", {}, el("a", { href: `#/graphs/${run.graph_id}` },
          graphTitle)),
        el("dt", {}, "started"), el("dd", {}, when(run.created_at)),
        el("dt", {}, "duration"), el("dd", {}, runDuration(run, steps[steps.length - 1])),
        el("dt", {}, "steps"), el("dd", { id: "step-count" }, `${run.steps} of at most ${run.max_steps}`),
        // a child run (a subgraph node's work): the parent's task it gives its result to
        run.parent ? [el("dt", {}, "parent"), el("dd", { id: "run-parent" },
          el("a", { href: `#/runs/${run.parent.run_id}` }, run.parent.run_id),
          run.parent.task ? ` (task ${run.parent.task} of step ${run.parent.seq})`
            : ` (forked from step ${run.parent.seq})`)] : null,
        session.me && session.me.admin ? [el("dt", {}, "owner"), el("dd", {}, run.owner || "")]
          : null));
    errorSlot.replaceChildren(...(run.error ? [el("div", { class: "error-box", id: "run-error",
      role: "alert" }, el("strong", {}, "Error", failedTask ? ` in task ${failedTask.task}` : ""),
    failedTask && failedTask.error !== run.error ? el("pre", {}, failedTask.error) : null,
    el("pre", {}, run.error))] : []));
  };

  const marks = () => {
    const visited = new Set();
    const failed = new Set();
    for (const step of steps) {
      if (!step) continue;
      for (const task of stepTasks(step)) {
        (task.status === "failed" ? failed : visited).add(task.node);
      }
    }
    const last = steps[steps.length - 1];
    const now = new Set();
    const ended = new Set();
    if (run.status === "running") {
      for (const n of last ? nextNodes(last) : [run.current_node]) if (n) now.add(n);
    } else if (last) {
      for (const t of stepTasks(last)) ended.add(t.node);
      if (run.status === "completed") { visited.add("END"); ended.add("END"); }
    }
    return { visited, failed, running: now, ended };
  };
  let drawn = "";
  const redraw = async () => {
    const m = marks();
    const key = JSON.stringify(m, (k, v) => (v instanceof Set ? [...v].sort() : v));
    if (key === drawn) return;
    drawn = key;
    await draw(graphBox, mermaidDoc, m);
  };

  // The timeline: one row per superstep, one lane per task; only visible rows are drawn.
  const lane = (task, step, short) => el("button", {
    class: `lane status-${task.status}`, title: `${task.task} ${duration(task.duration_ms)}`,
    style: `flex-grow:${Math.max(1, Math.log10(1 + (task.duration_ms || 0)) * 4)}`,
    onclick: () => select(step.seq),
  }, short && task.index !== undefined ? `[${task.index}]` : task.task,
  step.attempt > 1 ? ` ×${step.attempt}` : "");
  const timelineRow = (step, top) => {
    const tasks = stepTasks(step);
    // a wide superstep's record names some of its tasks (failed ones first) and counts all
    const total = Math.max(step.tasks_total || 0, tasks.length);
    const wide = total > LANES_SHOWN; // a wide map's lanes show their item's index
    const shown = tasks.slice(0, LANES_SHOWN).map((t) => lane(t, step, wide));
    if (total > LANES_SHOWN) {
      const failedCount = tasks.filter((t) => t.status === "failed").length;
      shown.push(el("span", { class: "lane-summary" }, `+${total - LANES_SHOWN} more`,
        failedCount ? `, ${failedCount} failed` : ""));
    }
    return el("div", { class: "row", "data-seq": step.seq, style: `top:${top}px` },
    el("span", { class: "seq" }, step.seq),
    el("span", { class: "lanes" }, shown),
    el("span", { class: "took" }, duration(step.duration_ms)),
    el("button", { class: "fork", title: `Fork a new run from the state after step ${step.seq}`,
      "aria-label": `Fork from step ${step.seq}`, onclick: () => select(step.seq, true) }, "fork"));
  };
  const paint = () => {
    const count = steps.length;
    spacer.style.height = `${count * ROW}px`;
    const first = Math.max(0, Math.floor(timeline.scrollTop / ROW) - 5);
    const last = Math.min(count, first + Math.ceil((timeline.clientHeight || 400) / ROW) + 10);
    // A row in view stays in the page while its step does not change (a committed step never
    // does): only rows that leave the view go, only new ones are drawn. Rows drawn again at
    // every step of a live run lost clicks that a step fell between.
    const kept = new Map();
    let missing = -1;
    for (let seq = first; seq < last; seq++) {
      if (!steps[seq]) {
        if (missing < 0) missing = seq;
        continue;
      }
      const old = rowsShown.get(seq);
      const row = old && old.step === steps[seq] ? old : { step: steps[seq], node: null };
      row.node = row.node || timelineRow(steps[seq], seq * ROW);
      row.node.classList.toggle("selected", seq === selected);
      kept.set(seq, row);
    }
    for (const [seq, row] of rowsShown) if (kept.get(seq) !== row) row.node.remove();
    for (const [seq, row] of kept) if (rowsShown.get(seq) !== row) rowsBox.append(row.node);
    rowsShown = kept;
    if (missing >= 0 && missing < tail && !stopped) { // rows in view not read yet: their page
      readSteps(missing - (missing % STEP_PAGE)).then(() => { if (!stopped) paint(); }, () => {});
    }
    const now = run.status === "running" ? [...marks().running] : [];
    running.replaceChildren(...(now.length ? [el("span", { class: "muted" }, "running now: "),
      ...now.map((n) => el("span", { class: "lane status-running" }, n))] : []));
  };
  timeline.addEventListener("scroll", () => requestAnimationFrame(paint));

  const select = async (seq, forking = false) => {
    selected = seq;
    paint();
    detail.replaceChildren(el("p", { class: "muted" }, `Loading step ${seq}…`));
    try {
      detail.replaceChildren(...(await stepDetail(runId, run, seq)), forkForm(runId, seq, forking));
      if (forking) detail.querySelector("form.fork textarea").focus();
    } catch (error) {
      detail.replaceChildren(failure(error));
    }
  };

  const update = () => {
    renderHeader();
    paint();
    redraw();
  };
  update();
  const atEnd = () => { timeline.scrollTop = timeline.scrollHeight; };
  atEnd();
  // The rest of a long log, a page at a time, from its start; then the graph's marks
  (async () => {
    for (let from = 0; from < tail && !stopped; from += STEP_PAGE) await readSteps(from);
    if (!stopped && tail > 0) update();
  })().catch((error) => { if (!stopped) detail.replaceChildren(failure(error)); });

  // Live: the run's events over the WebSocket (replayed from the last step read, then as
  // they commit); without a WebSocket URL, the page polls.
  const addStep = async (event) => {
    if (steps[event.seq]) return;
    let step = event;
    if (event.truncated) { // cut to fit a WebSocket message: read it whole
      const page = await api(`/runs/${runId}/steps?after=${event.seq - 1}&limit=1`);
      step = page.items[0] || event;
    }
    steps[step.seq] = step;
    run = { ...run, steps: Math.max(run.steps, step.seq + 1) };
    update();
    atEnd();
  };
  const onRun = async (event) => {
    if (event.status === run.status && !FINAL.has(event.status)) return;
    run = await api(`/runs/${runId}`);
    for (let after = steps.length - 1; steps.length < run.steps && after !== null;) {
      const page = await api(`/runs/${runId}/steps?after=${after}&limit=${STEP_PAGE}`);
      for (const step of page.items) steps[step.seq] = step;
      after = page.next_after;
    }
    update();
    atEnd();
  };
  const unfollow = follow(runId, steps.length - 1, { step: addStep, run: onRun }, live, () => run);
  leave = () => { stopped = true; unfollow(); };
}

// What a person can do to a run: each entry answers a control for the run (or null).
// ``act(call)`` runs ``call`` (an API request answering the run) and redraws the page; a
// run that goes on from a final status (a redrive) is opened again, to follow it live.
// Forking is on each step (stepDetail), answering a paused run's question below (resumeForms).
const CANCELLABLE = new Set(["running", "paused"]);
const RUN_CONTROLS = [
  (run, act) => !CANCELLABLE.has(run.status) ? null : el("button", { id: "cancel", onclick: () => {
    if (confirm(`Cancel run ${run.run_id}?`)) {
      act(() => api(`/runs/${run.run_id}/cancel`, { method: "POST" }));
    }
  } }, "Cancel"),
  (run, act) => {
    if (run.status !== "failed") return null;
    // a run its step limit stopped goes on only under a higher one
    const limit = el("input", { id: "redrive-max-steps", type: "number", min: 1,
      placeholder: "step limit", "aria-label": "Step limit for the redrive (optional)",
      title: "A higher step limit, needed when the limit stopped the run" });
    return el("span", { class: "redrive" }, el("button", { id: "redrive",
      title: "Run the failed step again, as a new attempt", onclick: () => {
        if (confirm(`Redrive run ${run.run_id} from its failed step?`)) {
          const json = limit.value ? { max_steps: Number(limit.value) } : {};
          act(() => api(`/runs/${run.run_id}/redrive`, { method: "POST", json }));
        }
      } }, "Redrive"), limit);
  },
];

// A paused run's questions (GET /runs/{id} lists them in `pending`), one form each: Approve
// and Reject for a yes-or-no question (a boolean schema), Continue for a breakpoint (before
// or after a node: no value), else a JSON value. The answer is
// POST /runs/{id}/resume {value, task}; a refusal (409: nothing waits, 422: the value does
// not match the schema) is shown in the form. ``answered(run)`` gets the run's summary.
function resumeForms(run, answered) {
  if (run.status !== "paused" || !Array.isArray(run.pending)) return [];
  return run.pending.map((ask) => {
    const message = el("p", { class: "error", role: "alert" });
    const send = async (value) => {
      message.textContent = "";
      try {
        const body = { value, task: ask.task };
        answered(await api(`/runs/${run.run_id}/resume`, { method: "POST", json: body }));
      } catch (error) {
        message.textContent = error.status === 409 ? `Nothing waits for an answer: ${error.message}`
          : error.message;
      }
    };
    const yesNo = ask.schema && ask.schema.type === "boolean";
    const breakpoint = ask.kind === "before" || ask.kind === "after"; // goes on with no value
    const answer = el("textarea", { name: "value", rows: 4, spellcheck: "false",
      "aria-label": `Answer for ${ask.task} (JSON)`, placeholder: "a JSON value" });
    const form = el("form", { class: "card resume", "data-task": ask.task, onsubmit: (event) => {
      event.preventDefault();
      let value;
      try {
        value = JSON.parse(answer.value);
      } catch (error) {
        message.textContent = `Not JSON: ${error.message}`;
        return;
      }
      send(value);
    } },
    el("h3", {}, `${ask.task} waits`, ask.kind === "interrupt" ? " for an answer"
      : ` (${ask.kind} ${ask.node})`),
    ask.prompt ? el("p", { class: "prompt" }, ask.prompt) : null,
    ask.until ? el("p", { class: "muted" }, "until ", when(new Date(ask.until * 1000).toISOString()))
      : null,
    ask.schema && !yesNo ? el("details", {}, el("summary", {}, "Schema of the answer"),
      pre(ask.schema)) : null,
    breakpoint ? el("button", { type: "button", class: "continue", onclick: () => send(null) },
      "Continue")
      : yesNo ? [el("button", { type: "button", class: "approve", onclick: () => send(true) },
        "Approve"), el("button", { type: "button", class: "reject", onclick: () => send(false) },
        "Reject")]
        : [answer, el("button", { type: "submit" }, "Answer")],
    message);
    return form;
  });
}

function follow(runId, after, handlers, live, current) {
  let socket = null;
  let closed = false;
  let poll = null;
  const url = session.me.websocket_url;
  const setLive = (text, on) => { live.textContent = text; live.classList.toggle("on", on); };
  if (FINAL.has(current().status)) {
    setLive("", false);
    return () => {};
  }
  if (!url) {
    setLive("polling", true);
    poll = setInterval(() => handlers.run({ status: "poll" }), 2000);
    return () => clearInterval(poll);
  }
  const connect = () => {
    const address = session.token ? `${url}?token=${encodeURIComponent(session.token)}` : url;
    socket = new WebSocket(address);
    socket.onopen = () => {
      setLive("live", true);
      socket.send(JSON.stringify({ action: "subscribe", run_id: runId, after }));
    };
    socket.onmessage = async (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "step") {
        after = Math.max(after, event.seq);
        await handlers.step(event);
      } else if (event.type === "run") {
        await handlers.run(event);
        if (FINAL.has(event.status)) { setLive("", false); closed = true; socket.close(); }
      }
    };
    socket.onclose = () => {
      if (closed) return;
      setLive("reconnecting", false);
      setTimeout(connect, 2000);
    };
  };
  connect();
  return () => { closed = true; if (socket) socket.close(); };
}

// Before/after per top-level key: added, removed, changed.
function diff(before, after) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  const rows = [];
  for (const key of keys) {
    const had = before && key in before;
    const has = after && key in after;
    const a = had ? json(before[key]) : undefined;
    const b = has ? json(after[key]) : undefined;
    if (a === b) continue;
    const kind = !had ? "added" : !has ? "removed" : "changed";
    rows.push(el("tr", { class: `diff-${kind}` }, el("td", {}, el("code", {}, key)),
      el("td", {}, kind), el("td", {}, had ? pre(before[key], 4000) : ""),
      el("td", {}, has ? pre(after[key], 4000) : "")));
  }
  if (!rows.length) return el("p", { class: "muted" }, "The state did not change.");
  return el("table", { class: "diff" }, el("thead", {}, el("tr", {}, el("th", {}, "key"),
    el("th", {}, ""), el("th", {}, "before"), el("th", {}, "after"))), el("tbody", {}, rows));
}

async function stepDetail(runId, run, seq) {
  const step = await api(`/runs/${runId}/steps/${seq}?task_limit=${TASK_PAGE}`);
  const before = seq === 0 ? run.input : (await api(`/runs/${runId}/steps/${seq - 1}?task_limit=1`)).state;
  const parts = [el("h3", {}, `Step ${seq}: `, step.node, " ", badge(step.status)),
    el("p", {}, `${duration(step.duration_ms)}, attempt ${step.attempt}, started `,
      when(step.started_at), step.next ? ` → next: ${[].concat(step.next).join(", ")}` : "")];
  if (step.error) parts.push(el("div", { class: "error-box", role: "alert" }, el("pre", {}, step.error)));
  const childLink = (id) => el("a", { class: "child-run", href: `#/runs/${id}` }, id);
  if (step.child_run_id) parts.push(el("p", {}, "Ran as child run ", childLink(step.child_run_id)));
  if (step.task_details.length) {
    const list = el("tbody");
    const addTasks = (tasks) => list.append(...tasks.map((t) => el("tr", { class: `status-${t.status}` },
      el("td", {}, t.task, t.child_run_id ? [" → ", childLink(t.child_run_id)] : null),
      el("td", {}, badge(t.status)), el("td", {}, duration(t.duration_ms)),
      el("td", {}, t.attempt), el("td", {}, t.error ? el("code", { class: "error" }, t.error)
        : el("code", {}, clip(JSON.stringify(t.updates), 300))))));
    addTasks(step.task_details);
    let next = step.task_next;
    const more = el("button", { class: "more", hidden: !next, onclick: async () => {
      const page = await api(`/runs/${runId}/steps/${seq}/tasks?limit=${TASK_PAGE}&after=${encodeURIComponent(next)}`);
      addTasks(page.items);
      next = page.next_after;
      more.hidden = !next;
    } }, "More tasks");
    parts.push(el("h4", {}, `${step.task_count} tasks, each with its own updates`),
      el("div", { class: "scroll" }, el("table", { class: "tasks" }, el("thead", {},
        el("tr", {}, el("th", {}, "task"), el("th", {}, "status"), el("th", {}, "took"),
          el("th", {}, "attempt"), el("th", {}, "updates"))), list)), more);
  }
  // A model task's messages and, while it streams, its tokens go here when steps carry them.
  parts.push(el("h4", {}, "Updates (merged)"), pre(step.updates),
    el("h4", {}, "What changed in the state"), diff(before, step.state),
    el("details", {}, el("summary", {}, "State after this step"), pre(step.state)));
  return parts;
}

// Fork: a new run from the state after step ``seq``, with an optional edit of that state
// (JSON, applied through the graph's reducers), opened once the API has made it.
function forkForm(runId, seq, open) {
  const message = el("p", { class: "error", role: "alert" });
  const update = el("textarea", { name: "update", rows: 4, spellcheck: "false",
    "aria-label": "State update (JSON)", placeholder: '{"key": "new value"}' });
  return el("details", { class: "fork-box", open }, el("summary", {}, `Fork from step ${seq}`),
    el("form", { class: "card fork", onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = "";
      let edit = {};
      try {
        if (update.value.trim()) edit = JSON.parse(update.value);
      } catch (error) {
        message.textContent = `Not JSON: ${error.message}`;
        return;
      }
      if (edit === null || typeof edit !== "object" || Array.isArray(edit)) {
        message.textContent = "The update is a JSON object: the keys to change and their values.";
        return;
      }
      try {
        const body = { from_seq: seq, update: edit };
        const forked = await api(`/runs/${runId}/fork`, { method: "POST", json: body });
        location.hash = `#/runs/${forked.run_id}`;
      } catch (error) {
        message.textContent = error.message;
      }
    } },
    el("p", { class: "muted" }, "A new run starts from the state after this step, with these ",
      "changes to it (optional), and goes on where this step went next."),
    update, el("button", { type: "submit" }, "Fork"), message));
}

// -- Graphs ----------------------------------------------------------------------------------
async function graphsPage(graphId, show) {
  const list = el("ul", { class: "graph-list" });
  const more = el("button", { class: "more", hidden: true }, "Load more");
  const pane = el("div", { class: "graph-pane" });
  show(el("h2", {}, "Graphs"), el("div", { class: "master-detail" },
    el("div", {}, list, more), pane));
  let cursor = null;
  const load = async () => {
    const page = await api(`/graphs?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    list.append(...page.items.map((g) => el("li", { class: g.graph_id === graphId ? "active" : "" },
      el("a", { href: `#/graphs/${g.graph_id}` }, g.name || g.graph_id),
      el("small", { class: "muted" }, ` ${g.graph_id} · ${when(g.created_at)}`))));
    return page.items;
  };
  more.onclick = load;
  const first = await load();
  if (!graphId && first.length) graphId = first[0].graph_id;
  if (!graphId) {
    pane.append(el("p", { class: "muted" }, "No graphs yet: create one with POST /graphs or ",
      el("code", {}, "hopgraph graphs create FILE"), "."));
    return;
  }
  const [graph, doc] = await Promise.all([api(`/graphs/${graphId}`),
    api(`/graphs/${graphId}/mermaid?format=json`)]);
  const drawing = el("div", { class: "graph", id: "graph-drawing" });
  const message = el("div");
  const form = el("form", { id: "start-run", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    let input;
    try {
      input = JSON.parse(form.input.value || "{}");
    } catch (error) {
      message.replaceChildren(failure(new Error(`input is not JSON: ${error.message}`)));
      return;
    }
    const body = { graph_id: graphId, input };
    if (form.max_steps.value) body.max_steps = Number(form.max_steps.value);
    try {
      const started = await api("/runs", { method: "POST", json: body });
      location.hash = `#/runs/${started.run_id}`;
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  } }, el("h3", {}, "Start a run"),
  el("label", {}, "Input (a JSON object)", el("textarea", { name: "input", rows: 6 }, "{}")),
  el("label", {}, "Step limit ", el("input", { name: "max_steps", type: "number", min: 1,
    placeholder: String(graph.graph.max_steps || "default") })),
  el("button", { type: "submit" }, "Start"), message);
  pane.append(el("h3", {}, graph.name, " ", el("code", {}, graph.graph_id)), drawing, form,
    el("details", { open: true }, el("summary", {}, "Definition (JSON)"), pre(graph.graph)));
  await draw(drawing, doc);
}

// -- Tools -----------------------------------------------------------------------------------
async function toolsPage(show) {
  const { tools } = await api("/tools");
  show(el("h2", {}, "Tools"), el("table", { class: "tools" },
    el("thead", {}, el("tr", {}, el("th", {}, "tool"), el("th", {}, "description"),
      el("th", {}, "reads"), el("th", {}, "writes"), el("th", {}, ""))),
    el("tbody", {}, tools.map((t) => el("tr", {}, el("td", {}, el("code", {}, t.name)),
      el("td", {}, t.description), el("td", {}, t.parameters.reads.join(", ")),
      el("td", {}, t.parameters.writes.join(", ")), el("td", {}, t.async ? "async" : ""))))));
}

route();
