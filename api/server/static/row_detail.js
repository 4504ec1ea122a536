// What a selected waterfall row holds: each item's timestamps and events and, for a tool call,
// its arguments and result, as the events read at the page's visibility carry them.
import { el, summary, timestamp } from "./common.js";
import { clock, span } from "./durations.js";

const SHOWN = 50;

export function rowDetail(row, travel) {
  const block = el("div", { class: "wf-detail" }, el("h3", { text: heading(row) }));
  const items = row.items.slice(-SHOWN);
  if (row.items.length > items.length) block.append(el("p", { text: `The last ${SHOWN} of ${row.items.length}.` }));
  for (const item of items) block.append(itemBlock(item, travel));
  return block;
}

function heading(row) {
  const first = row.items[0];
  if (first.kind === "tool") return `Tool call ${row.label} (${row.callId})`;
  if (first.kind === "human" || first.kind === "child") return row.label[0].toUpperCase() + row.label.slice(1);
  return row.key === "status" ? "Status phases" : row.label[0].toUpperCase() + row.label.slice(1);
}

function itemBlock(item, travel) {
  const block = el("div", { class: "wf-item", "data-kind": item.kind }, facts(item));
  if (item.kind === "tool") block.append(...toolContent(item));
  const events = el("ul", { class: "wf-events" });
  for (const event of item.events) events.append(el("li", { text: `#${event.id} ${event.event_type} at ${clock(timestamp(event.created_at))} ${summary(event)}` }));
  const last = item.events[item.events.length - 1];
  block.append(events, el("button", { type: "button", onclick: () => travel(last.id), text: `State as of event #${last.id}` }));
  return block;
}

function facts(item) {
  const recorded = item.kind === "tool" && item.events.some((e) => e.payload.duration_ms != null);
  const rows = [
    ["What", item.kind === "phase" ? item.status : item.label],
    ["From", clock(item.start)],
    ["To", item.point ? null : clock(item.end)],
    ["Duration", item.point ? null : `${span(item.end - item.start)}${recorded ? " (recorded by the worker)" : ""}`],
    ["Outcome", item.kind === "phase" ? null : item.status],
    ["Attempt", item.attempt || null],
    ["Replayed", item.replayedIn && item.replayedIn.length ? `its result was handed back in attempt ${item.replayedIn.join(", ")}` : null],
  ];
  const list = el("dl", { class: "facts" });
  for (const [name, value] of rows) {
    if (value != null && value !== "") list.append(el("div", {}, el("dt", { text: name }), el("dd", { text: String(value) })));
  }
  return list;
}

function toolContent(item) {
  const started = item.events.find((e) => e.event_type === "tool_started");
  const finished = item.events.find((e) => e.event_type === "tool_finished");
  const shown = [el("h4", { text: "Arguments" }),
    el("pre", { class: "wf-arguments", text: started ? json(started.payload.arguments) : "(no tool_started event)" })];
  if (finished) {
    const failed = finished.payload.status === "error";
    shown.push(el("h4", { text: failed ? "Error" : "Result" }),
      el("pre", { class: "wf-result", text: failed ? String(finished.payload.error ?? "") : json(finished.payload.result) }));
  }
  return shown;
}

function json(value) { return value === undefined ? "null" : JSON.stringify(value, null, 2); }
