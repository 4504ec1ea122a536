// The waterfall: one row per tool call, question and child run, plus one each for the status
// phases, LLM steps, checkpoints and messages, on a shared time axis. Bars are placed in
// percentages of the axis, so the chart scales to any width. Each row is one button (a target
// as tall as the row, whatever the bars' widths); its bars are drawing inside it.
import { el } from "./common.js";
import { span, ticks } from "./durations.js";

export function renderWaterfall(model, selectedKey, onSelect) {
  const total = Math.max(model.end - model.start, 1);
  const scale = { left: (t) => `${((t - model.start) / total) * 100}%`, width: (ms) => `${(ms / total) * 100}%` };
  const list = el("ul", { class: "waterfall", "aria-label": `waterfall over ${span(model.end - model.start)}` });
  for (const row of model.rows) list.append(el("li", {}, rowButton(row, model, scale, selectedKey, onSelect)));
  return el("div", { class: "wf" }, axis(model, scale), list, legend(model), attemptsNote(model));
}

// The colours of the status phases this run went through (the board's, one per status).
function legend(model) {
  const status = model.rows.find((row) => row.key === "status");
  if (!status) return "";
  const seen = [...new Set(status.items.map((item) => item.status))];
  return el("p", { class: "wf-legend" }, "Status phases: ",
    ...seen.map((name) => el("span", { class: "wf-legend-item" }, el("span", { class: `swatch f-${name}`, "aria-hidden": "true" }), name)));
}

function axis(model, scale) {
  const track = el("span", { class: "wf-track" });
  const total = model.end - model.start;
  for (const offset of ticks(total)) {
    // A label near the right end ends at its tick, so it never sticks out of the page.
    const tick = el("span", { class: `wf-tick${offset > total * 0.8 ? " wf-tick-end" : ""}`, text: span(offset) });
    tick.style.left = scale.left(model.start + offset);
    track.append(tick);
  }
  return el("div", { class: "wf-axis", "aria-hidden": "true" }, el("span", { class: "wf-label", text: "time since the first event" }), track);
}

function rowButton(row, model, scale, selectedKey, onSelect) {
  const label = el("span", { class: "wf-label" }, el("span", { text: row.label }));
  // Spaces between the parts: the accessible name must contain the visible text as read.
  if (row.callId && row.callId !== row.label) label.append(" ", el("span", { class: "wf-id", text: row.callId }));
  if (row.tag) label.append(" ", el("span", { class: `wf-tag wf-tag-${row.tag}`, text: row.tag }));
  const track = el("span", { class: "wf-track" });
  for (const attempt of model.attempts.slice(1)) {
    const line = el("span", { class: "wf-attempt" });
    line.style.left = scale.left(attempt.at);
    track.append(line);
  }
  for (const item of row.items) track.append(bar(item, scale));
  const attrs = { type: "button", class: `wf-row${row.key === selectedKey ? " wf-selected" : ""}`, "data-key": row.key,
    "data-row": row.items[0].kind, "aria-label": describeRow(row, model), onclick: () => onSelect(row) };
  if (row.callId) attrs["data-call-id"] = row.callId;
  if (row.key === selectedKey) attrs["aria-current"] = "true";
  return el("button", attrs, label, track);
}

function bar(item, scale) {
  const kind = item.kind === "phase" ? `f-${item.status}` : `wf-${item.kind}`;
  const state = item.status ? ` wf-${item.status}` : "";
  const node = el("span", { class: `wf-bar ${kind}${state}${item.point ? " wf-point" : ""}${item.tag === "replayed" ? " wf-replayed" : ""}`,
    "data-kind": item.kind, title: `${item.label} ${item.point ? "" : span(item.end - item.start)}`.trim() });
  node.style.left = scale.left(item.start);
  if (!item.point) node.style.width = scale.width(item.end - item.start);
  return node;
}

// What a screen reader hears for a row: what it is, how long, how it ended.
const SPANS = new Set(["tool", "human", "child"]);

export function describeRow(row, model) {
  const offset = (t) => `at ${span(t - model.start)}`;
  const [first] = row.items;
  const last = row.items[row.items.length - 1];
  if (SPANS.has(first.kind)) {
    // The name begins with the row's visible text, as speech input expects.
    const shown = [row.label, row.callId && row.callId !== row.label ? row.callId : "", row.tag || ""];
    const visible = shown.filter(Boolean).join(" ");
    const name = first.kind === "tool" ? `${visible}: tool call` : `${visible}:`;
    const parts = [name, first.status, span(first.end - first.start), offset(first.start)];
    if (first.replayedIn && first.replayedIn.length) parts.push(`replayed in attempt ${first.replayedIn.join(", ")}`);
    return `${name} ${parts.slice(1).filter(Boolean).join(", ")}`;
  }
  const count = `${row.items.length} ${row.key === "status" ? "phases" : "items"}`;
  if (row.key === "status") return `status: ${count}, ${last.status} ${offset(last.start)}`;
  return `${row.label}: ${count}, from ${offset(first.start)} to ${offset(last.end)}`;
}

function attemptsNote(model) {
  if (model.attempts.length < 2) return "";
  const starts = model.attempts.map((a) => `${a.number} at ${span(a.at - model.start)}`).join(", ");
  return el("p", { class: "wf-note", text: `Attempts (each claim calls the handler from its start): ${starts}. Calls finished before an attempt are replayed in it from the log.` });
}
