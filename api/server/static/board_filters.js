// The board's filters: read from the address, written back to it, sent to the API, and
// applied to runs that change while the board is open.
import { ACTIVE } from "./common.js";

// The address holds what was asked (#/?status=running&agent=a&run=run-3f&metadata=env%3Dprod&active=1),
// so a filtered board can be bookmarked, shared, reloaded, and stepped through with back/forward.
export function fromAddress(search) {
  const given = new URLSearchParams(search);
  return {
    status: given.get("status") || "",
    agent: given.get("agent") || "",
    run: given.get("run") || "",
    metadata: given.getAll("metadata").filter(Boolean),
    active: given.get("active") === "1",
  };
}

export function toAddress(filters) {
  const shown = new URLSearchParams();
  if (filters.status) shown.set("status", filters.status);
  if (filters.agent) shown.set("agent", filters.agent);
  if (filters.run) shown.set("run", filters.run);
  for (const pair of filters.metadata) shown.append("metadata", pair);
  if (filters.active) shown.set("active", "1");
  const query = shown.toString();
  return query ? `#/?${query}` : "#/";
}

// The API's own parameters for the same filters (GET /v1/runs, /stats, /stats/history).
export function toQuery(filters, extra = {}) {
  const params = new URLSearchParams(extra);
  if (filters.status) params.append("status", filters.status);
  if (filters.agent) params.append("agent_id", filters.agent);
  if (filters.run) params.append("run_id_prefix", filters.run);
  for (const pair of filters.metadata) params.append("metadata", pair);
  if (filters.active) params.append("active", "true");
  return params;
}

// "team=search, env=prod" → ["team=search", "env=prod"]: a comma starts a new pair only when a
// key= follows it, so a value may hold commas. Returns the pairs, or an error to show.
export function parseMetadata(text) {
  const pairs = text.split(/,\s*(?=[^=,\s][^=,]*=)/).map((p) => p.trim()).filter(Boolean);
  const bad = pairs.find((p) => !/^[^=]+=/.test(p));
  return bad ? { error: `Metadata filters are key=value; "${bad}" is not.` } : { pairs };
}

// How the server compares a metadata value with a filter's text: strings as they are, else JSON.
function metadataText(value) { return typeof value === "string" ? value : JSON.stringify(value); }

export function matches(filters, run) {
  const metadata = run.metadata || {};
  return (!filters.status || run.status === filters.status)
    && (!filters.agent || run.agent_id === filters.agent)
    && (!filters.run || run.id.startsWith(filters.run))
    && filters.metadata.every((pair) => {
      const [key, ...rest] = pair.split("=");
      return key in metadata && metadataText(metadata[key]) === rest.join("=");
    })
    && (!filters.active || ACTIVE.has(run.status) || run.status === "resuming");
}
