// The audit log: who changed what, when, from where — newest first (never a secret; still shown as text only).
import { get, qs } from "./api.js";
import { field, fmtTime, h, table } from "./dom.js";
import { Page } from "./page.js";

class Audit extends Page {
  title = "Audit log";

  async load() {
    this.since = h("select", { name: "since", on: { change: () => this.refresh().catch((e) => this.fail(e)) } }, [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["", "Everything"]].map(([v, l]) => h("option", { value: v }, l)));
    this.since.value = "7d";
    this.list = h("section", { "aria-label": "Audit entries" });
    this.body.replaceChildren(h("div.row", {}, field("Time", this.since)), this.list);
    await this.refresh();
  }

  async refresh() {
    this.busy();
    const data = await get("/admin/audit" + qs({ limit: 500, since: this.since.value }));
    this.list.replaceChildren(
      table("Audit entries, newest first", [
        { label: "Time", cell: (e) => fmtTime(e.ts) },
        { label: "Action", cell: (e) => h("code", {}, e.action) },
        { label: "Target", cell: (e) => e.target ?? "–" },
        { label: "Actor", cell: (e) => e.actor },
        { label: "From", cell: (e) => e.source ?? "–" },
        { label: "Detail", cell: (e) => detail(e.detail) },
      ], data.entries, { empty: "No changes in this range." }),
    );
    this.done(`${data.entries.length} entr${data.entries.length === 1 ? "y" : "ies"}.`);
  }
}

function detail(d) {
  const entries = Object.entries(d || {});
  if (!entries.length) return "–";
  return h("dl.kv", {}, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null ? "null" : String(v))]));
}

customElements.define("sg-audit", Audit);
