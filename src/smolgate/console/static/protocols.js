// The five client protocols as the playground speaks them: each builds its real request body (what an official
// SDK sends) and parses its real answer — SSE for OpenAI Chat/Responses, Anthropic and Gemini, NDJSON for Ollama,
// or one JSON object when not streaming — into a few neutral events: text, tool, usage, error.
// A chat is [{role: "user"|"assistant", text, media: [{mime, b64}]}]; tools are [{name, description, parameters}].

const dataUrl = (m) => `data:${m.mime};base64,${m.b64}`;
const isVideo = (m) => m.mime.startsWith("video/");

function num(v) {
  return v === "" || v === null || v === undefined || Number.isNaN(Number(v)) ? undefined : Number(v);
}

function prune(obj) {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

export const PROTOCOLS = {
  openai: {
    label: "OpenAI Chat Completions",
    video: true,
    request(o) {
      const messages = [];
      if (o.system) messages.push({ role: "system", content: o.system });
      for (const m of o.chat) {
        if (!m.media?.length) messages.push({ role: m.role, content: m.text });
        else
          messages.push({
            role: m.role,
            content: [
              { type: "text", text: m.text },
              ...m.media.map((x) => (isVideo(x) ? { type: "video_url", video_url: { url: dataUrl(x) } } : { type: "image_url", image_url: { url: dataUrl(x) } })),
            ],
          });
      }
      const body = prune({ model: o.model, messages, stream: o.stream, temperature: num(o.temperature), top_p: num(o.top_p), max_tokens: num(o.max_tokens) });
      if (o.stream) body.stream_options = { include_usage: true };
      if (o.tools?.length) body.tools = o.tools.map((t) => ({ type: "function", function: prune({ name: t.name, description: t.description, parameters: t.parameters }) }));
      if (o.schema) body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: o.schema, strict: true } };
      return { path: "/v1/chat/completions", body };
    },
    event(ev, st) {
      if (ev.data === "[DONE]") return [];
      const d = JSON.parse(ev.data);
      if (d.error) return [{ type: "error", message: d.error.message || JSON.stringify(d.error) }];
      const out = [];
      const delta = d.choices?.[0]?.delta || {};
      if (delta.content) out.push({ type: "text", text: delta.content });
      for (const tc of delta.tool_calls || []) out.push({ type: "tool", index: tc.index, name: tc.function?.name, args: tc.function?.arguments || "" });
      if (d.usage) out.push({ type: "usage", input: d.usage.prompt_tokens, output: d.usage.completion_tokens });
      return out;
    },
    answer(d) {
      const msg = d.choices?.[0]?.message || {};
      return [
        ...(msg.content ? [{ type: "text", text: msg.content }] : []),
        ...(msg.tool_calls || []).map((tc, i) => ({ type: "tool", index: i, name: tc.function.name, args: tc.function.arguments })),
        ...(d.usage ? [{ type: "usage", input: d.usage.prompt_tokens, output: d.usage.completion_tokens }] : []),
      ];
    },
  },

  "openai-responses": {
    label: "OpenAI Responses",
    video: false,
    request(o) {
      const input = o.chat.map((m) => {
        const textType = m.role === "assistant" ? "output_text" : "input_text";
        return { role: m.role, content: [{ type: textType, text: m.text }, ...(m.media || []).map((x) => ({ type: "input_image", image_url: dataUrl(x), detail: "auto" }))] };
      });
      const body = prune({ model: o.model, input, instructions: o.system || undefined, stream: o.stream, temperature: num(o.temperature), top_p: num(o.top_p), max_output_tokens: num(o.max_tokens), store: false });
      if (o.tools?.length) body.tools = o.tools.map((t) => prune({ type: "function", name: t.name, description: t.description, parameters: t.parameters }));
      if (o.schema) body.text = { format: { type: "json_schema", name: "answer", schema: o.schema, strict: true } };
      return { path: "/v1/responses", body };
    },
    event(ev) {
      const d = JSON.parse(ev.data);
      switch (d.type) {
        case "response.output_text.delta":
          return [{ type: "text", text: d.delta }];
        case "response.output_item.added":
          return d.item?.type === "function_call" ? [{ type: "tool", index: d.output_index, name: d.item.name, args: "" }] : [];
        case "response.function_call_arguments.delta":
          return [{ type: "tool", index: d.output_index, args: d.delta }];
        case "response.completed":
        case "response.incomplete":
          return d.response?.usage ? [{ type: "usage", input: d.response.usage.input_tokens, output: d.response.usage.output_tokens }] : [];
        case "response.failed":
          return [{ type: "error", message: d.response?.error?.message || "the response failed" }];
        case "error":
          return [{ type: "error", message: d.message || d.error?.message || "error" }];
        default:
          return [];
      }
    },
    answer(d) {
      const out = [];
      (d.output || []).forEach((item, i) => {
        if (item.type === "message") for (const c of item.content || []) if (c.type === "output_text") out.push({ type: "text", text: c.text });
        if (item.type === "function_call") out.push({ type: "tool", index: i, name: item.name, args: item.arguments });
      });
      if (d.usage) out.push({ type: "usage", input: d.usage.input_tokens, output: d.usage.output_tokens });
      return out;
    },
  },

  anthropic: {
    label: "Anthropic Messages",
    video: false,
    headers: { "anthropic-version": "2023-06-01" },
    request(o) {
      const messages = o.chat.map((m) =>
        !m.media?.length
          ? { role: m.role, content: m.text }
          : { role: m.role, content: [...m.media.map((x) => ({ type: "image", source: { type: "base64", media_type: x.mime, data: x.b64 } })), { type: "text", text: m.text }] },
      );
      const body = prune({ model: o.model, max_tokens: num(o.max_tokens) ?? 1024, messages, system: o.system || undefined, stream: o.stream, temperature: num(o.temperature), top_p: num(o.top_p) });
      if (o.tools?.length) body.tools = o.tools.map((t) => prune({ name: t.name, description: t.description, input_schema: t.parameters || { type: "object", properties: {} } }));
      if (o.schema) body.output_config = { format: { type: "json_schema", schema: o.schema } };
      return { path: "/v1/messages", body };
    },
    event(ev) {
      const d = JSON.parse(ev.data);
      switch (d.type) {
        case "message_start":
          return [{ type: "usage", input: d.message?.usage?.input_tokens }];
        case "content_block_start":
          return d.content_block?.type === "tool_use" ? [{ type: "tool", index: d.index, name: d.content_block.name, args: "" }] : [];
        case "content_block_delta":
          if (d.delta?.type === "text_delta") return [{ type: "text", text: d.delta.text }];
          if (d.delta?.type === "input_json_delta") return [{ type: "tool", index: d.index, args: d.delta.partial_json }];
          return [];
        case "message_delta":
          return [{ type: "usage", output: d.usage?.output_tokens }];
        case "error":
          return [{ type: "error", message: d.error?.message || "error" }];
        default:
          return [];
      }
    },
    answer(d) {
      const out = [];
      (d.content || []).forEach((b, i) => {
        if (b.type === "text") out.push({ type: "text", text: b.text });
        if (b.type === "tool_use") out.push({ type: "tool", index: i, name: b.name, args: JSON.stringify(b.input) });
      });
      if (d.usage) out.push({ type: "usage", input: d.usage.input_tokens, output: d.usage.output_tokens });
      return out;
    },
  },

  gemini: {
    label: "Google Gemini",
    video: true,
    request(o) {
      const contents = o.chat.map((m) => ({
        role: m.role === "assistant" ? "model" : "user",
        parts: [{ text: m.text }, ...(m.media || []).map((x) => ({ inlineData: { mimeType: x.mime, data: x.b64 } }))],
      }));
      const generationConfig = prune({ temperature: num(o.temperature), topP: num(o.top_p), maxOutputTokens: num(o.max_tokens) });
      if (o.schema) Object.assign(generationConfig, { responseMimeType: "application/json", responseJsonSchema: o.schema });
      const body = { contents };
      if (o.system) body.systemInstruction = { role: "user", parts: [{ text: o.system }] };
      if (Object.keys(generationConfig).length) body.generationConfig = generationConfig;
      if (o.tools?.length) body.tools = [{ functionDeclarations: o.tools.map((t) => prune({ name: t.name, description: t.description, parametersJsonSchema: t.parameters })) }];
      const m = encodeURIComponent(o.model);
      return { path: o.stream ? `/v1beta/models/${m}:streamGenerateContent?alt=sse` : `/v1beta/models/${m}:generateContent`, body };
    },
    event(ev) {
      return this.answer(JSON.parse(ev.data));
    },
    answer(d) {
      if (d.error) return [{ type: "error", message: d.error.message || "error" }];
      const out = [];
      (d.candidates?.[0]?.content?.parts || []).forEach((p, i) => {
        if (typeof p.text === "string" && !p.thought && p.text) out.push({ type: "text", text: p.text });
        const fc = p.functionCall || p.function_call;
        if (fc) out.push({ type: "tool", index: 1000 + i, name: fc.name, args: JSON.stringify(fc.args || {}), whole: true });
      });
      const u = d.usageMetadata;
      if (u) out.push({ type: "usage", input: u.promptTokenCount, output: u.candidatesTokenCount });
      return out;
    },
  },

  ollama: {
    label: "Ollama",
    video: false,
    ndjson: true,
    request(o) {
      const messages = [];
      if (o.system) messages.push({ role: "system", content: o.system });
      for (const m of o.chat) messages.push(prune({ role: m.role, content: m.text, images: m.media?.length ? m.media.map((x) => x.b64) : undefined }));
      const options = prune({ temperature: num(o.temperature), top_p: num(o.top_p), num_predict: num(o.max_tokens) });
      const body = { model: o.model, messages, stream: o.stream };
      if (Object.keys(options).length) body.options = options;
      if (o.tools?.length) body.tools = o.tools.map((t) => ({ type: "function", function: prune({ name: t.name, description: t.description, parameters: t.parameters }) }));
      if (o.schema) body.format = o.schema;
      return { path: "/api/chat", body };
    },
    event(ev) {
      return this.answer(JSON.parse(ev.data));
    },
    answer(d) {
      if (typeof d.error === "string") return [{ type: "error", message: d.error }];
      const out = [];
      if (d.message?.content) out.push({ type: "text", text: d.message.content });
      (d.message?.tool_calls || []).forEach((tc, i) => out.push({ type: "tool", index: 2000 + i, name: tc.function?.name, args: JSON.stringify(tc.function?.arguments || {}), whole: true }));
      if (d.done) out.push({ type: "usage", input: d.prompt_eval_count, output: d.eval_count });
      return out;
    },
  },
};

/** Server-sent events, fed in pieces as they arrive: feed(text) → [{event, data}]; a partial event waits. */
export class SseParser {
  buf = "";
  feed(text) {
    this.buf += text.replace(/\r\n?/g, "\n");
    const out = [];
    let i;
    while ((i = this.buf.indexOf("\n\n")) >= 0) {
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      let event = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a comment (keep-alive)
        const [k, ...rest] = line.split(":");
        const v = rest.join(":").replace(/^ /, "");
        if (k === "event") event = v;
        else if (k === "data") data.push(v);
      }
      if (data.length) out.push({ event, data: data.join("\n") });
    }
    return out;
  }
  flush() {
    const rest = this.buf.trim() ? this.feed("\n\n") : [];
    this.buf = "";
    return rest;
  }
}

/** Newline-delimited JSON (Ollama): one object per line. */
export class NdjsonParser {
  buf = "";
  feed(text) {
    this.buf += text;
    const lines = this.buf.split("\n");
    this.buf = lines.pop();
    return lines.filter((l) => l.trim()).map((l) => ({ event: null, data: l }));
  }
  flush() {
    const rest = this.buf.trim() ? [{ event: null, data: this.buf }] : [];
    this.buf = "";
    return rest;
  }
}

/** Tools as the user typed them: an array of {name, description?, parameters?} or of OpenAI's
 * {type: "function", function: {...}}; anything else is an error the page shows. */
export function parseTools(text) {
  if (!text.trim()) return [];
  const v = JSON.parse(text);
  const list = Array.isArray(v) ? v : [v];
  return list.map((t, i) => {
    const f = t && t.type === "function" && t.function ? t.function : t;
    if (!f || typeof f.name !== "string" || !f.name) throw new Error(`tool ${i + 1}: needs a "name"`);
    return { name: f.name, description: f.description, parameters: f.parameters || f.input_schema || { type: "object", properties: {} } };
  });
}
