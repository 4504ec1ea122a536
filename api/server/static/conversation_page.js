// A conversation's page: the run holding it and its events.
import { api, coalesced, el, main, stream, summary } from "./common.js";
import { panelFor } from "./panel.js";

export async function conversationPage(conversationId) {
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

