// The "wire" view: what the client sent, what smolgate sent upstream (credentials redacted by the gateway) and
// the raw bytes both ways — the protocol conversion made visible. All of it is data, so all of it is text.
import { fmtMs, h } from "./dom.js";

function pretty(body) {
  if (body === null || body === undefined) return "";
  if (typeof body !== "string") return JSON.stringify(body, null, 2);
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body; // SSE, NDJSON or plain text: as it went over the wire
  }
}

// A captured body: {text, base64, truncated} (base64: binary bytes, as base64 text), or a plain string.
function bodyOf(part, key = "body") {
  const b = part[key];
  if (b === null || b === undefined) return "";
  if (typeof b === "string") return pretty(b);
  const notes = [b.base64 ? "(binary, base64)" : null, b.truncated ? "(cut at 1 MiB)" : null].filter(Boolean);
  return (notes.length ? notes.join(" ") + "\n" : "") + (b.base64 ? b.text : pretty(b.text));
}

function headers(hs) {
  if (!hs) return "";
  const entries = Array.isArray(hs) ? hs : Object.entries(hs);
  return entries.map(([k, v]) => `${k}: ${v}`).join("\n");
}

function block(title, lines, body, open = false, cls = "") {
  return h("details.wire-part" + (cls ? "." + cls : ""), { open },
    h("summary", {}, title),
    lines ? h("pre.headers", {}, lines) : null,
    h("pre.body", { tabindex: "0" }, body || "(empty)"));
}

/** Render a wire capture: {client_request, upstream: [...], client_response}. */
export function wireView(w) {
  const cr = w.client_request || {};
  const out = [h("h3", {}, "Client → smolgate"), block(`${cr.method || ""} ${cr.path || ""}`, headers(cr.headers), bodyOf(cr), true, "client-request")];
  (w.upstream || []).forEach((u, i) => {
    out.push(h("h3", {}, `smolgate → upstream${(w.upstream.length > 1) ? ` (attempt ${i + 1})` : ""}`));
    out.push(block(`${u.method || "POST"} ${u.url || ""}`, headers(u.headers), bodyOf(u), true, "upstream-request"));
    out.push(block(`upstream answered ${u.status ?? "–"}${u.latency_ms ? " in " + fmtMs(u.latency_ms) : ""}`, headers(u.response_headers), bodyOf(u, "response_body"), false, "upstream-response"));
  });
  const resp = w.client_response || {};
  out.push(h("h3", {}, "smolgate → client"));
  out.push(block(`answered ${resp.status ?? "–"}`, headers(resp.headers), bodyOf(resp), false, "client-response"));
  return h("div.wire", {}, out);
}
