// Small SVG and list charts for the board.
import { STATUSES, el } from "./common.js";

export const SAMPLES = 60;
export const DURATION_LABELS = ["< 1 s", "1–10 s", "10 s–1 min", "1–10 min", "10 min–1 h", "≥ 1 h"];

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// columns: one array of {value, fill, title} segments per sample, oldest first, stacked bottom-up.
export function stackedBars(columns) {
  const width = 8, height = 60;
  const peak = Math.max(1, ...columns.map((segments) => segments.reduce((sum, s) => sum + s.value, 0)));
  const chart = svg("svg", { viewBox: `0 0 ${SAMPLES * width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  columns.forEach((segments, index) => {
    let top = height;
    for (const segment of segments.filter((s) => s.value > 0)) {
      const size = (segment.value / peak) * height;
      top -= size;
      chart.append(svg("rect", { x: (SAMPLES - columns.length + index) * width, y: top, width: width - 1, height: size, class: segment.fill },
        svg("title", {}, segment.title)));
    }
  });
  return chart;
}

// One image to assistive technology, named by caption and description; the visible caption is
// not a figcaption, which would forbid the img role (and is already in the name).
export function figure(caption, description, ...content) {
  return el("figure", { class: "chart", role: "img", "aria-label": `${caption}: ${description}` },
    el("div", { class: "caption", "aria-hidden": "true", text: caption }), ...content);
}

export function statusOverTime(samples) {
  const latest = samples.length ? samples[samples.length - 1] : {};
  const description = Object.entries(latest).map(([s, n]) => `${s} ${n}`).join(", ") || "no runs";
  const columns = samples.map((counts) => STATUSES.map((s) => ({ value: counts[s] || 0, fill: `f-${s}`, title: `${s}: ${counts[s] || 0}` })));
  const chart = figure("Runs by status, last minute", description, stackedBars(columns));
  chart.dataset.samples = String(samples.length);  // seconds drawn: a full minute once loaded
  return chart;
}

export function eventsPerSecond(perSecond) {
  const columns = perSecond.map((n) => [{ value: n, fill: "f-events", title: `${n} events/s` }]);
  const last = perSecond.length > 1 ? perSecond[perSecond.length - 2] : 0;
  return figure("Events per second", `${last} in the last second`, stackedBars(columns));
}

export function durations(buckets) {
  const peak = Math.max(1, ...buckets.map((b) => b.count));
  const rows = buckets.map((bucket, i) => el("li", {},
    el("span", { class: "label", text: DURATION_LABELS[i] }),
    el("span", { class: "bar", style: `width:${(bucket.count / peak) * 100}%` }),
    el("span", { class: "value", text: String(bucket.count) })));
  const description = buckets.map((b, i) => `${DURATION_LABELS[i]}: ${b.count}`).join(", ");
  return figure("Durations of finished runs", description, el("ul", { class: "hbars" }, ...rows));
}

