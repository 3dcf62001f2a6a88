// Time ranges the charts offer, each with a step the rollups hold (1 minute, or whole hours).
export const RANGES = [
  { id: "1h", label: "Last hour", since: "1h", step: "1m", secs: 3600 },
  { id: "24h", label: "Last 24 hours", since: "24h", step: "1h", secs: 86400 },
  { id: "7d", label: "Last 7 days", since: "7d", step: "6h", secs: 7 * 86400 },
  { id: "30d", label: "Last 30 days", since: "30d", step: "24h", secs: 30 * 86400 },
];

export function rangeSelect(current, onChange) {
  const sel = document.createElement("select");
  sel.id = "range";
  for (const r of RANGES) {
    const o = document.createElement("option");
    o.value = r.id;
    o.textContent = r.label;
    o.selected = r.id === current;
    sel.append(o);
  }
  sel.addEventListener("change", () => onChange(sel.value));
  return sel;
}

export const rangeOf = (id) => RANGES.find((r) => r.id === id) || RANGES[1];

/** Buckets as the series answers them (only buckets with traffic) spread over every step of the window. */
export function fillBuckets(answer) {
  const { since, until, step } = answer;
  const byT = new Map(answer.buckets.map((b) => [b.bucket, b]));
  const start = Math.floor(since / step) * step;
  const out = [];
  for (let t = start; t < until; t += step) out.push(byT.get(t) || { bucket: t, empty: true });
  return out;
}
