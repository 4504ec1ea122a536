"use strict";
// runtrack dashboard: no build step. Live data comes from EventSource on the SSE streams; JSON
// reads only fill in a run when the stream says it changed. Text goes in with textContent only.

const TYPES = ["run_created", "run_status_changed", "cancel_requested", "tool_started",
  "tool_finished", "checkpoint_created", "journal_updated", "message_created", "step_completed",
  "child_run_started", "child_run_finished", "callback_attempted", "human_input_requested",
  "human_input", "metadata_updated"];
const STATUSES = ["queued", "waiting_on_lane", "running", "waiting_on_tool", "waiting_on_child",
  "waiting_on_human", "resuming", "completed", "failed", "cancelled", "timed_out"];
const ACTIVE = new Set(["running", "waiting_on_tool", "waiting_on_child"]);
const ENDED = { failed: "Run failed", timed_out: "Run timed out", cancelled: "Run cancelled" };
const LABELS = { queued: "Queued", waiting_on_lane: "Waiting for its lane", running: "Running",
  waiting_on_tool: "Waiting on a tool", waiting_on_child: "Waiting on a child run",
  waiting_on_human: "Waiting on a person", resuming: "Resuming", completed: "Completed", ...ENDED };
const main = document.getElementById("main");
let streams = [];
let timers = [];

// A repeating task that stops when the page changes.
function every(ms, task) { timers.push(setInterval(task, ms)); }

// At most one call of ``task`` per ``ms``, however many events ask for it (a burst of events
// re-reads the run once, not once per event).
function coalesced(ms, task) {
  let pending = null;
  return () => { pending = pending || setTimeout(() => { pending = null; task(); }, ms); };
}

function key() { return sessionStorage.getItem("runtrack-key"); }

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (key()) headers.Authorization = `Bearer ${key()}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { await login(Boolean(key())); return api(path, options); }
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

let loggingIn = null;

// One dialog at a time, however many requests were refused; `refused` says the last key failed.
function login(refused) {
  const dialog = document.getElementById("login");
  document.getElementById("login-refused").hidden = !refused;
  loggingIn = loggingIn || new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem("runtrack-key", document.getElementById("login-key").value);
      loggingIn = null;
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
  return loggingIn;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function setConnection(state) {
  const badge = document.getElementById("connection");
  badge.textContent = state === "live" ? "live" : "reconnecting…";
  badge.className = `connection ${state === "live" ? "live" : "down"}`;
}

function stream(path, onEvent) {
  const separator = path.includes("?") ? "&" : "?";
  const url = key() ? `${path}${separator}access_token=${encodeURIComponent(key())}` : path;
  const source = new EventSource(url);
  source.onopen = () => setConnection("live");
  source.onerror = () => setConnection(source.readyState === 2 ? "live" : "down");
  for (const type of TYPES) source.addEventListener(type, (e) => onEvent(JSON.parse(e.data)));
  source.addEventListener("end", () => source.close());
  streams.push(source);
  return source;
}

function statusCell(status) { return el("span", { class: `status s-${status}`, text: status }); }
function timestamp(text) { return Date.parse(text.replace(/(\.\d{3})\d+/, "$1")); }

// A finished run's recorded duration; a live one's time since creation, ticking.
function elapsed(run) {
  const ns = run.total_duration_ns ?? (run.terminal ? null : (Date.now() - timestamp(run.created_at)) * 1e6);
  return ns == null ? "-" : `${(Math.max(0, ns) / 1e9).toFixed(1)}s`;
}

let me = null;
async function whoAmI() { me = me || await api("/v1/me"); return me; }
const VISIBILITIES = ["user", "operator", "internal"];

// ---------------------------------------------------------------- charts
const SAMPLES = 60;
const DURATION_LABELS = ["< 1 s", "1–10 s", "10 s–1 min", "1–10 min", "10 min–1 h", "≥ 1 h"];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// columns: one array of {value, fill, title} segments per sample, oldest first, stacked bottom-up.
function stackedBars(columns) {
  const width = 8, height = 60;
  const peak = Math.max(1, ...columns.map((segments) => segments.reduce((sum, s) => sum + s.value, 0)));
  const chart = svg("svg", { viewBox: `0 0 ${SAMPLES * width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  columns.forEach((segments, index) => {
    let top = height;
    for (const segment of segments.filter((s) => s.value > 0)) {
      const size = (segment.value / peak) * height;
      top -= size;
      chart.append(svg("rect", { x: (SAMPLES - columns.length + index) * width, y: top, width: width - 1, height: size, class: segment.fill },
        svg("title", {}, segment.title)));
    }
  });
  return chart;
}

function figure(caption, description, ...content) {
  return el("figure", { class: "chart", role: "img", "aria-label": `${caption}: ${description}` },
    el("figcaption", { text: caption }), ...content);
}

function statusOverTime(samples) {
  const latest = samples.length ? samples[samples.length - 1] : {};
  const description = Object.entries(latest).map(([s, n]) => `${s} ${n}`).join(", ") || "no runs";
  const columns = samples.map((counts) => STATUSES.map((s) => ({ value: counts[s] || 0, fill: `f-${s}`, title: `${s}: ${counts[s] || 0}` })));
  return figure("Runs by status, last minute", description, stackedBars(columns));
}

function eventsPerSecond(perSecond) {
  const columns = perSecond.map((n) => [{ value: n, fill: "f-events", title: `${n} events/s` }]);
  const last = perSecond.length > 1 ? perSecond[perSecond.length - 2] : 0;
  return figure("Events per second", `${last} in the last second`, stackedBars(columns));
}

function durations(buckets) {
  const peak = Math.max(1, ...buckets.map((b) => b.count));
  const rows = buckets.map((bucket, i) => el("li", {},
    el("span", { class: "label", text: DURATION_LABELS[i] }),
    el("span", { class: "bar", style: `width:${(bucket.count / peak) * 100}%` }),
    el("span", { class: "value", text: String(bucket.count) })));
  const description = buckets.map((b, i) => `${DURATION_LABELS[i]}: ${b.count}`).join(", ");
  return figure("Durations of finished runs", description, el("ul", { class: "hbars" }, ...rows));
}

// ---------------------------------------------------------------- runs board
// Filters live in the address (#/?status=running&agent=a&active=1): a filtered board can be shared.
async function board(search) {
  const runs = new Map();
  const given = new URLSearchParams(search);
  const filters = { status: given.get("status") || "", agent: given.get("agent") || "", active: given.get("active") === "1" };
  const perSecond = [0];
  const statusSamples = [];
  let stats = { total: 0, by_status: {}, durations: DURATION_LABELS.map(() => ({ count: 0 })) };
  let statsStale = true;
  const body = el("tbody");
  const counts = el("div", { class: "counts", "aria-label": "runs by status" });
  const more = el("button", { type: "button", hidden: "", text: "Show older runs",
    onclick: async () => { await loadPage(older); renderRows(); } });
  const charts = el("div", { class: "charts" });
  const statusSelect = el("select", { "aria-label": "status", onchange: (e) => { filters.status = e.target.value; reload(); } },
    el("option", { value: "", text: "any status" }), ...STATUSES.map((s) => el("option", { value: s, text: s })));
  const agentInput = el("input", { placeholder: "agent", "aria-label": "agent", onchange: (e) => { filters.agent = e.target.value; reload(); } });
  const activeBox = el("input", { type: "checkbox", id: "active", onchange: (e) => { filters.active = e.target.checked; reload(); } });
  statusSelect.value = filters.status;
  agentInput.value = filters.agent;
  activeBox.checked = filters.active;
  main.replaceChildren(
    el("section", {}, el("h1", { text: "Runs" }),
      el("div", { class: "filters" }, statusSelect, agentInput, el("label", { for: "active" }, activeBox, " active only")),
      counts, charts),
    el("section", { class: "scroll" }, el("table", { "aria-label": "runs" },
      el("thead", {}, el("tr", {}, ...["run", "status", "agent", "elapsed", "conversation", "lane", "stop reason", "tokens"]
        .map((h, i) => el("th", { scope: "col", text: h, class: i >= 4 ? "hide-narrow" : "" })))), body), more));

  function query(limit) {
    const params = new URLSearchParams(limit ? { limit: String(limit) } : {});
    if (filters.status) params.append("status", filters.status);
    if (filters.agent) params.append("agent_id", filters.agent);
    if (filters.active) params.append("active", "true");
    return params;
  }
  function matches(run) {
    return (!filters.status || run.status === filters.status) && (!filters.agent || run.agent_id === filters.agent)
      && (!filters.active || ACTIVE.has(run.status) || run.status === "resuming");
  }
  function renderRows() {
    const rows = [...runs.values()].filter(matches).sort((a, b) => b.created_event_id - a.created_event_id);
    body.replaceChildren(...rows.map((run) => el("tr", { "data-run-id": run.id, "data-status": run.status },
      el("td", { class: "id" }, el("a", { href: `#/runs/${run.id}`, text: run.id, title: run.id })),
      el("td", {}, statusCell(run.status)), el("td", { text: run.agent_id }), el("td", { class: "elapsed", text: elapsed(run) }),
      el("td", { class: "hide-narrow" }, el("a", { href: `#/conversations/${run.conversation_id}`, text: run.conversation_id })),
      el("td", { class: "hide-narrow", text: run.lane_key }),
      el("td", { class: "hide-narrow", text: run.stop_reason || "-" }), el("td", { class: "hide-narrow", text: String(run.total_tokens) }))));
  }
  function renderCharts() {
    counts.replaceChildren(el("span", { text: `${stats.total} run${stats.total === 1 ? "" : "s"}` }),
      ...Object.entries(stats.by_status).map(([s, n]) => el("span", { "data-status": s }, el("i", { class: `swatch f-${s}` }), statusCell(s), ` ${n}`)));
    charts.replaceChildren(statusOverTime(statusSamples), eventsPerSecond(perSecond), durations(stats.durations));
  }
  async function refreshStats() {
    if (statsStale) {
      statsStale = false;
      try { stats = await api(`/v1/runs/stats?${query()}`); } catch { statsStale = true; }  // server away: keep the last
    }
    statusSamples.push(stats.by_status);
    if (statusSamples.length > SAMPLES) statusSamples.shift();
  }
  function remember() {
    const shown = new URLSearchParams();
    if (filters.status) shown.set("status", filters.status);
    if (filters.agent) shown.set("agent", filters.agent);
    if (filters.active) shown.set("active", "1");
    const query = shown.toString();
    history.replaceState(null, "", query ? `#/?${query}` : "#/");
  }
  let older = null;  // the listing's cursor past the runs shown
  async function loadPage(after) {
    const params = query(50);
    if (after) params.append("after", after);
    const page = await api(`/v1/runs?${params}`);
    for (const run of page.items) runs.set(run.id, run);
    older = page.next_cursor;
    more.hidden = !older;
  }
  async function reload() {
    remember();
    runs.clear();
    await loadPage(null);
    statusSamples.length = 0;
    statsStale = true;
    await refreshStats();
    renderRows();
    renderCharts();
  }
  const dirty = new Set();
  let flushing = null;
  function changed(runId) {
    dirty.add(runId);
    statsStale = true;
    flushing = flushing || setTimeout(async () => {
      const ids = [...dirty]; dirty.clear(); flushing = null;
      for (const id of ids) runs.set(id, await api(`/v1/runs/${id}`));
      renderRows();
    }, 100);
  }
  every(1000, async () => {
    perSecond.push(0);
    if (perSecond.length > SAMPLES) perSecond.shift();
    await refreshStats();
    renderCharts();
    renderRows();  // elapsed times tick
  });
  // Only what comes next: the listing below already holds every run as of ``head``.
  const { head } = await api("/v1/events?limit=1");
  await reload();
  stream(`/v1/events?visibility=user&after_event_id=${head}`, (event) => { perSecond[perSecond.length - 1] += 1; changed(event.run_id); });
}

// ---------------------------------------------------------------- status panel
// ``cancelPath`` is what Cancel posts to: the run's own cancel, or (on the conversation page)
// the conversation's, which cancels whichever run holds the conversation when it is clicked.
function panelFor(run, refresh, cancelPath = `/v1/runs/${run.id}/cancel`) {
  const section = el("section", { class: "panel", "aria-label": "status panel", "data-status": run.status });
  const label = (LABELS[run.status] || run.status) + (run.cancel_requested && !ENDED[run.status] ? " (cancel requested)" : "");
  section.append(el("h2", { class: `status s-${run.status}`, title: run.status, text: label }));
  if (run.detail) section.append(el("p", { text: run.detail }));
  const bar = progressBar(run.metadata || {});
  if (bar) section.append(bar);
  if (ACTIVE.has(run.status) && !run.cancel_requested) {
    section.append(el("button", { class: "danger", onclick: async () => { await api(cancelPath, { method: "POST", body: "{}" }); refresh(); }, text: "Cancel" }));
  }
  if (run.status === "waiting_on_human") section.append(answerForm(run, refresh));
  if (ENDED[run.status]) {
    const journal = run.journal || {};
    const handoff = el("div", { class: "handoff", "aria-label": "recovery handoff" }, el("h3", { text: "Recovery handoff" }));
    if (run.error) handoff.append(el("p", { text: `Error: ${run.error}` }));
    if (journal.handoff_next_action) handoff.append(el("p", { class: "next", text: `Next: ${journal.handoff_next_action}` }));
    if (Object.keys(journal).length) handoff.append(el("details", {}, el("summary", { text: "Last known state" }), el("pre", { text: JSON.stringify(journal, null, 2) })));
    if (run.resume_available && run.status !== "cancelled") {
      handoff.append(el("button", { class: "primary", onclick: async () => { await api(`/v1/runs/${run.id}/resume`, { method: "POST" }); refresh(); }, text: "Resume from last checkpoint" }));
    }
    section.append(handoff);
  }
  return section;
}

// A bar when the run's metadata has numeric ``progress`` and ``total`` (metadata_updated).
function progressBar(metadata) {
  const { progress, total } = metadata;
  if (typeof progress !== "number" || typeof total !== "number" || total <= 0) return null;
  const shown = `${progress} / ${total}`;
  return el("div", { class: "progress" },
    el("progress", { value: String(Math.min(progress, total)), max: String(total), "aria-label": `progress ${shown}` }),
    el("span", { text: ` ${shown}` }));
}

// The question a waiting run asks and a field for the answer (sent as a string), or one button
// per offered choice; POST /v1/runs/{id}/input moves the run on.
function answerForm(run, refresh) {
  const question = run.question;
  const form = el("form", { class: "answer", "aria-label": "answer" });
  const send = async (response) => {
    await api(`/v1/runs/${run.id}/input`, { method: "POST", body: JSON.stringify({ response, question_id: question ? question.question_id : null }) });
    refresh();
  };
  if (question) form.append(el("p", { class: "question", text: question.question }));
  for (const choice of (question && question.choices) || []) {
    form.append(el("button", { type: "button", onclick: () => send(choice), text: choice }), " ");
  }
  const field = el("textarea", { "aria-label": "your answer", rows: "2" });
  form.append(el("label", {}, "Your answer ", field), el("button", { class: "primary", type: "submit", text: "Send answer" }));
  form.addEventListener("submit", (e) => { e.preventDefault(); if (field.value.trim()) send(field.value); });
  return form;
}

// ---------------------------------------------------------------- run page
async function runPage(runId) {
  const allowed = VISIBILITIES.slice(0, VISIBILITIES.indexOf((await whoAmI()).max_visibility) + 1);
  let visibility = allowed.includes("operator") ? "operator" : allowed[allowed.length - 1];
  const panelSlot = el("div");
  const timeline = el("ol", { class: "timeline", "aria-label": "timeline" });
  const asOf = el("pre", { "aria-label": "state as of the selected event", text: "Select an event to see the run as it was then." });
  const select = el("select", { "aria-label": "visibility", onchange: (e) => { visibility = e.target.value; load(); } },
    ...allowed.map((v) => el("option", { value: v, text: v, ...(v === visibility ? { selected: "" } : {}) })));
  main.replaceChildren(el("h1", { text: runId }), panelSlot,
    el("section", {}, el("h2", { text: "Timeline" }), el("label", {}, "visibility ", select), timeline),
    el("section", {}, el("h2", { text: "State as of an event" }), asOf));
  let current = null;
  async function refresh() {
    const run = await api(`/v1/runs/${runId}`);
    panelSlot.replaceChildren(panelFor(run, refresh));
    return run;
  }
  const toolStarts = new Map();
  function add(event) {
    const p = event.payload;
    if (event.event_type === "tool_started") toolStarts.set(p.tool_call_id, timestamp(event.created_at));
    let text = `#${event.id} ${event.event_type} ${summary(event)}`;
    if (event.event_type === "tool_finished" && p.duration_ms == null && toolStarts.has(p.tool_call_id)) {
      text += ` ${timestamp(event.created_at) - toolStarts.get(p.tool_call_id)} ms`;
    }
    // Each entry is a button (role, focus, Enter and Space) that shows the run as of that event.
    const item = el("li", { tabindex: "0", role: "button", "aria-label": `${text}: show the run as of this event`,
      "data-event-id": String(event.id), "data-type": event.event_type, text,
      onclick: () => travel(event.id), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); travel(event.id); } } });
    if (event.event_type.startsWith("child_run_")) {
      item.append(" ", el("a", { href: `#/runs/${p.child_run_id}`, text: "open child run", onclick: (e) => e.stopPropagation() }));
    }
    timeline.append(item);
  }
  async function travel(eventId) { asOf.textContent = JSON.stringify(await api(`/v1/runs/${runId}/state?at_event_id=${eventId}`), null, 2); }
  async function load() {
    for (const s of streams) s.close();
    streams = [];
    timeline.replaceChildren();
    const run = await refresh();
    let after = 0;
    for (;;) {
      const page = await api(`/v1/runs/${runId}/events?after_event_id=${after}&limit=1000&visibility=${visibility}`);
      page.items.forEach(add);
      after = page.position;
      if (!page.next_cursor) break;
    }
    const refreshSoon = coalesced(100, refresh);
    current = stream(`/v1/runs/${runId}/events?after_event_id=${after}&visibility=${visibility}`, (event) => { add(event); refreshSoon(); });
    return run;
  }
  await load();
}

function summary(event) {
  const p = event.payload;
  if (event.event_type === "run_status_changed") return `${p.from || ""} → ${p.to}${p.stop_reason ? ` (${p.stop_reason})` : ""}`;
  if (event.event_type === "tool_finished" && p.status === "error") return `${p.name} error: ${p.error || ""}`;
  if (event.event_type.startsWith("tool_")) return `${p.name}${p.duration_ms != null ? ` ${p.duration_ms} ms` : ""}`;
  if (event.event_type === "message_created") return `${p.role}: ${p.content}`;
  if (event.event_type === "checkpoint_created") return p.kind;
  if (event.event_type === "step_completed") return `${p.prompt_tokens}+${p.completion_tokens} tokens`;
  if (event.event_type === "callback_attempted") return `attempt ${p.attempt}: ${p.status_code || p.error}`;
  if (event.event_type === "journal_updated") return p.handoff_next_action ? `next: ${p.handoff_next_action}` : p.current_state || p.objective || "";
  if (event.event_type === "child_run_started") return `${p.child_run_id}${p.agent_id ? ` (${p.agent_id})` : ""}`;
  if (event.event_type === "child_run_finished") return `${p.child_run_id} ${p.status || ""}${p.stop_reason ? ` (${p.stop_reason})` : ""}`;
  if (event.event_type === "cancel_requested") return p.reason || "";
  if (event.event_type === "human_input_requested") return `${p.question_id}: ${p.question}`;
  if (event.event_type === "human_input") return `${p.question_id || ""} ${JSON.stringify(p.response)}`;
  if (event.event_type === "metadata_updated") return JSON.stringify(p.patch);
  return "";
}

// ---------------------------------------------------------------- conversation page
async function conversationPage(conversationId) {
  const panelSlot = el("div");
  const events = el("ol", { class: "timeline", "aria-label": "conversation events" });
  main.replaceChildren(el("h1", { text: conversationId }), panelSlot, el("section", {}, el("h2", { text: "Events" }), events));
  async function refresh() {
    const status = await api(`/v1/conversations/${conversationId}/agent-status`);
    const cancelPath = `/v1/conversations/${encodeURIComponent(conversationId)}/cancel`;
    panelSlot.replaceChildren(status.run ? panelFor(status.run, refresh, cancelPath) : el("section", { text: "No run yet." }));
  }
  await refresh();
  const refreshSoon = coalesced(100, refresh);
  stream(`/v1/conversations/${conversationId}/agent-events?visibility=user`, (event) => {
    events.append(el("li", { text: `#${event.id} ${event.event_type} ${summary(event)}` }));
    refreshSoon();
  });
}

async function route() {
  for (const s of streams) s.close();
  for (const t of timers) clearInterval(t);
  streams = [];
  timers = [];
  const [path, search] = location.hash.split("?");
  const [, page, id] = path.split("/");
  try {
    if (page === "runs" && id) await runPage(decodeURIComponent(id));
    else if (page === "conversations" && id) await conversationPage(decodeURIComponent(id));
    else await board(search || "");
  } catch (error) {
    main.replaceChildren(el("section", { role: "alert", text: String(error.message || error) }));
  }
  main.focus();
}

window.addEventListener("hashchange", route);
route();
