// How the run page writes instants and spans: UTC to the millisecond, durations in ms or s.

export function clock(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");
}

export function span(ms) {
  if (ms == null) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

// Up to about ``count`` round offsets (1, 2 or 5 times a power of ten ms) from 0 to ``total``.
export function ticks(total, count = 4) {
  if (total <= 0) return [0];
  const raw = total / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const offsets = [];
  for (let t = 0; t <= total + step / 1000; t += step) offsets.push(t);
  return offsets;
}
