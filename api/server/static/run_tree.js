// A run's parent and its descendants (children of children too) as nested lists of links,
// read through each run's child_run_ids, at most MAX_RUNS runs so a wide fan-out cannot stall
// the page. A key that may not see child runs (below operator) gets none listed.
import { api, el, statusCell } from "./common.js";

const MAX_RUNS = 200;
const runLink = (id) => el("a", { href: `#/runs/${encodeURIComponent(id)}`, text: id });

export async function runTree(run) {
  const section = el("section", { class: "run-tree", "aria-labelledby": "run-tree-title" },
    el("h2", { id: "run-tree-title", text: "Related runs" }));
  section.append(el("p", { class: "parent" }, "Parent run: ", run.parent_run_id ? runLink(run.parent_run_id) : "none"));
  if (!run.child_run_ids.length) {
    section.append(el("p", { text: "No child runs." }));
    return section;
  }
  const budget = { left: MAX_RUNS, seen: new Set([run.id]) };
  section.append(el("p", { text: "Child runs:" }), await branch(run.child_run_ids, budget));
  return section;
}

async function branch(ids, budget) {
  const fresh = ids.filter((id) => !budget.seen.has(id));
  const shown = fresh.slice(0, Math.max(budget.left, 0));
  budget.left -= shown.length;
  shown.forEach((id) => budget.seen.add(id));
  const runs = await Promise.all(shown.map((id) => api(`/v1/runs/${encodeURIComponent(id)}`).catch(() => null)));
  const list = el("ul", { "aria-label": "child runs" });
  for (const [i, id] of shown.entries()) list.append(await node(id, runs[i], budget));
  if (fresh.length > shown.length) list.append(el("li", { text: `and ${fresh.length - shown.length} more` }));
  return list;
}

async function node(id, child, budget) {
  const item = el("li", { "data-run-id": id }, runLink(id));
  if (!child) {
    item.append(" (not readable with this key)");
    return item;
  }
  item.append(` ${child.agent_id} `, statusCell(child.status));
  if (child.child_run_ids.length) item.append(await branch(child.child_run_ids, budget));
  return item;
}
