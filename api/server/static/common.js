// The dashboard's shared parts: API calls, sign-in, streams, DOM building, statuses.
// Text goes in with textContent only.

const TYPES = ["run_created", "run_status_changed", "cancel_requested", "tool_started",
  "tool_finished", "checkpoint_created", "journal_updated", "message_created", "step_completed",
  "child_run_started", "child_run_finished", "callback_attempted", "human_input_requested",
  "human_input", "metadata_updated"];
export const STATUSES = ["queued", "waiting_on_lane", "running", "waiting_on_tool", "waiting_on_child",
  "waiting_on_human", "resuming", "completed", "failed", "cancelled", "timed_out"];
export const ACTIVE = new Set(["running", "waiting_on_tool", "waiting_on_child"]);
export const ENDED = { failed: "Run failed", timed_out: "Run timed out", cancelled: "Run cancelled" };
export const LABELS = { queued: "Queued", waiting_on_lane: "Waiting for its lane", running: "Running",
  waiting_on_tool: "Waiting on a tool", waiting_on_child: "Waiting on a child run",
  waiting_on_human: "Waiting on a person", resuming: "Resuming", completed: "Completed", ...ENDED };
export const main = document.getElementById("main");
const streams = [];
const timers = [];

// Every stream and timer of the page shown; a new page closes them all.
export function closeAll() {
  for (const s of streams.splice(0)) s.close();
  for (const t of timers.splice(0)) clearInterval(t);
}

// Each page asked for gets a number. A page still loading when the next one is asked for (its
// reads were slow) stops at its next draw or stream, instead of drawing over the page shown.
let shownPage = 0;
export class PageLeft extends Error {}
export function startPage() { shownPage += 1; return shownPage; }
export function currentPage() { return shownPage; }
export function stillShown(page) { if (page !== shownPage) throw new PageLeft(); }

// Close the streams alone (a page reloading its own data).
export function closeStreams() { for (const s of streams.splice(0)) s.close(); }

// A repeating task that stops when the page changes.
export function every(ms, task) { timers.push(setInterval(task, ms)); }

// At most one call of ``task`` per ``ms``, however many events ask for it (a burst of events
// re-reads the run once, not once per event).
export function coalesced(ms, task) {
  let pending = null;
  return () => { pending = pending || setTimeout(() => { pending = null; task(); }, ms); };
}

export function key() { return sessionStorage.getItem("runtrack-key"); }

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (key()) headers.Authorization = `Bearer ${key()}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { await login(Boolean(key())); return api(path, options); }
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) {
    // The status and details go with the message: a page may answer some refusals itself
    // (a 410 for archived events names the segment and the oldest event kept).
    const error = new Error(body.error ? body.error.message : response.statusText);
    error.status = response.status;
    error.details = body.error ? body.error.details || {} : {};
    throw error;
  }
  return body;
}

let loggingIn = null;

// One dialog at a time, however many requests were refused; `refused` says the last key failed.
export function login(refused) {
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

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function setConnection(state) {
  const badge = document.getElementById("connection");
  badge.textContent = state === "live" ? "live" : "reconnecting…";
  badge.className = `connection ${state === "live" ? "live" : "down"}`;
}

export function stream(path, onEvent) {
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

export function statusCell(status) { return el("span", { class: `status s-${status}`, text: status }); }
export function timestamp(text) { return Date.parse(text.replace(/(\.\d{3})\d+/, "$1")); }

// A finished run's recorded duration; a live one's time since creation, ticking.
export function elapsed(run) {
  const ns = run.total_duration_ns ?? (run.terminal ? null : (Date.now() - timestamp(run.created_at)) * 1e6);
  return ns == null ? "-" : `${(Math.max(0, ns) / 1e9).toFixed(1)}s`;
}

let me = null;
export async function whoAmI() { me = me || await api("/v1/me"); return me; }
export const VISIBILITIES = ["user", "operator", "internal"];


export function summary(event) {
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

