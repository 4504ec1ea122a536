// The runs board: filters, counts, charts and the live table.
import { ACTIVE, STATUSES, api, el, elapsed, every, main, statusCell, stream } from "./common.js";
import { DURATION_LABELS, SAMPLES, durations, eventsPerSecond, statusOverTime } from "./charts.js";

// Filters live in the address (#/?status=running&agent=a&active=1): a filtered board can be shared.
export async function board(search) {
  const runs = new Map();
  const given = new URLSearchParams(search);
  const filters = { status: given.get("status") || "", agent: given.get("agent") || "", active: given.get("active") === "1" };
  const perSecond = [0];
  const statusSamples = [];
  let stats = { total: 0, by_status: {}, durations: DURATION_LABELS.map(() => ({ count: 0 })) };
  let statsStale = true;
  const body = el("tbody");
  const counts = el("div", { class: "counts", "aria-label": "runs by status" });
  const more = el("button", { type: "button", hidden: "", text: "Show older runs",
    onclick: async () => { await loadPage(older); renderRows(); } });
  const charts = el("div", { class: "charts" });
  const statusSelect = el("select", { "aria-label": "status", onchange: (e) => { filters.status = e.target.value; reload(); } },
    el("option", { value: "", text: "any status" }), ...STATUSES.map((s) => el("option", { value: s, text: s })));
  const agentInput = el("input", { placeholder: "agent", "aria-label": "agent", onchange: (e) => { filters.agent = e.target.value; reload(); } });
  const activeBox = el("input", { type: "checkbox", id: "active", onchange: (e) => { filters.active = e.target.checked; reload(); } });
  statusSelect.value = filters.status;
  agentInput.value = filters.agent;
  activeBox.checked = filters.active;
  main.replaceChildren(
    el("section", {}, el("h1", { text: "Runs" }),
      el("div", { class: "filters" }, statusSelect, agentInput, el("label", { for: "active" }, activeBox, " active only")),
      counts, charts),
    el("section", { class: "scroll" }, el("table", { "aria-label": "runs" },
      el("thead", {}, el("tr", {}, ...["run", "status", "agent", "elapsed", "conversation", "lane", "stop reason", "tokens"]
        .map((h, i) => el("th", { scope: "col", text: h, class: i >= 4 ? "hide-narrow" : "" })))), body), more));

  function query(limit) {
    const params = new URLSearchParams(limit ? { limit: String(limit) } : {});
    if (filters.status) params.append("status", filters.status);
    if (filters.agent) params.append("agent_id", filters.agent);
    if (filters.active) params.append("active", "true");
    return params;
  }
  function matches(run) {
    return (!filters.status || run.status === filters.status) && (!filters.agent || run.agent_id === filters.agent)
      && (!filters.active || ACTIVE.has(run.status) || run.status === "resuming");
  }
  function renderRows() {
    const rows = [...runs.values()].filter(matches).sort((a, b) => b.created_event_id - a.created_event_id);
    body.replaceChildren(...rows.map((run) => el("tr", { "data-run-id": run.id, "data-status": run.status },
      el("td", { class: "id" }, el("a", { href: `#/runs/${run.id}`, text: run.id, title: run.id })),
      el("td", {}, statusCell(run.status)), el("td", { text: run.agent_id }), el("td", { class: "elapsed", text: elapsed(run) }),
      el("td", { class: "hide-narrow" }, el("a", { href: `#/conversations/${run.conversation_id}`, text: run.conversation_id })),
      el("td", { class: "hide-narrow", text: run.lane_key }),
      el("td", { class: "hide-narrow", text: run.stop_reason || "-" }), el("td", { class: "hide-narrow", text: String(run.total_tokens) }))));
  }
  function renderCharts() {
    counts.replaceChildren(el("span", { text: `${stats.total} run${stats.total === 1 ? "" : "s"}` }),
      ...Object.entries(stats.by_status).map(([s, n]) => el("span", { "data-status": s }, el("i", { class: `swatch f-${s}` }), statusCell(s), ` ${n}`)));
    charts.replaceChildren(statusOverTime(statusSamples), eventsPerSecond(perSecond), durations(stats.durations));
  }
  async function refreshStats() {
    if (statsStale) {
      statsStale = false;
      try { stats = await api(`/v1/runs/stats?${query()}`); } catch { statsStale = true; }  // server away: keep the last
    }
    statusSamples.push(stats.by_status);
    if (statusSamples.length > SAMPLES) statusSamples.shift();
  }
  function remember() {
    const shown = new URLSearchParams();
    if (filters.status) shown.set("status", filters.status);
    if (filters.agent) shown.set("agent", filters.agent);
    if (filters.active) shown.set("active", "1");
    const query = shown.toString();
    history.replaceState(null, "", query ? `#/?${query}` : "#/");
  }
  let older = null;  // the listing's cursor past the runs shown
  async function loadPage(after) {
    const params = query(50);
    if (after) params.append("after", after);
    const page = await api(`/v1/runs?${params}`);
    for (const run of page.items) runs.set(run.id, run);
    older = page.next_cursor;
    more.hidden = !older;
  }
  async function reload() {
    remember();
    runs.clear();
    await loadPage(null);
    statusSamples.length = 0;
    statsStale = true;
    await refreshStats();
    renderRows();
    renderCharts();
  }
  const dirty = new Set();
  let flushing = null;
  function changed(runId) {
    dirty.add(runId);
    statsStale = true;
    flushing = flushing || setTimeout(async () => {
      const ids = [...dirty]; dirty.clear(); flushing = null;
      for (const id of ids) runs.set(id, await api(`/v1/runs/${id}`));
      renderRows();
    }, 100);
  }
  every(1000, async () => {
    perSecond.push(0);
    if (perSecond.length > SAMPLES) perSecond.shift();
    await refreshStats();
    renderCharts();
    renderRows();  // elapsed times tick
  });
  // Only what comes next: the listing below already holds every run as of ``head``.
  const { head } = await api("/v1/events?limit=1");
  await reload();
  stream(`/v1/events?visibility=user&after_event_id=${head}`, (event) => { perSecond[perSecond.length - 1] += 1; changed(event.run_id); });
}

