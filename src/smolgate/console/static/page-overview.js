// Overview: the ledger's rollups over a chosen range — totals, charts over time, and the top keys/models/accounts.
import { get, qs } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import { field, fmtInt, fmtMs, fmtPct, fmtUsd, fmtUsdAxis, h } from "./dom.js";
import { Page } from "./page.js";
import { fillBuckets, rangeOf, rangeSelect } from "./ranges.js";

class Overview extends Page {
  title = "Overview";
  range = sessionStorage.getItem("sg-range") || "24h";

  actions() {
    return field("Range", rangeSelect(this.range, (v) => {
      this.range = v;
      sessionStorage.setItem("sg-range", v);
      this.load().catch((e) => this.fail(e));
    }));
  }

  async load() {
    this.busy();
    const r = rangeOf(this.range);
    // Four calls, side by side; the totals come with the per-key answer (every grouped answer carries them).
    const [series, keys, models, accounts] = await Promise.all([
      get("/admin/usage/series" + qs({ since: r.since, step: r.step })),
      get("/admin/usage" + qs({ since: r.since, by: "key", limit: 8 })),
      get("/admin/usage" + qs({ since: r.since, by: "alias", limit: 8 })),
      get("/admin/usage" + qs({ since: r.since, by: "account", limit: 8 })),
    ]);
    const t = keys.total;
    const buckets = fillBuckets(series);
    const times = buckets.map((b) => b.bucket);
    const col = (f) => buckets.map((b) => (b.empty ? null : f(b)));
    const zero = (f) => buckets.map((b) => (b.empty ? 0 : f(b)));
    const tiles = [
      ["Requests", t.requests >= 1e6 ? compact(t.requests) : fmtInt(t.requests)],
      ["Tokens in / out", compact(t.input_tokens) + " / " + compact(t.output_tokens)],
      ["Cost", fmtUsd(t.cost_usd)],
      ["Error rate", fmtPct(t.error_pct)],
      ["Latency p50 / p99", latencyPair(t, buckets, "latency")],
      ["TTFT p50 / p99", latencyPair(t, buckets, "ttft")],
    ];
    // Ranked by cost; by requests while nothing in the range has a price (local models, unpriced aliases).
    const byCost = (t.cost_usd || 0) > 0;
    const bars = (what, answer, label) =>
      barChart({
        title: `Top ${what} by ${byCost ? "cost" : "requests"}`,
        items: answer.groups
          .map((g) => ({ label: label(g.group), value: byCost ? g.cost_usd || 0 : g.requests, note: byCost ? fmtInt(g.requests) + " req" : fmtUsd(g.cost_usd) }))
          .sort((a, b) => b.value - a.value),
        format: byCost ? fmtUsd : (v) => fmtInt(v) + " req",
      });
    const hasPct = buckets.some((b) => b.latency_p50_ms !== undefined);
    this.body.replaceChildren(
      h("section.tiles", { "aria-label": "Totals" }, tiles.map(([k, v]) => h("div.tile", {}, h("span.k", {}, k), h("strong.v", {}, v)))),
      h(
        "section.grid2",
        { "aria-label": "Charts" },
        lineChart({ title: "Requests and errors", times, series: [{ name: "requests", values: zero((b) => b.requests), area: true }, { name: "errors", values: zero((b) => b.errors) }], format: fmtInt }),
        lineChart({ title: "Tokens (in, out)", times, series: [{ name: "input", values: zero((b) => b.input_tokens), area: true }, { name: "output", values: zero((b) => b.output_tokens) }], format: compact }),
        lineChart({ title: "Cost (USD)", times, series: [{ name: "cost", values: zero((b) => b.cost_usd), area: true }], format: fmtUsdAxis }),
        lineChart({ title: "Error rate (%)", times, series: [{ name: "errors %", values: col((b) => b.error_pct) }], format: (v) => fmtPct(v) }),
        hasPct
          ? lineChart({ title: "Latency (p50, p99)", times, series: [{ name: "p50", values: col((b) => b.latency_p50_ms) }, { name: "p99", values: col((b) => b.latency_p99_ms) }], format: fmtMs })
          : lineChart({ title: "Latency (average)", times, series: [{ name: "average", values: col((b) => b.avg_latency_ms) }], format: fmtMs }),
        hasPct
          ? lineChart({ title: "Time to first token (p50, p99)", times, series: [{ name: "p50", values: col((b) => b.ttft_p50_ms) }, { name: "p99", values: col((b) => b.ttft_p99_ms) }], format: fmtMs })
          : lineChart({ title: "Time to first token (average)", times, series: [{ name: "average", values: col((b) => b.avg_ttft_ms) }], format: fmtMs }),
      ),
      h(
        "section.grid3",
        { "aria-label": "Top spenders" },
        bars("keys", keys, (g) => g ?? "(no key)"),
        bars("models", models, (g) => g ?? "(none)"),
        bars("accounts", accounts, (g) => g ?? "(none)"),
      ),
    );
    this.done(`${r.label}: ${fmtInt(t.requests)} requests.`);
  }
}

// The range's percentiles: the totals' own when the API gives them; else from the buckets' — the p50s weighted by
// requests and the highest p99 (an upper bound); else the average.
function latencyPair(total, buckets, kind) {
  const p50k = kind + "_p50_ms", p99k = kind + "_p99_ms";
  if (typeof total[p50k] === "number") return fmtMs(total[p50k]) + " / " + fmtMs(total[p99k]);
  const withP = buckets.filter((b) => typeof b[p50k] === "number" && b.requests);
  if (!withP.length) {
    const avg = total["avg_" + kind + "_ms"];
    return avg === null || avg === undefined ? "–" : "avg " + fmtMs(avg);
  }
  const n = withP.reduce((a, b) => a + b.requests, 0);
  const p50 = withP.reduce((a, b) => a + b[p50k] * b.requests, 0) / n;
  const p99 = Math.max(...withP.map((b) => b[p99k] ?? 0));
  return fmtMs(p50) + " / " + fmtMs(p99);
}

function compact(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n));
}

customElements.define("sg-overview", Overview);
