// A run's summary header: who runs it, where it stands, when, and what it cost. Everything
// comes from GET /v1/runs/{id}, already capped to what the key may see; the tool call count
// comes from the events the page reads.
import { el, elapsed, statusCell, timestamp } from "./common.js";
import { clock } from "./durations.js";

const link = (href, text) => el("a", { href, text });
const when = (text) => (text ? clock(timestamp(text)) : null);

// ``calls`` is null when the page reads below operator visibility: tools are not shown then.
export function runSummary(run, calls) {
  const list = el("dl", { class: "facts run-facts" });
  for (const [field, name, value] of facts(run, calls)) {
    if (value == null || value === "") continue;
    list.append(el("div", {}, el("dt", { text: name }), el("dd", { "data-field": field }, value)));
  }
  return el("section", { class: "run-summary", "aria-labelledby": "run-summary-title" },
    el("h2", { id: "run-summary-title", text: "Summary" }), list);
}

function facts(run, calls) {
  const conversation = encodeURIComponent(run.conversation_id);
  return [
    ["agent", "Agent", run.agent_id],
    ["status", "Status", status(run)],
    ["stop_reason", "Stop reason", run.stop_reason],
    ["error", "Error", run.error],
    ["conversation", "Conversation", link(`#/conversations/${conversation}`, run.conversation_id)],
    ["lane", "Lane", run.lane_key],
    ["parent", "Parent run", run.parent_run_id ? link(`#/runs/${encodeURIComponent(run.parent_run_id)}`, run.parent_run_id) : null],
    ["created", "Created", when(run.created_at)],
    ["started", "Started", when(run.started_at)],
    ["ended", "Ended", when(run.completed_at)],
    ["duration", "Duration", elapsed(run)],
    ["tokens", "Tokens", `${run.total_tokens} (${run.prompt_tokens} prompt, ${run.completion_tokens} completion)`],
    ["steps", "Steps", String(run.num_steps)],
    ["tools", "Tools", calls == null ? null : tools(run, calls)],
    ["progress", "Progress", progress(run.metadata || {})],
  ];
}

function status(run) {
  const cell = statusCell(run.status);
  return run.cancel_requested && !run.terminal ? el("span", {}, cell, " (cancel requested)") : cell;
}

function tools(run, calls) {
  const names = run.tools_used.length ? `: ${run.tools_used.join(", ")}` : "";
  return `${calls} ${calls === 1 ? "call" : "calls"}${names}`;
}

// ``progress`` and ``total`` from the run's metadata (what ctx.progress writes), as text: the
// status panel draws the bar.
function progress(metadata) {
  const { progress: done, total } = metadata;
  if (done == null) return null;
  if (typeof done === "number" && typeof total === "number" && total > 0) {
    return `${done} / ${total} (${Math.round((100 * Math.min(done, total)) / total)}%)`;
  }
  return typeof done === "object" ? JSON.stringify(done) : String(done);
}
