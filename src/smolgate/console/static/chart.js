// Our own small SVG charts (no library): a line/area chart over time and horizontal bars for a top-N. The SVG
// scales with its box (viewBox); colours come from CSS classes, so the charts follow the page's theme and CSP.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A "nice" upper bound and tick step for values up to `max`. */
function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw);
  return { top: step * Math.ceil(max / step), step };
}

function timeLabel(ts, span) {
  const d = new Date(ts * 1000);
  const iso = d.toISOString();
  return span > 2 * 86400 ? iso.slice(5, 10) : iso.slice(11, 16);
}

/**
 * lineChart({title, times: [unix s], series: [{name, values: [number|null], area?}], format: v => string})
 * Gaps (null) break the line. `width`: the viewBox width — about the box's pixel width, so text keeps its size. The SVG carries a text summary for screen readers.
 */
export function lineChart({ title, times, series, format = String, height = 170, width = 440 }) {
  const W = width, H = height, L = 58, R = 8, T = 10, B = 22;
  const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined && isFinite(v));
  const empty = all.length === 0;
  const { top, step } = niceScale(Math.max(0, ...all));
  const t0 = times[0] ?? 0, t1 = times[times.length - 1] ?? 1;
  const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const latest = series.map((sr) => `${sr.name} ${format(lastValue(sr.values))}`).join(", ");
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${title}: latest ${latest}` });
  svg.append(s("title", {}, title));
  for (let v = 0; v <= top + 1e-9 && !(empty && v > 0); v += step) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
  }
  const nLabels = Math.min(6, times.length);
  for (let i = 0; i < nLabels; i++) {
    const t = times[Math.round((i * (times.length - 1)) / Math.max(1, nLabels - 1))];
    if (t === undefined) continue;
    const anchor = i === 0 ? "start" : i === nLabels - 1 ? "end" : "middle";
    svg.append(s("text", { x: x(t), y: H - 5, class: "axis", "text-anchor": anchor }, timeLabel(t, t1 - t0)));
  }
  if (empty) svg.append(s("text", { x: (L + W - R) / 2, y: H / 2, class: "axis", "text-anchor": "middle" }, "no data in this range"));
  series.forEach((sr, i) => {
    const segments = [];
    let cur = [];
    sr.values.forEach((v, j) => {
      if (v === null || v === undefined || !isFinite(v)) {
        if (cur.length) segments.push(cur);
        cur = [];
      } else cur.push([x(times[j]), y(v)]);
    });
    if (cur.length) segments.push(cur);
    for (const seg of segments) {
      const d = seg.map(([px, py], k) => (k ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1)).join(" ");
      if (sr.area && seg.length > 1) {
        const base = y(0).toFixed(1);
        svg.append(s("path", { d: `${d} L${seg[seg.length - 1][0].toFixed(1)} ${base} L${seg[0][0].toFixed(1)} ${base} Z`, class: `area s${i}` }));
      }
      svg.append(s("path", { d, class: `line s${i}` }));
      if (seg.length === 1) svg.append(s("circle", { cx: seg[0][0], cy: seg[0][1], r: 3, class: `dot s${i}` }));
    }
  });
  const legend = series.length > 1 ? legendOf(series) : null;
  const wrap = document.createElement("figure");
  wrap.className = "chart-box";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  wrap.append(cap, svg);
  if (legend) wrap.append(legend);
  return wrap;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

function legendOf(series) {
  const ul = document.createElement("ul");
  ul.className = "legend";
  series.forEach((sr, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `swatch s${i}`;
    sw.setAttribute("aria-hidden", "true");
    li.append(sw, document.createTextNode(sr.name));
    ul.append(li);
  });
  return ul;
}

/** barChart({title, items: [{label, value, note?}], format}) — one bar per item, its label above it (whole, as
 * text), the value and note after it. */
export function barChart({ title, items, format = String }) {
  const rowH = 34, W = 440, R = 180;
  const H = Math.max(1, items.length) * rowH + 4;
  const max = Math.max(0, ...items.map((i) => i.value));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars", role: "img", "aria-label": title + ": " + items.map((i) => `${i.label} ${format(i.value)}`).join(", ") });
  svg.append(s("title", {}, title));
  items.forEach((it, k) => {
    const yy = k * rowH;
    const w = max > 0 ? ((W - R) * it.value) / max : 0;
    const label = it.label.length > 60 ? it.label.slice(0, 59) + "…" : it.label;
    svg.append(s("text", { x: 0, y: yy + 13, class: "axis label" }, label));
    svg.append(s("rect", { x: 0, y: yy + 17, width: Math.max(2, w).toFixed(1), height: 12, rx: 3, class: "bar" }));
    svg.append(s("text", { x: Math.max(2, w) + 6, y: yy + 28, class: "axis" }, format(it.value) + (it.note ? " · " + it.note : "")));
  });
  if (!items.length) svg.append(s("text", { x: W / 2, y: 20, class: "axis", "text-anchor": "middle" }, "no data in this range"));
  const wrap = document.createElement("figure");
  wrap.className = "chart-box";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  wrap.append(cap, svg);
  return wrap;
}
