// Building the DOM without innerHTML: every text from the gateway (model names, error messages, ledger rows) is
// attacker-controlled, so it only ever lands in textContent or attribute values.

/** h("tag.class", {attr: value, on: {click: fn}}, ...children): children are nodes or strings (text). */
export function h(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "text") el.textContent = String(v);
    else if (k in el && typeof v !== "string") el[k] = v; // value, checked, disabled as properties
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A table: columns [{label, cell(row) -> node|string, num?}], rows; a caption for screen readers. */
export function table(caption, columns, rows, opts = {}) {
  const head = h("tr", {}, columns.map((c) => h("th" + (c.num ? ".num" : ""), { scope: "col" }, c.label)));
  const body = rows.map((r) =>
    h("tr", opts.rowProps ? opts.rowProps(r) : {}, columns.map((c) => h("td" + (c.num ? ".num" : ""), {}, c.cell(r)))),
  );
  const empty = rows.length
    ? null
    : h("tr", {}, h("td.empty", { colspan: String(columns.length) }, opts.empty || "Nothing yet."));
  return h(
    "div.table-wrap",
    {},
    h("table", {}, h("caption" + (opts.showCaption ? "" : ".sr-only"), {}, caption), h("thead", {}, head), h("tbody", {}, body, empty)),
  );
}

/** A labelled form control: field("Name", h("input", {...})) — the label points at the control's id. */
let nextId = 0;
export function field(label, control, hint) {
  if (!control.id) control.id = "f" + ++nextId;
  const hintEl = hint ? h("small.hint", { id: control.id + "-hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div.field", {}, h("label", { for: control.id }, label), control, hintEl);
}

export function badge(text, kind) {
  return h("span.badge." + (kind || "neutral"), {}, text);
}

// ---------------------------------------------------------------- formatting
const nf = new Intl.NumberFormat("en-US");
export const fmtInt = (n) => (n === null || n === undefined ? "–" : nf.format(Math.round(n)));
export function fmtUsd(n) {
  if (n === null || n === undefined) return "–";
  if (n === 0) return "$0";
  return "$" + (Math.abs(n) < 0.01 ? n.toPrecision(2) : n.toFixed(n < 100 ? 4 : 2));
}
/** Axis labels: short, as many digits as the value needs. */
export const fmtUsdAxis = (n) => (n === 0 ? "$0" : "$" + Number(n.toPrecision(2)));
export const fmtMs = (n) => (n === null || n === undefined ? "–" : n < 1000 ? Math.round(n) + " ms" : (n / 1000).toFixed(2) + " s");
export const fmtPct = (n) => (n === null || n === undefined ? "–" : n.toFixed(n < 10 ? 1 : 0) + "%");
export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "–";
  const d = new Date(ts * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}
export function fmtAgo(ts) {
  if (!ts) return "–";
  const s = Date.now() / 1000 - ts;
  if (s < 0) return "in " + fmtDur(-s);
  return fmtDur(s) + " ago";
}
export function fmtDur(s) {
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
