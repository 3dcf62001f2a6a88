// Models & routes: each alias with its ordered targets and fallbacks, the account that would serve next, a
// "try this route" button (one short request through the alias), and config reload.
import { ApiError, get, post, seg } from "./api.js";
import { badge, fmtMs, h, table } from "./dom.js";
import { Page, actionButton, toast } from "./page.js";

class Routes extends Page {
  title = "Models & routes";

  actions() {
    return actionButton("Reload config", async () => {
      const r = await post("/admin/reload");
      const notes = [`${r.models} models`];
      if (r.providers_changed?.length) notes.push("providers changed: " + r.providers_changed.join(", "));
      if (r.needs_restart?.length) notes.push("needs a restart: " + r.needs_restart.join(", "));
      toast("Config reloaded — " + notes.join("; ") + ".");
      await this.load();
    });
  }

  async load() {
    this.busy();
    const routes = await this.routes();
    const results = new Map();
    const resultCell = (alias) => {
      const el = h("div.try-result", { "aria-live": "polite" });
      results.set(alias, el);
      return el;
    };
    this.body.replaceChildren(
      table("Model aliases", [
        { label: "Alias", cell: (r) => h("strong", {}, r.alias) },
        { label: "Targets, in order", cell: (r) => h("ol.targets", {}, r.targets.map((t) => h("li", {}, `${t.provider} → ${t.model} `, h("small.muted", {}, t.protocol)))) },
        { label: "Fallbacks", cell: (r) => (r.fallbacks.length ? r.fallbacks.join(" → ") : "–") },
        { label: "Next account", cell: (r) => (r.next_account ? `${r.next_account.provider}/${r.next_account.account}` : r.next_account === null ? badge("none usable", "bad") : "–") },
        {
          label: "Try",
          cell: (r) => h("div", {},
            actionButton("Try this route", async () => {
              const out = results.get(r.alias);
              out.textContent = "…";
              try {
                const t = await post(`/admin/routes/${seg(r.alias)}/try`);
                out.replaceChildren(badge(t.ok ? "ok" : "failed", t.ok ? "ok" : "bad"), ` ${t.status ?? ""} · ${fmtMs(t.latency_ms)}`, t.provider ? ` · ${t.provider}/${t.account ?? "–"}` : "", h("div.muted", {}, t.ok ? (t.text ?? "") : (t.error ?? "")));
              } catch (exc) {
                out.replaceChildren(badge("failed", "bad"), " ", exc.message);
              }
            }, { ariaLabel: `Try the route ${r.alias}` }),
            resultCell(r.alias)),
        },
      ], routes, { empty: "No model aliases configured.", rowProps: (r) => ({ "data-alias": r.alias }) }),
    );
    this.done(`${routes.length} alias${routes.length === 1 ? "" : "es"}.`);
  }

  // /admin/routes (the console's view); a gateway without it still shows /admin/models.
  async routes() {
    try {
      return (await get("/admin/routes")).routes;
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.status !== 404) throw exc;
      const m = await get("/admin/models");
      return m.models.map((a) => ({ alias: a.name, targets: a.targets, fallbacks: a.fallbacks, next_account: undefined }));
    }
  }
}

customElements.define("sg-routes", Routes);
