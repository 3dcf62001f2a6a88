// Requests: this replica's recent requests (status, latency, tokens, cost, the account that served, every attempt
// — retries and fallbacks), a request's detail, its bodies when body logging is on, and its wire capture if any.
import { get, qs, seg } from "./api.js";
import { badge, fmtInt, fmtMs, fmtTime, fmtUsd, h, table } from "./dom.js";
import { Page, actionButton } from "./page.js";
import { wireView } from "./wireview.js";

class Requests extends Page {
  title = "Requests";

  actions() {
    return actionButton("Refresh", () => this.load());
  }

  async load() {
    this.busy();
    const [data, keys] = await Promise.all([get("/admin/requests" + qs({ limit: 200 })), get("/admin/keys?include_revoked=true")]);
    const keyNames = new Map(keys.keys.map((k) => [k.id, k.name]));
    this.detail = this.detail || h("section.card.detail", { "aria-label": "Request detail", hidden: true });
    const servedBy = (r) => {
      const a = r.attempts?.[r.attempts.length - 1];
      return a ? `${a.provider}/${a.account ?? "–"}` : "–";
    };
    this.body.replaceChildren(
      table("Recent requests, newest first", [
        { label: "Time", cell: (r) => fmtTime(r.ts) },
        { label: "Request", cell: (r) => h("div", {}, h("code", {}, `${r.method} ${r.path}`), h("div.muted", {}, r.client_protocol, r.stream ? " · stream" : "")) },
        { label: "Model", cell: (r) => r.alias ?? "–" },
        { label: "Key", cell: (r) => (r.key_id == null ? "(open)" : keyNames.get(r.key_id) ?? r.key_id) },
        { label: "Status", cell: (r) => badge(String(r.status), r.status < 400 ? "ok" : "bad") },
        { label: "Latency", cell: (r) => fmtMs(r.latency_ms), num: true },
        { label: "TTFT", cell: (r) => fmtMs(r.ttft_ms), num: true },
        { label: "Tokens in/out", cell: (r) => `${fmtInt(r.usage?.input_tokens)} / ${fmtInt(r.usage?.output_tokens)}`, num: true },
        { label: "Cost", cell: (r) => fmtUsd(r.cost_usd), num: true },
        { label: "Served by", cell: (r) => servedBy(r) },
        { label: "Attempts", cell: (r) => attemptsSummary(r.attempts || []) },
        { label: "", cell: (r) => actionButton("Details", () => this.open(r.request_id), { ariaLabel: `Details of request ${r.request_id}` }) },
      ], data.requests, { empty: "No requests since this replica started.", rowProps: (r) => ({ "data-request-id": r.request_id, "data-status": String(r.status) }) }),
      this.detail,
    );
    this.done(`${data.requests.length} recent request${data.requests.length === 1 ? "" : "s"} on this replica.`);
  }

  async open(id) {
    const r = await get(`/admin/requests/${seg(id)}`);
    const rows = (r.attempts || []).map((a, i) => ({ ...a, n: i + 1 }));
    const parts = [
      h("h2", { tabindex: "-1" }, "Request ", h("code", {}, r.request_id)),
      h("p", {}, `${r.method} ${r.path} · ${r.client_protocol} · ${r.alias ?? "–"} · status ${r.status}${r.error_kind ? " (" + r.error_kind + ")" : ""} · ${fmtMs(r.latency_ms)} · ${fmtUsd(r.cost_usd)}`),
      table("Attempts", [
        { label: "#", cell: (a) => String(a.n), num: true },
        { label: "Provider / account", cell: (a) => `${a.provider}/${a.account ?? "–"}` },
        { label: "Upstream", cell: (a) => `${a.upstream_model ?? "–"} (${a.upstream_protocol ?? "–"})` },
        { label: "Status", cell: (a) => badge(String(a.status ?? "–"), (a.status ?? 0) < 400 && a.status ? "ok" : "bad") },
        { label: "Error", cell: (a) => a.error_kind ?? "–" },
        { label: "Took", cell: (a) => (a.end && a.start ? fmtMs((a.end - a.start) * 1000) : "–"), num: true },
      ], rows, { showCaption: true, empty: "No upstream attempt (answered by smolgate itself)." }),
    ];
    if (r.bodies) {
      parts.push(h("h3", {}, "Bodies"), h("details", { open: true }, h("summary", {}, "Request body"), h("pre.body", { tabindex: "0" }, r.bodies.request ?? "")), h("details", {}, h("summary", {}, "Response body"), h("pre.body", { tabindex: "0" }, r.bodies.response ?? "")));
    } else {
      parts.push(h("p.muted", {}, "Bodies are not kept (console.log_bodies is off)."));
    }
    if (r.wire) parts.push(h("h3", {}, "Wire capture"), wireView(r.wire));
    this.detail.replaceChildren(...parts);
    this.detail.hidden = false;
    this.detail.querySelector("h2").focus();
  }
}

function attemptsSummary(attempts) {
  if (attempts.length <= 1) return attempts.length ? "1" : "–";
  const failed = attempts.slice(0, -1).map((a) => `${a.account ?? a.provider}: ${a.status ?? a.error_kind ?? "failed"}`);
  return h("span", { title: failed.join("; ") }, `${attempts.length} (${failed.join("; ")})`);
}

customElements.define("sg-requests", Requests);
