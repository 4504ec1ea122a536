// One run of a conversation page: its summary (linked to its run page), its messages as a chat,
// and its events behind a <details> that reads them only when opened.
import { api, el, elapsed, statusCell, summary } from "./common.js";
import { bubble, placeInOrder } from "./transcript.js";

const PAGE = 1000;

export class RunGroup {
  constructor(run, visibility) {
    this.visibility = visibility;
    this.facts = el("dl", { class: "conv-facts" });
    this.messages = el("ol", { class: "transcript", "aria-label": `messages of run ${run.id}` });
    this.events = el("ol", { class: "conv-events-list", tabindex: "0", "aria-label": `events of run ${run.id}` });
    this.note = el("p", { class: "conv-note", role: "status" });
    this.loaded = null;  // the promise of the first read of the events, once opened
    const details = el("details", { class: "conv-events" }, el("summary", { text: "Events" }), this.note, this.events);
    details.addEventListener("toggle", () => { if (details.open) this.openEvents(); });
    this.node = el("li", { class: "conv-run", "data-run-id": run.id },
      el("article", {}, el("h3", {}, el("a", { href: `#/runs/${encodeURIComponent(run.id)}`, text: run.id })),
        this.facts, this.messages, details));
    this.update(run);
  }

  // The summary every role sees whole (docs/api.md, "What a role sees").
  update(run) {
    this.run = run;
    this.node.dataset.status = run.status;
    const fact = (name, ...value) => el("div", {}, el("dt", { text: name }), el("dd", {}, ...value));
    this.facts.replaceChildren(fact("status", statusCell(run.status)), fact("agent", run.agent_id),
      fact("stop reason", run.stop_reason || "-"), fact("duration", elapsed(run)),
      fact("tokens", String(run.total_tokens)));
  }

  setCurrent(current) {
    this.node.classList.toggle("current", current);
    if (current) this.node.setAttribute("aria-current", "true"); else this.node.removeAttribute("aria-current");
  }

  async loadMessages() {
    const { items } = await api(`/v1/runs/${encodeURIComponent(this.run.id)}/messages`);
    for (const found of items) placeInOrder(this.messages, bubble(found));
  }

  addMessage(event) { placeInOrder(this.messages, bubble({ id: event.id, ...event.payload })); }

  // A live event joins the list only once it has been read; until then opening reads it.
  addEvent(event) { if (this.loaded) placeInOrder(this.events, this.eventItem(event)); }

  openEvents() {
    this.loaded = this.loaded || this.readEvents();
    return this.loaded;
  }

  async readEvents() {
    this.note.textContent = "Loading events…";
    let after = 0;
    for (;;) {
      const page = await api(`/v1/runs/${encodeURIComponent(this.run.id)}/events?after_event_id=${after}&limit=${PAGE}&visibility=${this.visibility}`);
      for (const event of page.items) placeInOrder(this.events, this.eventItem(event));
      after = page.position;
      if (!page.next_cursor) break;
    }
    this.note.textContent = this.events.childElementCount ? "" : "No events you may see.";
  }

  eventItem(event) {
    return el("li", { "data-event-id": String(event.id), "data-type": event.event_type,
      text: `#${event.id} ${event.event_type} ${summary(event)}` });
  }
}
