// Keys: create a virtual key (models, limits, budget, expiry) — its secret shown once —, list them with spend
// against budget, revoke, rotate.
import { get, post, qs, seg } from "./api.js";
import { badge, field, fmtInt, fmtTime, fmtUsd, h, table } from "./dom.js";
import { Page, actionButton, toast } from "./page.js";
import { showSecret } from "./secret.js";

const STATUS_KIND = { active: "ok", expired: "warn", revoked: "bad" };

class Keys extends Page {
  title = "Keys";

  async load() {
    this.busy();
    const models = await get("/admin/models");
    this.aliases = models.models.map((m) => m.name);
    this.showRevoked = h("input", { type: "checkbox", on: { change: () => this.refresh().catch((e) => this.fail(e)) } });
    this.list = h("section", { "aria-label": "Virtual keys" });
    this.body.replaceChildren(this.createForm(), h("div.row", {}, h("label.inline", {}, this.showRevoked, " Show revoked keys")), this.list);
    await this.refresh();
  }

  async refresh() {
    const data = await get("/admin/keys" + qs({ include_revoked: this.showRevoked.checked ? "true" : "" }));
    this.list.replaceChildren(
      table("Virtual keys", [
        { label: "Name", cell: (k) => h("div", {}, h("strong", {}, k.name), h("div.muted.mono", {}, k.id)) },
        { label: "Prefix", cell: (k) => h("code", {}, k.prefix + "…") },
        { label: "Models", cell: (k) => (k.models && k.models.length ? k.models.join(", ") : "all") },
        { label: "Limits", cell: (k) => limits(k) },
        { label: "Spend / budget", cell: (k) => spend(k) },
        { label: "Expires", cell: (k) => (k.expires ? fmtTime(k.expires) : "never") },
        { label: "Status", cell: (k) => badge(k.status, STATUS_KIND[k.status]) },
        { label: "Actions", cell: (k) => this.rowActions(k) },
      ], data.keys, { empty: "No virtual keys yet: create one above.", rowProps: (k) => ({ "data-key-name": k.name, "data-status": k.status }) }),
    );
    this.done(`${data.keys.length} key${data.keys.length === 1 ? "" : "s"}.`);
  }

  rowActions(k) {
    if (k.status === "revoked") return "–";
    return h("div.actions", {}, [
      actionButton("Rotate", async () => {
        if (!confirm(`Rotate "${k.name}"? Its current secret stops working now.`)) return;
        const r = await post(`/admin/keys/${seg(k.id)}/rotate`);
        showSecret(`New secret for "${r.key.name}"`, r.secret, "The old secret no longer works. This is the only time the new one is shown.");
        await this.refresh();
      }, { ariaLabel: `Rotate ${k.name}` }),
      actionButton("Revoke", async () => {
        if (!confirm(`Revoke "${k.name}"? Clients using it get 401 within seconds.`)) return;
        await post(`/admin/keys/${seg(k.id)}/revoke`);
        toast(`Key "${k.name}" revoked.`);
        await this.refresh();
      }, { cls: "danger", ariaLabel: `Revoke ${k.name}` }),
    ]);
  }

  createForm() {
    const name = h("input", { name: "name", required: true, autocomplete: "off", maxlength: "64" });
    const models = h("select", { name: "models", multiple: true, size: String(Math.min(5, Math.max(2, this.aliases.length))) }, this.aliases.map((a) => h("option", { value: a }, a)));
    const num = (n, step = "1") => h("input", { type: "number", name: n, min: "0", step, inputmode: "decimal" });
    const rpm = num("rpm"), tpm = num("tpm"), conc = num("max_concurrency"), budget = num("budget_usd", "0.01");
    const period = h("select", { name: "period" }, ["total", "month", "day"].map((p) => h("option", { value: p }, p)));
    const expires = h("select", { name: "expires" }, [["", "never"], ["1d", "in 1 day"], ["7d", "in 7 days"], ["30d", "in 30 days"], ["90d", "in 90 days"], ["365d", "in a year"]].map(([v, l]) => h("option", { value: v }, l)));
    const form = h(
      "form.card",
      { "aria-labelledby": "create-key-h" },
      h("h2", { id: "create-key-h" }, "Create a key"),
      h("div.form-grid", {},
        field("Name", name),
        field("Models", models, "none selected: every model; Ctrl/Cmd-click for several"),
        field("Requests per minute", rpm, "optional"),
        field("Tokens per minute", tpm, "optional"),
        field("Concurrency", conc, "optional"),
        field("Budget (USD)", budget, "optional"),
        field("Budget period", period),
        field("Expires", expires),
      ),
      h("div.row", {}, h("button.primary", { type: "submit" }, "Create key")),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { name: name.value.trim() };
      const chosen = [...models.selectedOptions].map((o) => o.value);
      if (chosen.length) body.models = chosen;
      for (const [k, el] of [["rpm", rpm], ["tpm", tpm], ["max_concurrency", conc]]) if (el.value) body[k] = parseInt(el.value, 10);
      if (budget.value) {
        body.budget_usd = Number(budget.value);
        body.period = period.value;
      }
      if (expires.value) body.expires = expires.value;
      try {
        const r = await post("/admin/keys", body);
        form.reset();
        showSecret(`Key "${r.key.name}" created`, r.secret, "Copy the secret now: it is shown this once and cannot be recovered (rotate the key to get a new one).");
        await this.refresh();
      } catch (exc) {
        toast(exc.message, "error");
      }
    });
    return form;
  }
}

function limits(k) {
  const parts = [];
  if (k.rpm) parts.push(fmtInt(k.rpm) + " rpm");
  if (k.tpm) parts.push(fmtInt(k.tpm) + " tpm");
  if (k.max_concurrency) parts.push(fmtInt(k.max_concurrency) + " at once");
  return parts.length ? parts.join(" · ") : "none";
}

function spend(k) {
  const used = k.spend_usd ?? 0;
  if (!k.budget_usd) return fmtUsd(used);
  const frac = Math.min(1, used / k.budget_usd);
  return h("div.spend", {},
    h("meter", { min: "0", max: String(k.budget_usd), value: String(Math.min(used, k.budget_usd)), high: String(k.budget_usd * 0.8), optimum: "0", "aria-label": `spend of ${k.name}` }),
    ` ${fmtUsd(used)} / ${fmtUsd(k.budget_usd)} (${k.period}) · ${Math.round(frac * 100)}%`);
}

customElements.define("sg-keys", Keys);
