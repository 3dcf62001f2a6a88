// Playground: talk to any alias through any of the five client protocols. The browser builds the protocol's real
// body, sends it to the real client route (session + CSRF + wire capture), parses the real stream as it arrives,
// and then shows the capture: the client's request, smolgate's upstream request(s) and the raw bytes both ways.
import { ApiError, errorMessage, get, headersFor, seg } from "./api.js";
import { field, fmtInt, fmtMs, h } from "./dom.js";
import { Page, toast } from "./page.js";
import { NdjsonParser, PROTOCOLS, SseParser, parseTools } from "./protocols.js";
import { tabs } from "./tabs.js";
import { wireView } from "./wireview.js";

const MAX_ATTACH = 20 * 1024 * 1024;

class Playground extends Page {
  title = "Playground";
  chat = [];
  media = [];

  async load() {
    this.busy();
    const models = await get("/admin/models");
    const opt = (v, l) => h("option", { value: v }, l);
    this.f = {
      alias: h("select", { name: "alias" }, models.models.map((m) => opt(m.name, m.name))),
      protocol: h("select", { name: "protocol" }, Object.entries(PROTOCOLS).map(([k, p]) => opt(k, p.label))),
      stream: h("input", { type: "checkbox", name: "stream", checked: true }),
      system: h("textarea", { name: "system", rows: "2", placeholder: "optional" }),
      temperature: h("input", { type: "number", name: "temperature", min: "0", max: "2", step: "0.1", placeholder: "default" }),
      top_p: h("input", { type: "number", name: "top_p", min: "0", max: "1", step: "0.05", placeholder: "default" }),
      max_tokens: h("input", { type: "number", name: "max_tokens", min: "1", step: "1", value: "256" }),
      tools: h("textarea.mono", { name: "tools", rows: "3", placeholder: '[{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]', spellcheck: "false" }),
      schema: h("textarea.mono", { name: "schema", rows: "3", placeholder: '{"type": "object", "properties": {"answer": {"type": "string"}}}', spellcheck: "false" }),
      files: h("input", { type: "file", name: "files", accept: "image/*,video/*", multiple: true }),
    };
    this.f.files.addEventListener("change", () => this.attach());
    this.f.protocol.addEventListener("change", () => this.renderMedia());
    this.attached = h("ul.attached", { "aria-label": "Attached files" });
    this.prompt = h("textarea", { name: "prompt", rows: "3", required: true, placeholder: "Ask something… (Ctrl+Enter sends)" });
    this.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) this.form.requestSubmit();
    });
    this.sendBtn = h("button.primary", { type: "submit" }, "Send");
    this.stopBtn = h("button", { type: "button", disabled: true, on: { click: () => this.abort?.abort() } }, "Stop");
    const clearBtn = h("button.ghost", { type: "button", on: { click: () => this.clearChat() } }, "New chat");
    this.transcript = h("div.transcript", { role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    this.metrics = h("p.metrics", { "aria-live": "polite" });
    this.sentPanel = h("div", {}, h("p.muted", {}, "The request body appears here when you send."));
    this.wirePanel = h("div", {}, h("p.muted", {}, "After an answer, the wire capture appears here: what the client sent, what smolgate sent upstream, and the raw streams."));
    this.form = h(
      "form.playground",
      {},
      h("fieldset.card.settings", {},
        h("legend", {}, "Settings"),
        field("Model alias", this.f.alias),
        field("Client protocol", this.f.protocol),
        h("label.inline", {}, this.f.stream, " Stream the answer"),
        field("System prompt", this.f.system),
        h("div.form-grid.three", {}, field("Temperature", this.f.temperature), field("Top p", this.f.top_p), field("Max tokens", this.f.max_tokens)),
        field("Tools (JSON)", this.f.tools, "an array of {name, description, parameters}"),
        field("Output JSON schema", this.f.schema, "optional: the answer must match it"),
        field("Attach images or a video", this.f.files, "video: OpenAI Chat and Gemini only"),
        this.attached,
      ),
      h("section.card.chat", { "aria-label": "Chat" },
        this.transcript,
        field("Message", this.prompt),
        h("div.row", {}, this.sendBtn, this.stopBtn, clearBtn),
        this.metrics,
        tabs("Details", [["Request sent", this.sentPanel], ["Wire", this.wirePanel]]),
      ),
    );
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send().catch((exc) => this.fail(exc));
    });
    this.body.replaceChildren(this.form);
    this.done();
  }

  async attach() {
    for (const file of this.f.files.files) {
      if (file.size > MAX_ATTACH) {
        toast(`${file.name} is larger than 20 MiB.`, "error");
        continue;
      }
      const url = await new Promise((ok, bad) => {
        const r = new FileReader();
        r.onload = () => ok(r.result);
        r.onerror = () => bad(r.error);
        r.readAsDataURL(file);
      });
      const [, mime, b64] = /^data:([^;,]+);base64,(.*)$/s.exec(url) || [];
      if (!mime) continue;
      this.media.push({ name: file.name, mime, b64, url: URL.createObjectURL(file) });
    }
    this.f.files.value = "";
    this.renderMedia();
  }

  renderMedia() {
    const proto = PROTOCOLS[this.f.protocol.value];
    this.attached.replaceChildren(
      ...this.media.map((m, i) =>
        h("li", {},
          m.mime.startsWith("video/") ? h("video", { src: m.url, muted: true, width: "64", height: "48" }) : h("img", { src: m.url, alt: m.name, width: "64", height: "48" }),
          h("span", {}, m.name, m.mime.startsWith("video/") && !proto.video ? h("small.error", {}, " (this protocol cannot carry video)") : null),
          h("button.ghost", { type: "button", "aria-label": `Remove ${m.name}`, on: { click: () => { URL.revokeObjectURL(m.url); this.media.splice(i, 1); this.renderMedia(); } } }, "×"))),
    );
  }

  clearChat() {
    this.chat = [];
    this.transcript.replaceChildren();
    this.metrics.textContent = "";
  }

  bubble(role, text, media = []) {
    const body = h("div.text", {}, text);
    const el = h("div.msg." + role, {}, h("div.who", {}, role === "user" ? "You" : "Assistant"), media.map((m) => (m.mime.startsWith("video/") ? h("small.muted", {}, "[video: " + m.name + "] ") : h("img.thumb", { src: m.url, alt: m.name }))), body);
    this.transcript.append(el);
    el.scrollIntoView({ block: "end" });
    return body;
  }

  options() {
    const schemaText = this.f.schema.value.trim();
    return {
      model: this.f.alias.value,
      stream: this.f.stream.checked,
      system: this.f.system.value.trim(),
      temperature: this.f.temperature.value,
      top_p: this.f.top_p.value,
      max_tokens: this.f.max_tokens.value,
      tools: parseTools(this.f.tools.value),
      schema: schemaText ? JSON.parse(schemaText) : null,
    };
  }

  async send() {
    const text = this.prompt.value.trim();
    if (!text) return;
    const protoName = this.f.protocol.value;
    const proto = PROTOCOLS[protoName];
    let opts;
    try {
      opts = this.options();
    } catch (exc) {
      toast("Tools or schema: " + exc.message, "error");
      return;
    }
    const media = this.media;
    const turn = { role: "user", text, media: media.map(({ mime, b64 }) => ({ mime, b64 })) };
    const { path, body } = proto.request({ ...opts, chat: [...this.chat, turn] });
    this.sentPanel.replaceChildren(h("pre.body", { tabindex: "0" }, `POST ${path}\n\n${JSON.stringify(body, elide, 2)}`));
    this.prompt.value = "";
    this.media = [];
    this.renderMedia();
    this.bubble("user", text, media);
    const out = this.bubble("assistant", "");
    out.parentElement.setAttribute("aria-busy", "true");
    this.sendBtn.disabled = true;
    this.stopBtn.disabled = false;
    this.abort = new AbortController();
    this.metrics.textContent = "Waiting for the first token…";
    const stats = { t0: performance.now(), tFirst: null, tEnd: null, input: null, output: null, chunks: 0 };
    const tools = new Map();
    const toolBox = h("pre.tools");
    let answer = "";
    let rid = null;
    const apply = (ev) => {
      if ((ev.type === "text" || ev.type === "tool") && stats.tFirst === null) stats.tFirst = performance.now();
      if (ev.type === "text") {
        answer += ev.text;
        out.textContent = answer;
        stats.chunks++;
      } else if (ev.type === "tool") {
        const t = tools.get(ev.index) || { name: "", args: "" };
        if (ev.name) t.name = ev.name;
        t.args = ev.whole ? ev.args : t.args + (ev.args || "");
        tools.set(ev.index, t);
        toolBox.textContent = [...tools.values()].map((x) => `${x.name}(${x.args})`).join("\n");
        if (!toolBox.isConnected) out.after(toolBox);
      } else if (ev.type === "usage") {
        if (ev.input !== undefined && ev.input !== null) stats.input = ev.input;
        if (ev.output !== undefined && ev.output !== null) stats.output = ev.output;
      } else if (ev.type === "error") {
        throw new ApiError(0, ev.message);
      }
    };
    try {
      const resp = await fetch(path, {
        method: "POST",
        headers: headersFor("POST", { "content-type": "application/json", "x-smolgate-wire": "capture", ...(proto.headers || {}) }),
        body: JSON.stringify(body),
        credentials: "same-origin",
        signal: this.abort.signal,
      });
      rid = resp.headers.get("x-request-id");
      const ctype = resp.headers.get("content-type") || "";
      if (!resp.ok) {
        const t = await resp.text();
        let d = null;
        try { d = JSON.parse(t); } catch { /* not JSON */ }
        throw new ApiError(resp.status, `${resp.status}: ${errorMessage(d, t, resp.status)}`);
      }
      if (opts.stream && resp.body && !ctype.startsWith("application/json")) {
        const parser = proto.ndjson ? new NdjsonParser() : new SseParser();
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          const evs = done ? parser.feed(dec.decode()).concat(parser.flush()) : parser.feed(dec.decode(value, { stream: true }));
          for (const e of evs) for (const x of proto.event(e)) apply(x);
          if (done) break;
        }
      } else {
        for (const x of proto.answer(await resp.json())) apply(x);
      }
      stats.tEnd = performance.now();
      this.chat.push(turn, { role: "assistant", text: answer });
      out.parentElement.dataset.done = "1";
    } catch (exc) {
      stats.tEnd = performance.now();
      if (exc.name === "AbortError") out.append(h("em.muted", {}, " (stopped)"));
      else out.append(h("div.error", { role: "alert" }, exc.message));
      out.parentElement.dataset.done = "error";
    } finally {
      out.parentElement.removeAttribute("aria-busy");
      this.sendBtn.disabled = false;
      this.stopBtn.disabled = true;
    }
    this.metrics.replaceChildren(...metricsLine(stats, rid, protoName));
    if (rid) await this.showWire(rid);
  }

  async showWire(rid) {
    try {
      const w = await get(`/admin/wire/${seg(rid)}`);
      this.wirePanel.replaceChildren(wireView(w));
    } catch (exc) {
      this.wirePanel.replaceChildren(h("p.muted", {}, `No wire capture for ${rid}: ${exc.message}`));
    }
  }
}

function metricsLine(s, rid, proto) {
  const ttft = s.tFirst !== null ? s.tFirst - s.t0 : null;
  // Streamed: tokens over the time since the first one; else (or when all came at once) over the whole answer.
  const streamed = s.chunks > 1 && s.tEnd - s.tFirst > 0;
  const gen = s.tFirst === null ? null : (streamed ? s.tEnd - s.tFirst : s.tEnd - s.t0) / 1000;
  const tps = s.output && gen > 0 ? (s.output / gen).toFixed(1) : null;
  const parts = [`TTFT ${fmtMs(ttft)}`, `total ${fmtMs(s.tEnd - s.t0)}`, `tokens ${fmtInt(s.input)} in / ${fmtInt(s.output)} out`, `${tps ?? "–"} tokens/s`, PROTOCOLS[proto].label];
  return [h("span.ttft", {}, parts[0]), ...parts.slice(1).map((p) => h("span", {}, " · " + p)), rid ? h("span.muted", {}, " · request ", h("code.rid", {}, rid)) : null].filter(Boolean);
}

// The body as shown under "Request sent": media data cut short (the wire view shows the whole request).
function elide(key, value) {
  if (typeof value === "string" && value.length > 200 && /^(data:|[A-Za-z0-9+/]{200})/.test(value)) return value.slice(0, 60) + `… (${value.length} chars)`;
  return value;
}

customElements.define("sg-playground", Playground);
