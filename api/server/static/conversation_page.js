// A conversation's page: the status panel of the run holding it, then its runs oldest first,
// each with its messages as a chat and its events on demand. Only the newest runs are read at
// first ("Show earlier runs" pages back), so a long conversation stays a short page.
import { api, coalesced, currentPage, el, every, main, stillShown, stream, whoAmI } from "./common.js";
import { RunGroup } from "./conversation_run.js";
import { panelFor } from "./panel.js";

const WINDOW = 10;

export async function conversationPage(conversationId) {
  const page = currentPage();
  const visibility = (await whoAmI()).max_visibility;
  stillShown(page);
  const conversation = encodeURIComponent(conversationId);
  const groups = new Map();
  const panelSlot = el("div");
  const count = el("p", { class: "conv-count" });
  const list = el("ol", { class: "conv-runs", "aria-label": "runs, oldest first" });
  const earlier = el("button", { type: "button", hidden: "", text: "Show earlier runs", onclick: () => loadRuns(older) });
  main.replaceChildren(el("h1", { class: "conv-title", text: `Conversation ${conversationId}` }), panelSlot,
    el("section", { class: "conv-runs-section" }, el("h2", { text: "Runs" }), count, earlier, list));

  let current = null;
  async function refreshPanel() {
    const status = await api(`/v1/conversations/${conversation}/agent-status`);
    current = status.run && !status.run.terminal ? status.run.id : null;
    panelSlot.replaceChildren(status.run ? panelFor(status.run, refreshPanel, `/v1/conversations/${conversation}/cancel`)
      : el("section", { text: "No run yet." }));
    if (status.run) panelSlot.firstChild.querySelector("h2").after(holder(status.run));
    for (const group of groups.values()) group.setCurrent(group.run.id === current);
  }
  async function refreshCount() {
    const stats = await api(`/v1/runs/stats?conversation_id=${conversation}`);
    const shown = groups.size < stats.total ? `showing the newest ${groups.size} of ${stats.total} runs` : `${stats.total} run${stats.total === 1 ? "" : "s"}`;
    count.textContent = shown;
  }

  let older = null;  // the listing's cursor past the oldest run shown
  async function loadRuns(after) {
    const params = new URLSearchParams({ conversation_id: conversationId, limit: String(WINDOW) });
    if (after) params.set("after", after);
    const page = await api(`/v1/runs?${params}`);
    older = page.next_cursor;
    earlier.hidden = !older;
    await Promise.all(page.items.map(add));
    await refreshCount();
  }
  async function add(run) {
    if (groups.has(run.id)) return;
    const group = new RunGroup(run, visibility);
    groups.set(run.id, group);
    group.setCurrent(run.id === current);
    const next = [...groups.values()].filter((g) => g.run.created_event_id > run.created_event_id && g.node.isConnected)
      .sort((a, b) => a.run.created_event_id - b.run.created_event_id)[0];
    list.insertBefore(group.node, next ? next.node : null);
    await group.loadMessages();
  }

  // A run the page does not show yet: a new one joins at the end; an old one stays behind
  // "Show earlier runs" (the window of runs shown is always the newest ones, unbroken).
  const joining = new Set();
  async function join(runId) {
    if (joining.has(runId)) return;
    joining.add(runId);
    try {
      const run = await api(`/v1/runs/${encodeURIComponent(runId)}`);
      const oldest = Math.min(...[...groups.values()].map((g) => g.run.created_event_id));
      if (!older || run.created_event_id > oldest) { await add(run); await refreshCount(); }
    } finally { joining.delete(runId); }
  }

  const dirty = new Set();
  const rereadRuns = coalesced(100, async () => {
    const ids = [...dirty]; dirty.clear();
    for (const id of ids) groups.get(id).update(await api(`/v1/runs/${encodeURIComponent(id)}`));
  });
  const refreshSoon = coalesced(100, refreshPanel);
  function follow(event) {
    const group = groups.get(event.run_id);
    refreshSoon();
    if (!group) { join(event.run_id); return; }  // its first read holds this event
    if (event.event_type === "message_created") group.addMessage(event);
    group.addEvent(event);
    dirty.add(event.run_id);
    rereadRuns();
  }

  const { head } = await api("/v1/events?limit=1");  // streamed from here: the reads below hold the rest
  await refreshPanel();
  await loadRuns(null);
  stillShown(page);
  stream(`/v1/conversations/${conversation}/agent-events?visibility=${visibility}&after_event_id=${head}`, follow);
  every(1000, () => { for (const group of groups.values()) if (!group.run.terminal) group.update(group.run); });
}

// Which run the panel is about, linked: the conversation's cancel acts on it while it lasts.
function holder(run) {
  return el("p", { class: "conv-holder" }, run.terminal ? "Latest run: " : "Holding the conversation now: ",
    el("a", { href: `#/runs/${encodeURIComponent(run.id)}`, text: run.id }));
}
