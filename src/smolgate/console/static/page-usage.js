// Usage: the ledger's rows filtered by time, key, model, account and status — a table, a chart of the window,
// and the same filter as a CSV download (the API answers text/csv; the browser saves it).
import { ApiError, get, qs } from "./api.js";
import { lineChart } from "./chart.js";
import { badge, field, fmtInt, fmtMs, fmtTime, fmtUsd, fmtUsdAxis, h, table } from "./dom.js";
import { Page } from "./page.js";
import { RANGES, fillBuckets, rangeOf } from "./ranges.js";

class Usage extends Page {
  title = "Usage";

  async load() {
    this.busy();
    const [keys, models] = await Promise.all([get("/admin/keys?include_revoked=true"), get("/admin/models")]);
    const opt = (v, l) => h("option", { value: v }, l);
    this.keyNames = new Map(keys.keys.map((k) => [k.id, k.name]));
    this.f = {
      since: h("select", { name: "since" }, RANGES.map((r) => opt(r.id, r.label))),
      key: h("select", { name: "key" }, opt("", "any key"), keys.keys.map((k) => opt(k.id, `${k.name} (${k.prefix}…)`))),
      alias: h("select", { name: "alias" }, opt("", "any model"), models.models.map((m) => opt(m.name, m.name))),
      account: h("input", { name: "account", placeholder: "any account", autocomplete: "off" }),
      status: h("select", { name: "status" }, opt("", "any status"), opt("ok", "ok"), opt("error", "errors"), ["400", "401", "403", "429", "500", "502", "503", "504"].map((c) => opt(c, c))),
      limit: h("select", { name: "limit" }, ["100", "500", "1000"].map((n) => opt(n, n + " rows"))),
    };
    this.f.since.value = "24h";
    this.csv = h("a.button", { download: "smolgate-usage.csv", href: "#" }, "Export CSV");
    const form = h(
      "form.card.filters",
      { "aria-label": "Filters" },
      h("div.form-grid.six", {}, field("Time", this.f.since), field("Key", this.f.key), field("Model", this.f.alias), field("Account", this.f.account), field("Status", this.f.status), field("Rows", this.f.limit)),
      h("div.row", {}, h("button.primary", { type: "submit" }, "Apply"), this.csv),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.refresh().catch((e) => this.fail(e));
    });
    for (const el of Object.values(this.f)) if (el.tagName === "SELECT") el.addEventListener("change", () => this.refresh().catch((e) => this.fail(e)));
    this.chart = h("section", { "aria-label": "Chart" });
    this.list = h("section", { "aria-label": "Rows" });
    this.body.replaceChildren(form, this.chart, this.list);
    await this.refresh();
  }

  async refresh() {
    this.busy();
    const r = rangeOf(this.f.since.value);
    const filter = { since: r.since, key: this.f.key.value, alias: this.f.alias.value, account: this.f.account.value.trim(), status: this.f.status.value };
    const [series, recent] = await Promise.all([
      get("/admin/usage/series" + qs({ since: r.since, step: r.step, key: filter.key })),
      this.recent(filter, Date.now() / 1000 - r.secs),
    ]);
    const buckets = fillBuckets(series);
    this.chart.replaceChildren(
      h("div.grid2", {},
        lineChart({ title: "Requests" + (filter.key ? " (this key)" : ""), times: buckets.map((b) => b.bucket), series: [{ name: "requests", values: buckets.map((b) => b.requests ?? 0), area: true }, { name: "errors", values: buckets.map((b) => b.errors ?? 0) }], format: fmtInt, width: 640 }),
        lineChart({ title: "Cost (USD)" + (filter.key ? " (this key)" : ""), times: buckets.map((b) => b.bucket), series: [{ name: "cost", values: buckets.map((b) => b.cost_usd ?? 0), area: true }], format: fmtUsdAxis, width: 640 }),
      ),
    );
    const rows = recent;
    this.list.replaceChildren(
      table("Ledger rows, newest first", [
        { label: "Time", cell: (u) => fmtTime(u.ts) },
        { label: "Key", cell: (u) => (u.key_id === null ? "(open)" : this.keyNames.get(u.key_id) ?? u.key_id) },
        { label: "Protocol", cell: (u) => u.client_protocol },
        { label: "Model", cell: (u) => u.alias ?? "–" },
        { label: "Served by", cell: (u) => (u.provider ? `${u.provider}/${u.account ?? "–"}` : "–") },
        { label: "Status", cell: (u) => badge(String(u.status), u.status < 400 ? "ok" : "bad") },
        { label: "Tokens in", cell: (u) => fmtInt(u.input_tokens), num: true },
        { label: "Tokens out", cell: (u) => fmtInt(u.output_tokens), num: true },
        { label: "Cost", cell: (u) => fmtUsd(u.cost_usd), num: true },
        { label: "Latency", cell: (u) => fmtMs(u.latency_ms), num: true },
        { label: "TTFT", cell: (u) => fmtMs(u.ttft_ms), num: true },
        { label: "Attempts", cell: (u) => fmtInt(u.attempts), num: true },
      ], rows, { empty: "No requests match.", rowProps: (u) => ({ "data-request-id": u.request_id }) }),
    );
    const cost = rows.reduce((a, u) => a + (u.cost_usd || 0), 0);
    this.done(`${rows.length} row${rows.length === 1 ? "" : "s"} · ${fmtUsd(cost)} in these rows.`);
  }
}

// A gateway whose /admin/usage/recent takes only `limit` and `key` (before the console's filters) gets the newest
// rows filtered here, and a CSV built from them; otherwise the API filters and writes the CSV.
function matches(u, f, since) {
  if (u.ts < since) return false;
  if (f.alias && u.alias !== f.alias) return false;
  if (f.account && u.account !== f.account && `${u.provider}/${u.account}` !== f.account) return false;
  if (f.status === "ok") return u.status < 400;
  if (f.status === "error") return u.status >= 400;
  return !f.status || String(u.status) === f.status;
}

const CSV_COLUMNS = ["ts", "request_id", "key_id", "client_protocol", "alias", "provider", "account", "upstream_model", "status", "input_tokens", "output_tokens", "cost_usd", "latency_ms", "ttft_ms", "attempts"];

function csvOf(rows) {
  const cell = (v) => {
    const t = v === null || v === undefined ? "" : String(v);
    const safe = /^[=+\-@\t\r]/.test(t) ? "'" + t : t; // no formulas when a spreadsheet opens it
    return /[",\n\r]/.test(safe) ? '"' + safe.replaceAll('"', '""') + '"' : safe;
  };
  return [CSV_COLUMNS.join(","), ...rows.map((u) => CSV_COLUMNS.map((c) => cell(u[c])).join(","))].join("\r\n") + "\r\n";
}

Usage.prototype.recent = async function (filter, since) {
  const limit = this.f.limit.value;
  if (this.serverFilters !== false) {
    try {
      const data = await get("/admin/usage/recent" + qs({ ...filter, limit }));
      this.serverFilters = true;
      this.setCsv("/admin/usage/recent" + qs({ ...filter, limit: 1000, format: "csv" }));
      return data.rows;
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.status !== 400 || !/unknown query parameter/.test(exc.message)) throw exc;
      this.serverFilters = false;
    }
  }
  const data = await get("/admin/usage/recent" + qs({ key: filter.key, limit: 1000 }));
  const rows = data.rows.filter((u) => matches(u, filter, since)).slice(0, Number(limit));
  this.setCsv(URL.createObjectURL(new Blob([csvOf(rows)], { type: "text/csv" })));
  return rows;
};

Usage.prototype.setCsv = function (href) {
  if (this.csv.href.startsWith("blob:")) URL.revokeObjectURL(this.csv.href);
  this.csv.href = href;
};

customElements.define("sg-usage", Usage);
