// The runs board: filters, counts, charts and the live table.
import { STATUSES, api, currentPage, el, elapsed, every, main, statusCell, stillShown, stream, timestamp } from "./common.js";
import { DURATION_LABELS, SAMPLES, durations, eventsPerSecond, statusOverTime } from "./charts.js";
import { fromAddress, matches, parseMetadata, toAddress, toQuery } from "./board_filters.js";

const COLUMNS = ["run", "status", "agent", "created", "elapsed", "conversation", "stop reason", "tokens"];

export async function board(search) {
  const page = currentPage();
  const runs = new Map();
  const filters = fromAddress(search);
  const perSecond = [0];
  let statusSamples = [];
  let stats = { total: 0, by_status: {}, durations: DURATION_LABELS.map(() => ({ count: 0 })) };
  let statsStale = true;
  const body = el("tbody");
  const counts = el("div", { class: "counts", "aria-label": "runs by status" });
  const more = el("button", { type: "button", hidden: "", text: "Show older runs",
    onclick: async () => { await loadPage(older); renderRows(); } });
  const charts = el("div", { class: "charts" });
  const form = filterForm(filters, (next) => apply(next));
  main.replaceChildren(
    el("section", {}, el("h1", { text: "Runs" }), form.node, counts, charts),
    el("section", { class: "scroll" }, el("table", { "aria-label": "runs", class: "runs" },
      el("thead", {}, el("tr", {}, ...COLUMNS.map((h) => el("th", { scope: "col", text: h })))), body), more));

  function renderRows() {
    const rows = [...runs.values()].filter((run) => matches(filters, run)).sort((a, b) => b.created_event_id - a.created_event_id);
    body.replaceChildren(...rows.map(row));
  }
  function renderCharts() {
    counts.replaceChildren(el("span", { text: `${stats.total} run${stats.total === 1 ? "" : "s"}` }),
      ...Object.entries(stats.by_status).map(([s, n]) => el("span", { "data-status": s }, el("i", { class: `swatch f-${s}` }), statusCell(s), ` ${n}`)));
    charts.replaceChildren(statusOverTime(statusSamples), eventsPerSecond(perSecond), durations(stats.durations));
  }
  async function refreshStats() {
    if (statsStale) {
      statsStale = false;
      try { stats = await api(`/v1/runs/stats?${toQuery(filters)}`); } catch { statsStale = true; }  // server away: keep the last
    }
    statusSamples.push(stats.by_status);
    if (statusSamples.length > SAMPLES) statusSamples.shift();
  }
  let older = null;  // the listing's cursor past the runs shown
  async function loadPage(after) {
    const params = toQuery(filters, { limit: "50" });
    if (after) params.append("after", after);
    const page = await api(`/v1/runs?${params}`);
    for (const run of page.items) runs.set(run.id, run);
    older = page.next_cursor;
    more.hidden = !older;
  }
  // The last minute as the server saw it, so the chart is full at once (then a sample a second).
  async function loadHistory() {
    const history = await api(`/v1/runs/stats/history?${toQuery(filters, { seconds: String(SAMPLES) })}`);
    statusSamples = history.samples.map((sample) => sample.by_status);
  }
  async function reload() {
    runs.clear();
    try {
      await Promise.all([loadPage(null), loadHistory()]);
      form.problem("");
    } catch (error) {
      form.problem(String(error.message || error));  // a filter the server refused: say which
    }
    statsStale = true;
    await refreshStats();
    statusSamples.pop();  // the history already ends now
    statusSamples.push(stats.by_status);
    renderRows();
    renderCharts();
  }
  // A new filter is a new entry in the tab's history (back returns to the previous one); an
  // exact run id opens that run instead.
  let asked = JSON.stringify(filters);  // Enter fires both change and submit: act once
  async function apply(next) {
    if (JSON.stringify(next) === asked) return;
    asked = JSON.stringify(next);
    if (next.run && next.run !== filters.run && await exists(next.run)) {
      location.hash = `#/runs/${encodeURIComponent(next.run)}`;
      return;
    }
    Object.assign(filters, next);
    const address = toAddress(filters);
    if (address !== location.hash && !(address === "#/" && !location.hash)) history.pushState(null, "", address);
    await reload();
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
  stillShown(page);
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
  stillShown(page);
  stream(`/v1/events?visibility=user&after_event_id=${head}`, (event) => { perSecond[perSecond.length - 1] += 1; changed(event.run_id); });
}

async function exists(runId) {
  try { await api(`/v1/runs/${encodeURIComponent(runId)}`); return true; } catch { return false; }
}

// The filters as a search form: the select and the checkbox apply at once, the text fields on
// Enter or on leaving them (or with the button, for touch keyboards without Enter).
function filterForm(filters, onApply) {
  const status = el("select", { id: "filter-status", name: "status" },
    el("option", { value: "", text: "any status" }), ...STATUSES.map((s) => el("option", { value: s, text: s })));
  const agent = el("input", { id: "filter-agent", name: "agent", autocomplete: "off" });
  const run = el("input", { id: "filter-run", name: "run", autocomplete: "off", spellcheck: "false" });
  const metadata = el("input", { id: "filter-metadata", name: "metadata", autocomplete: "off",
    placeholder: "key=value, key=value", "aria-describedby": "filter-problem" });
  const active = el("input", { type: "checkbox", id: "filter-active", name: "active" });
  const problem = el("p", { id: "filter-problem", class: "filter-problem", role: "alert" });
  status.value = filters.status;
  agent.value = filters.agent;
  run.value = filters.run;
  metadata.value = filters.metadata.join(", ");
  active.checked = filters.active;
  const field = (label, input) => el("span", { class: "field" }, el("label", { for: input.id, text: label }), input);
  const node = el("form", { class: "filters", role: "search", "aria-label": "filter runs" },
    field("status", status), field("agent", agent), field("run id", run), field("metadata", metadata),
    el("span", { class: "field check" }, active, el("label", { for: "filter-active", text: "active only" })),
    el("button", { type: "submit", text: "Apply" }), problem);
  const submit = () => {
    const parsed = parseMetadata(metadata.value);
    if (parsed.error) { problem.textContent = parsed.error; return; }
    onApply({ status: status.value, agent: agent.value.trim(), run: run.value.trim(), metadata: parsed.pairs, active: active.checked });
  };
  node.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  node.addEventListener("change", submit);
  return { node, problem: (text) => { problem.textContent = text; } };
}

function row(run) {
  const lane = run.lane_key === `conversation:${run.conversation_id}` ? [] : [el("span", { class: "lane", text: `lane ${run.lane_key}` })];
  return el("tr", { "data-run-id": run.id, "data-status": run.status },
    el("td", { class: "id" }, el("a", { href: `#/runs/${encodeURIComponent(run.id)}`, text: run.id, title: run.id })),
    el("td", { "data-label": "status" }, statusCell(run.status)),
    el("td", { "data-label": "agent" }, el("span", { class: "agent", text: run.agent_id, title: run.agent_id })),
    el("td", { class: "created", "data-label": "created" }, created(run.created_at)),
    el("td", { class: "elapsed", "data-label": "elapsed", text: elapsed(run) }),
    el("td", { class: "conversation", "data-label": "conversation" },
      el("a", { href: `#/conversations/${encodeURIComponent(run.conversation_id)}`, text: run.conversation_id, title: run.conversation_id }), ...lane),
    el("td", { "data-label": "stop reason", text: run.stop_reason || "-" }),
    el("td", { class: "tokens", "data-label": "tokens", text: String(run.total_tokens) }));
}

// Local time: the time alone for today's runs, the date too for older ones; the full moment
// (UTC, as the API gives it) in the element's datetime and title.
function created(text) {
  const moment = new Date(timestamp(text));
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}`;
  const today = moment.toDateString() === new Date().toDateString();
  const day = `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}`;
  return el("time", { datetime: text, title: text, text: today ? time : `${day} ${time}` });
}
