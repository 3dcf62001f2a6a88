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

// One exchange: its first line as the summary, then headers (folded when they are a browser's dozen) and body.
function block(title, hs, body, open = false, cls = "", foldHeaders = false) {
  const lines = headers(hs);
  const count = lines ? lines.split("\n").length : 0;
  const head = !lines ? null : foldHeaders ? h("details.headers", {}, h("summary", {}, `headers (${count})`), h("pre.headers", {}, lines)) : h("pre.headers", {}, lines);
  return h("details.wire-part" + (cls ? "." + cls : ""), { open },
    h("summary", {}, title),
    head,
    h("pre.body", { tabindex: "0" }, body || "(empty)"));
}

/** Render a wire capture: {client_request, upstream: [...], client_response}. */
export function wireView(w) {
  const cr = w.client_request || {};
  const out = [h("h3", {}, "Client → smolgate"), block(`${cr.method || ""} ${cr.path || ""}`, cr.headers, bodyOf(cr), true, "client-request", true)];
  (w.upstream || []).forEach((u, i) => {
    out.push(h("h3", {}, `smolgate → upstream${(w.upstream.length > 1) ? ` (attempt ${i + 1})` : ""}`));
    out.push(block(`${u.method || "POST"} ${u.url || ""}`, u.headers, bodyOf(u), true, "upstream-request"));
    out.push(block(`upstream answered ${u.status ?? "–"}${u.latency_ms ? " in " + fmtMs(u.latency_ms) : ""}`, u.response_headers, bodyOf(u, "response_body"), false, "upstream-response", true));
  });
  const resp = w.client_response || {};
  out.push(h("h3", {}, "smolgate → client"));
  out.push(block(`answered ${resp.status ?? "–"}`, resp.headers, bodyOf(resp), false, "client-response", true));
  return h("div.wire", {}, out);
}
