// The Vercel AI SDK through smolgate: every provider package × every upstream alias × every case, in one process.
// Run by tests/frameworks/test_vercel_ai.py:  node matrix.mjs <gateway url> <client key>
// Prints one JSON line per cell: {provider, upstream, case, ok, detail}. A cell is ok when the SDK call
// returned what the fake upstream's script says it must (see tests/frameworks/cases.py), or, for the error
// cases, when the SDK raised an error that carries a 5xx status and is not a rate limit.
import { generateText, streamText, tool, isStepCount, Output } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { z } from 'zod';

const [url, key] = process.argv.slice(2);
const UPSTREAMS = ['openai', 'openai-responses', 'anthropic', 'gemini', 'ollama'];
const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: key });
// smolgate takes json_schema response formats, which an OpenAI-compatible server has to declare
const compat = createOpenAICompatible({ name: 'smolgate', baseURL: `${url}/v1`, apiKey: key,
  supportsStructuredOutputs: true });
const anthropic = createAnthropic({ baseURL: `${url}/v1`, apiKey: key });
const google = createGoogleGenerativeAI({ baseURL: `${url}/v1beta`, apiKey: key });
const PROVIDERS = {
  'openai-responses': (m) => openai.responses(m),
  'openai-chat': (m) => openai.chat(m),
  'openai-compatible': (m) => compat.chatModel(m),
  anthropic: (m) => anthropic(m),
  google: (m) => google(m),
};
const Weather = z.object({ city: z.string(), temperature_c: z.number().int() });
const echoed = (text) => text.startsWith('You said: hello there |');

function weatherTool(calls) {
  return tool({
    description: 'Weather for a city.',
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => { calls.push(city); return `sunny in ${city}`; },
  });
}

function check(cond, detail) {
  if (!cond) throw new Error(`unexpected: ${JSON.stringify(detail).slice(0, 400)}`);
}

// The tool result reaches the model as the SDK serialises it: plain text, or JSON text of it (a string).
const saidTool = (text, ...cities) => text.startsWith('The tool said: ') &&
  cities.every((c) => text.includes(`sunny in ${c}`));

function statusOf(err) {
  for (let e = err; e; e = e.cause ?? e.lastError) {
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (Array.isArray(e.errors) && e.errors.length) return statusOf(e.errors.at(-1));
  }
  return undefined;
}

const CASES = {
  async text(model) {
    const r = await generateText({ model, system: 'be brief', prompt: 'hello there', maxRetries: 0 });
    check(echoed(r.text), r.text);
  },
  async stream(model) {
    const r = streamText({ model, prompt: 'hello there', maxRetries: 0, onError: () => {} });
    const parts = [];
    for await (const d of r.textStream) parts.push(d);
    check(parts.length > 1 && echoed(parts.join('')), parts);
  },
  async tools(model) {
    const calls = [];
    const r = await generateText({ model, prompt: 'what is the weather?', tools: { get_weather: weatherTool(calls) },
      stopWhen: isStepCount(5), maxRetries: 0 });
    check(calls.join() === 'Paris' && saidTool(r.text, 'Paris'), { calls, text: r.text });
  },
  async parallel(model) {
    const calls = [];
    const r = streamText({ model, prompt: 'weather PARALLEL', tools: { get_weather: weatherTool(calls) },
      stopWhen: isStepCount(5), maxRetries: 0, onError: () => {} });
    const text = await r.text;
    check(calls.sort().join() === 'Paris,Tokyo' && saidTool(text, 'Paris', 'Tokyo'), { calls, text });
  },
  async reasoning(model, upstream, provider) {
    const calls = [];
    // the tag lets the test find this cell's requests at the upstream and check they asked it to reason
    const r = streamText({ model, prompt: `what is the weather? (vercel-${provider})`,
      tools: { get_weather: weatherTool(calls) },
      reasoning: 'high', stopWhen: isStepCount(5), maxRetries: 0, onError: () => {},
      // the OpenAI provider sends reasoning only to models it knows reason, unless told (its docs: for a custom
      // baseURL whose model ids it does not recognise)
      providerOptions: { openai: { forceReasoning: true } } });
    const text = await r.text;
    check(calls.join() === 'Paris' && saidTool(text, 'Paris'), { calls, text });
  },
  async structured(model) {
    const r = await generateText({ model, prompt: 'report as json', output: Output.object({ schema: Weather }),
      maxRetries: 0 });
    check(r.output.city === 'Paris' && r.output.temperature_c === 21, r.output);
  },
  async error(model, upstream, provider) {
    try {
      await generateText({ model: PROVIDERS[provider](`bad-${upstream}`), prompt: 'hello there', maxRetries: 0 });
    } catch (err) {
      const status = statusOf(err);
      check(status >= 500 && status !== 529, { status, message: String(err.message).slice(0, 200) });
      return;
    }
    check(false, 'no error');
  },
  async stream_error(model) {
    const r = streamText({ model, prompt: 'FAIL_MIDSTREAM please', maxRetries: 0, onError: () => {} });
    let failed = false;
    try {
      for await (const part of r.fullStream) if (part.type === 'error') failed = true;
    } catch {
      failed = true;
    }
    check(failed, 'a stream the upstream broke off ended without an error');
  },
};

const only = process.env.ONLY ? new Set(process.env.ONLY.split(',')) : null;
for (const provider of Object.keys(PROVIDERS)) {
  for (const upstream of UPSTREAMS) {
    for (const [name, run] of Object.entries(CASES)) {
      if (only && !only.has(`${provider}/${upstream}/${name}`)) continue;
      let ok = true;
      let detail = '';
      try {
        await run(PROVIDERS[provider](upstream), upstream, provider);
      } catch (err) {
        ok = false;
        detail = `${err?.name}: ${String(err?.message).slice(0, 500)}`;
      }
      process.stdout.write(JSON.stringify({ provider, upstream, case: name, ok, detail }) + '\n');
    }
  }
}
