// A run's log as the rows of a waterfall on one time axis (milliseconds since the epoch):
// status phases, LLM steps, tool calls, human waits, child runs, checkpoints and messages.
// No DOM here: the page rebuilds the model from its whole event list whenever events arrive.
import { ACTIVE, ENDED, timestamp } from "./common.js";

// A claim moves a run to running from one of these, and the SDK calls the handler from its
// start: a new attempt (docs/architecture.md, "The dashboard").
const CLAIMED_FROM = new Set(["queued", "waiting_on_lane", "resuming"]);
// While a run is in one of these, the attempt's worker still holds it.
const HELD = ACTIVE;
const TERMINAL = new Set(["completed", ...Object.keys(ENDED)]);

const at = (event) => timestamp(event.created_at);

export function waterfallModel(events) {
  const log = new RunLog(events);
  const rows = [
    { key: "status", label: "status", items: log.phases() },
    { key: "steps", label: "LLM steps", items: log.steps() },
    ...log.spanRows(),
    { key: "checkpoints", label: "checkpoints", items: log.points("checkpoint_created", "checkpoint", (p) => p.kind) },
    { key: "messages", label: "messages", items: log.points("message_created", "message", (p) => p.role) },
  ].filter((row) => row.items.length);
  const times = events.map(at);
  for (const row of rows) for (const item of row.items) times.push(item.start, item.end ?? item.start);
  const start = times.reduce((a, b) => Math.min(a, b), times[0] ?? 0);
  const end = times.reduce((a, b) => Math.max(a, b), times[0] ?? 0);
  for (const row of rows) for (const item of row.items) if (item.end == null && !item.point) item.end = end;
  return { start, end, rows, attempts: log.attempts, calls: log.calls.length };
}

class RunLog {
  constructor(events) {
    this.events = events;
    this.changes = events.filter((e) => e.event_type === "run_status_changed");
    this.attempts = this.changes.filter((e) => e.payload.to === "running" && CLAIMED_FROM.has(e.payload.from))
      .map((e, i) => ({ number: i + 1, at: at(e), eventId: e.id }));
    this.calls = this.toolCalls();
  }

  // The attempt an event belongs to: 0 before the first claim.
  attemptOf(event) { return this.attempts.filter((a) => a.eventId <= event.id).length; }

  // When the worker let the run go after ``event`` (a status outside HELD), or null while it holds it.
  letGoAfter(event) {
    const change = this.changes.find((e) => e.id > event.id && !HELD.has(e.payload.to));
    return change ? at(change) : null;
  }

  phases() {
    const starts = this.events.filter((e) => e.event_type === "run_created" || e.event_type === "run_status_changed");
    return starts.map((event, i) => {
      const status = event.event_type === "run_created" ? "queued" : event.payload.to;
      const next = starts[i + 1];
      const ended = TERMINAL.has(status) && !next;
      return { key: `phase:${event.id}`, kind: "phase", status, label: status, start: at(event),
        end: next ? at(next) : null, point: ended, events: next ? [event, next] : [event] };
    });
  }

  steps() {
    return this.events.filter((e) => e.event_type === "step_completed").map((event) => {
      const ms = event.payload.duration_ms;
      return { key: `step:${event.id}`, kind: "step", label: event.payload.model || "step",
        start: at(event) - (ms ?? 0), end: at(event), point: ms == null, durationMs: ms, events: [event] };
    });
  }

  points(type, kind, label) {
    return this.events.filter((e) => e.event_type === type).map((event) => (
      { key: `${kind}:${event.id}`, kind, label: label(event.payload) || kind, start: at(event), end: at(event), point: true, events: [event] }));
  }

  // One row per tool call, human question and child run, in the order they began.
  spanRows() {
    const spans = [...this.calls, ...this.pairs("human_input_requested", "human_input", "question_id", "human"),
      ...this.pairs("child_run_started", "child_run_finished", "child_run_id", "child")];
    spans.sort((a, b) => a.start - b.start);
    return spans.map((item) => ({ key: item.key, label: item.label, tag: item.tag, callId: item.callId, items: [item] }));
  }

  // Each tool_started opens a call; tool_finished closes the latest open call of its id (a retry
  // after an unfinished call starts the same id again), or stands alone when nothing started it.
  toolCalls() {
    const calls = [];
    const open = new Map();
    for (const event of this.events) {
      const id = event.payload.tool_call_id;
      if (event.event_type === "tool_started") {
        const call = { started: event, finished: null };
        calls.push(call);
        open.set(id, call);
      } else if (event.event_type === "tool_finished") {
        const call = open.get(id) || { started: null };
        if (!open.has(id)) calls.push(call);
        call.finished = event;
        open.delete(id);
      }
    }
    return calls.map((call) => this.timedCall(call));
  }

  timedCall({ started, finished }) {
    const first = started || finished;
    const ms = finished ? finished.payload.duration_ms : null;
    const start = started ? at(started) : at(finished) - (ms ?? 0);
    const end = ms != null ? start + ms : finished ? at(finished) : this.letGoAfter(started);
    const status = finished ? (finished.payload.status === "error" ? "error" : "success") : end == null ? "running" : "unfinished";
    // A finished call's recorded result is what the SDK hands back to every later attempt.
    const replayedIn = finished ? this.attempts.filter((a) => a.eventId > finished.id).map((a) => a.number) : [];
    const tag = replayedIn.length ? "replayed" : status === "unfinished" ? "unfinished" : status === "error" ? "error" : null;
    return { key: `tool:${first.id}`, kind: "tool", label: first.payload.name, callId: first.payload.tool_call_id,
      start, end, durationMs: ms ?? (finished && started ? at(finished) - at(started) : null), status, replayedIn, tag,
      attempt: this.attemptOf(first), events: [started, finished].filter(Boolean) };
  }

  // Spans opened by one event type and closed by another sharing ``field`` (a question and its
  // answer, a child run started and finished).
  pairs(opens, closes, field, kind) {
    const spans = [];
    const open = new Map();
    for (const event of this.events) {
      const id = event.payload[field];
      if (event.event_type === opens) {
        const span = { key: `${kind}:${event.id}`, kind, label: `${kind === "human" ? "question" : "child run"} ${id}`,
          start: at(event), end: null, status: "open", events: [event] };
        spans.push(span);
        open.set(id, span);
      } else if (event.event_type === closes) {
        const span = open.get(id) ?? (id == null ? [...open.values()][0] : undefined);
        if (!span) continue;
        span.end = at(event);
        span.status = kind === "child" ? event.payload.status || "finished" : "answered";
        span.events.push(event);
        open.delete(span.events[0].payload[field]);
      }
    }
    return spans;
  }
}
