// A run's page: status panel, summary, waterfall, related runs, the full event list and the
// state as of any event (time travel). Everything is read at the visibility the key allows.
import { VISIBILITIES, api, closeStreams, coalesced, currentPage, el, elapsed, every, main, stillShown, stream, summary, timestamp, whoAmI } from "./common.js";
import { panelFor } from "./panel.js";
import { rowDetail } from "./row_detail.js";
import { runSummary } from "./run_summary.js";
import { runTree } from "./run_tree.js";
import { waterfallModel } from "./timeline_model.js";
import { renderWaterfall } from "./waterfall.js";

export async function runPage(runId) {
  const page = currentPage();
  const allowed = VISIBILITIES.slice(0, VISIBILITIES.indexOf((await whoAmI()).max_visibility) + 1);
  stillShown(page);
  const shown = new RunPage(runId, allowed);
  shown.page = page;
  await shown.load();
}

class RunPage {
  constructor(runId, allowed) {
    this.runId = runId;
    this.visibility = allowed.includes("operator") ? "operator" : allowed[allowed.length - 1];
    this.slots = { panel: el("div"), summary: el("div"), waterfall: el("div"), tree: el("div") };
    this.detail = el("div", { class: "wf-selection", "aria-live": "polite", text: "Select a row to see its timestamps, arguments and results." });
    this.timeline = el("ol", { class: "timeline", "aria-label": "timeline" });
    this.count = el("span", { text: "0" });
    this.asOf = el("pre", { "aria-label": "state as of the selected event", text: "Select an event to see the run as it was then." });
    const select = el("select", { "aria-label": "visibility", onchange: (e) => { this.visibility = e.target.value; this.load(); } },
      ...allowed.map((v) => el("option", { value: v, text: v, ...(v === this.visibility ? { selected: "" } : {}) })));
    main.replaceChildren(el("h1", { class: "run-id", text: runId }), this.slots.panel, this.slots.summary,
      el("section", { class: "run-waterfall", "aria-labelledby": "waterfall-title" }, el("h2", { id: "waterfall-title", text: "Timeline" }),
        el("label", {}, "visibility ", select), this.slots.waterfall, this.detail),
      el("section", {}, el("h2", { text: "State as of an event" }), this.asOf),
      this.slots.tree,
      el("section", {}, el("details", { class: "events" }, el("summary", {}, "All events (", this.count, ")"), this.timeline)));
    this.drawSoon = coalesced(100, () => this.draw());
    this.refreshSoon = coalesced(100, () => this.refresh());
    this.treeSoon = coalesced(300, () => this.drawTree());
    every(1000, () => this.tick());
  }

  async load() {
    closeStreams();
    Object.assign(this, { events: [], toolStarts: new Map(), selected: null, model: null });
    this.timeline.replaceChildren();
    for (const note of main.querySelectorAll("p.archived")) note.remove();
    await this.refresh();
    let after = 0;
    for (;;) {
      let page;
      try {
        page = await api(`/v1/runs/${this.runId}/events?after_event_id=${after}&limit=1000&visibility=${this.visibility}`);
      } catch (error) {
        // Archived events this server cannot read: say so above the timeline (naming the
        // segment), go on from the oldest kept event; the run still shows from the read model.
        if (error.status !== 410 || !error.details.oldest_event_id) throw error;
        this.slots.waterfall.before(el("p", { class: "archived", role: "note", text: error.message }));
        after = error.details.oldest_event_id - 1;
        continue;
      }
      page.items.forEach((event) => this.add(event));
      after = page.position;
      if (!page.next_cursor) break;
    }
    this.draw();
    await this.drawTree();
    stillShown(this.page);
    stream(`/v1/runs/${this.runId}/events?after_event_id=${after}&visibility=${this.visibility}`, (event) => {
      this.add(event);
      this.drawSoon();
      this.refreshSoon();
      if (event.event_type.startsWith("child_run_")) this.treeSoon();
    });
  }

  async refresh() {
    this.run = await api(`/v1/runs/${this.runId}`);
    this.slots.panel.replaceChildren(panelFor(this.run, () => this.refresh()));
    this.drawSummary();
    return this.run;
  }

  drawSummary() {
    if (!this.run) return;
    const calls = this.visibility === "user" || !this.model ? null : this.model.calls;
    this.slots.summary.replaceChildren(runSummary(this.run, calls));
  }

  // The duration of a live run ticks; a finished one shows its recorded duration.
  tick() {
    const cell = this.slots.summary.querySelector('[data-field="duration"]');
    if (cell && this.run && !this.run.terminal) cell.textContent = elapsed(this.run);
  }

  async drawTree() { this.slots.tree.replaceChildren(await runTree(this.run)); }

  // Redraw the whole waterfall from the events; the focused row keeps the focus.
  draw() {
    this.model = waterfallModel(this.events);
    const active = document.activeElement;
    const focused = this.slots.waterfall.contains(active) ? active.dataset.key : null;
    this.slots.waterfall.replaceChildren(renderWaterfall(this.model, this.selected, (row) => this.select(row)));
    if (focused) this.slots.waterfall.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
    const row = this.model.rows.find((r) => r.key === this.selected);
    if (row) this.detail.replaceChildren(rowDetail(row, (id) => this.travel(id)));
    this.drawSummary();
  }

  select(row) {
    this.selected = row.key;
    this.draw();
    // A single span (a tool call, a question, a child run) shows the run as of its last event.
    if (row.items.length === 1 && !row.items[0].point) this.travel(row.items[0].events.at(-1).id);
  }

  add(event) {
    this.events.push(event);
    this.count.textContent = String(this.events.length);
    this.timeline.append(this.eventItem(event));
  }

  eventItem(event) {
    const p = event.payload;
    if (event.event_type === "tool_started") this.toolStarts.set(p.tool_call_id, timestamp(event.created_at));
    let text = `#${event.id} ${event.event_type} ${summary(event)}`;
    if (event.event_type === "tool_finished" && p.duration_ms == null && this.toolStarts.has(p.tool_call_id)) {
      text += ` ${timestamp(event.created_at) - this.toolStarts.get(p.tool_call_id)} ms`;
    }
    // Each entry holds a button (focus, Enter and Space) that shows the run as of that event;
    // its click, like one anywhere on the entry, reaches the entry's handler.
    const item = el("li", { "data-event-id": String(event.id), "data-type": event.event_type, onclick: () => this.travel(event.id) },
      el("button", { type: "button", class: "event", "aria-label": `${text}: show the run as of this event`, text }));
    if (event.event_type.startsWith("child_run_")) {
      item.append(" ", el("a", { href: `#/runs/${p.child_run_id}`, text: "open child run", onclick: (e) => e.stopPropagation() }));
    }
    return item;
  }

  async travel(eventId) {
    const state = await api(`/v1/runs/${this.runId}/state?at_event_id=${eventId}`);
    this.asOf.textContent = JSON.stringify(state, null, 2);
  }
}
