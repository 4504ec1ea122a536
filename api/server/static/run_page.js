// A run's page: its status panel, timeline and state as of any event.
import { VISIBILITIES, api, closeStreams, coalesced, el, main, stream, summary, timestamp, whoAmI } from "./common.js";
import { panelFor } from "./panel.js";

export async function runPage(runId) {
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
    closeStreams();
    timeline.replaceChildren();
    const run = await refresh();
    let after = 0;
    for (;;) {
      let page;
      try {
        page = await api(`/v1/runs/${runId}/events?after_event_id=${after}&limit=1000&visibility=${visibility}`);
      } catch (error) {
        // Archived events this server cannot read: say so (naming the segment), go on from the
        // oldest kept event; the run itself still shows from the read model.
        if (error.status !== 410 || !error.details.oldest_event_id) throw error;
        timeline.append(el("li", { class: "archived", role: "note", text: error.message }));
        after = error.details.oldest_event_id - 1;
        continue;
      }
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

