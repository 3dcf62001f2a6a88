// Accounts: every provider account's live pool state (refreshed every few seconds), add one (its key goes to
// encrypted storage and is cleared from the form at once), enable/disable, test with one request, remove.
import { del, get, post, qs, seg } from "./api.js";
import { badge, field, fmtAgo, fmtInt, fmtTime, fmtUsd, h, table } from "./dom.js";
import { Page, actionButton, toast } from "./page.js";

const REFRESH_MS = 3000;
const STATE_KIND = { healthy: "ok", half_open: "warn", cooling: "warn", open: "bad", disabled: "bad" };

class Accounts extends Page {
  title = "Accounts";

  actions() {
    return actionButton("Refresh", () => this.refresh());
  }

  disconnectedCallback() {
    clearInterval(this.timer);
  }

  async load() {
    this.busy();
    const health = await get("/admin/health");
    this.providers = health.providers;
    this.list = h("section", { "aria-label": "Accounts" });
    this.body.replaceChildren(this.list, this.addForm());
    await this.refresh();
    this.timer = setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  async refresh() {
    const [data, usage] = await Promise.all([get("/admin/accounts"), this.usage()]);
    const spent = new Map(usage.groups.map((g) => [g.group, g]));
    const stored = new Map(data.stored.map((s) => [s.provider + "\u0000" + s.name, s]));
    const rows = data.accounts.map((a) => ({ ...a, storedRow: stored.get(a.provider + "\u0000" + a.account), usage: spent.get(`${a.provider}/${a.account}`) }));
    const focused = document.activeElement?.dataset?.key; // keep keyboard focus across the refresh
    this.list.replaceChildren(
      table("Provider accounts", [
        { label: "Provider", cell: (a) => a.provider },
        { label: "Account", cell: (a) => h("span", {}, a.account, a.storedRow ? h("small.muted", {}, " (added here)") : null) },
        { label: "State", cell: (a) => stateCell(a) },
        { label: "In flight", cell: (a) => fmtInt(a.in_flight_all_replicas ?? a.in_flight), num: true },
        { label: "Used rpm / tpm", cell: (a) => usedCell(a) },
        { label: "Upstream headroom", cell: (a) => headroom(a) },
        { label: "Recent errors", cell: (a) => errorsCell(a.recent_errors) },
        { label: "Last 24 h", cell: (a) => (a.usage ? `${fmtInt(a.usage.requests)} req · ${fmtUsd(a.usage.cost_usd)}` : "–") },
        { label: "Actions", cell: (a) => this.rowActions(a) },
      ], rows, { empty: "No provider accounts: add one below, or in the config file.", rowProps: (a) => ({ "data-account": a.account, "data-state": a.state }) }),
    );
    if (focused) this.list.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
    this.done(`${rows.length} account${rows.length === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`);
  }

  // The day's usage per account changes slowly: asked for every 30 s, not on every 3 s state refresh.
  async usage() {
    if (!this.usageAt || Date.now() - this.usageAt > 30_000) {
      this.usageAnswer = await get("/admin/usage?since=24h&by=account&limit=1000");
      this.usageAt = Date.now();
    }
    return this.usageAnswer;
  }

  rowActions(a) {
    const q = qs({ provider: a.provider });
    const name = seg(a.account);
    const disabled = a.state === "disabled";
    const key = (verb) => `${verb}:${a.provider}/${a.account}`;
    const toggle = actionButton(disabled ? "Enable" : "Disable", async () => {
      await post(`/admin/accounts/${name}/${disabled ? "enable" : "disable"}${q}`);
      toast(`${a.provider}/${a.account} ${disabled ? "enabled" : "disabled"}.`);
      await this.refresh();
    }, { ariaLabel: `${disabled ? "Enable" : "Disable"} ${a.account}` });
    toggle.dataset.key = key("toggle");
    const test = actionButton("Test", async () => {
      const r = await post(`/admin/accounts/${name}/test${q}`);
      const msg = r.ok ? `${a.account}: OK (${r.status}, ${Math.round(r.latency_ms)} ms)` : `${a.account}: failed (${r.status ?? "–"}): ${r.error ?? ""}`;
      toast(msg, r.ok ? "info" : "error");
      await this.refresh();
    }, { ariaLabel: `Test ${a.account}` });
    test.dataset.key = key("test");
    const out = [toggle, test];
    if (a.storedRow) {
      out.push(actionButton("Remove", async () => {
        if (!confirm(`Remove the account ${a.provider}/${a.account}? Its stored key is deleted.`)) return;
        await del(`/admin/accounts/${name}${q}`);
        toast(`${a.provider}/${a.account} removed.`);
        await this.refresh();
      }, { cls: "danger", ariaLabel: `Remove ${a.account}` }));
    }
    return h("div.actions", {}, out);
  }

  addForm() {
    const provider = h("select", { name: "provider", required: true }, this.providers.filter((p) => p.protocol !== "local").map((p) => h("option", { value: p.name }, `${p.name} (${p.protocol})`)));
    const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9._-]{1,64}", autocomplete: "off" });
    const key = h("input", { type: "password", name: "api_key", required: true, autocomplete: "off", spellcheck: "false" });
    const num = (n) => h("input", { type: "number", name: n, min: "1", step: "1", inputmode: "numeric" });
    const rpm = num("rpm"), tpm = num("tpm"), conc = num("max_concurrency");
    const form = h(
      "form.card",
      { "aria-labelledby": "add-account-h" },
      h("h2", { id: "add-account-h" }, "Add an account"),
      h("p.muted", {}, "The key is encrypted into the store and never shown again — not here, not in the API."),
      h("div.form-grid", {}, field("Provider", provider), field("Name", name, "letters, digits, . _ -"), field("API key", key), field("Requests per minute", rpm, "optional"), field("Tokens per minute", tpm, "optional"), field("Concurrency", conc, "optional")),
      h("div.row", {}, h("button.primary", { type: "submit" }, "Add account")),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { provider: provider.value, name: name.value.trim(), api_key: key.value };
      for (const [k, el] of [["rpm", rpm], ["tpm", tpm], ["max_concurrency", conc]]) if (el.value) body[k] = Number(el.value);
      key.value = ""; // the key leaves the page with this request and is never put back
      try {
        const row = await post("/admin/accounts", body);
        toast(`Account ${row.provider}/${row.name} added.`);
        name.value = rpm.value = tpm.value = conc.value = "";
        await this.refresh();
      } catch (exc) {
        toast(exc.message, "error");
      }
    });
    return form;
  }
}

function stateCell(a) {
  const parts = [badge(a.state.replace("_", "-"), STATE_KIND[a.state] || "neutral")];
  if (a.until) parts.push(h("small", {}, " until ", h("time", { datetime: new Date(a.until * 1000).toISOString() }, fmtTime(a.until)), ` (${fmtAgo(a.until)})`));
  if (a.reason) parts.push(h("div.muted.reason", {}, a.reason));
  return h("div", {}, parts);
}

function usedCell(a) {
  const part = (used, limit) => (used === null || used === undefined ? "–" : fmtInt(used) + (limit ? " / " + fmtInt(limit) : ""));
  if (a.rpm_used === null && a.tpm_used === null) return "–";
  return part(a.rpm_used) + " rpm · " + part(a.tpm_used) + " tpm";
}

function headroom(a) {
  const rl = a.ratelimit || {};
  const req = rl.requests_remaining ?? a.remaining_requests;
  const tok = rl.tokens_remaining ?? a.remaining_tokens;
  if (req === null && tok === null) return "–";
  if (req === undefined && tok === undefined) return "–";
  return `${req ?? "–"} req · ${tok ?? "–"} tok`;
}

function errorsCell(errors) {
  if (!errors || !errors.length) return "–";
  const items = errors.slice(-3).map((e) =>
    typeof e === "string" ? h("li", {}, e) : h("li", {}, `${e.status ?? ""} ${e.kind ?? ""} ${fmtAgo(e.ts)}: ${e.message ?? ""}`.trim()),
  );
  return h("ul.errors", {}, items);
}

customElements.define("sg-accounts", Accounts);
