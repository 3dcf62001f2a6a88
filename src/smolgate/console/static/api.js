// The console's one way to call the gateway: same-origin fetch with the session cookie, and the CSRF header on
// every state change (docs/console.md). A 401 anywhere means the session is gone: the app goes to sign-in.

export const session = { csrf: null, expires: null };

export class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const SAFE = new Set(["GET", "HEAD"]);

/** Headers for a request: the CSRF token on anything that is not GET/HEAD. */
export function headersFor(method, extra = {}) {
  const out = { ...extra };
  if (!SAFE.has(method) && session.csrf) out["x-smolgate-csrf"] = session.csrf;
  return out;
}

export async function call(method, path, body, opts = {}) {
  const headers = headersFor(method, body !== undefined ? { "content-type": "application/json" } : {});
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body !== undefined ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
      cache: "no-store",
      signal: opts.signal,
    });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "The gateway did not answer (" + exc.message + ").");
  }
  if (resp.status === 401 && !opts.allow401) {
    window.dispatchEvent(new CustomEvent("sg-signed-out"));
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, errorMessage(data, text, resp.status), data?.error?.type);
  return data;
}

/** The message of an error answer in any of the gateway's shapes (admin/OpenAI, Anthropic, Gemini, Ollama). */
export function errorMessage(data, text, status) {
  const e = data?.error;
  if (typeof e === "string") return e;
  if (e && typeof e.message === "string") return e.message;
  if (data && typeof data.message === "string") return data.message;
  return (text || "").slice(0, 300) || "HTTP " + status;
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const post = (path, body, opts) => call("POST", path, body === undefined ? {} : body, opts);
export const del = (path, opts) => call("DELETE", path, undefined, opts);

/** A query string from an object, leaving out empty values; every value is encoded. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) u.set(k, String(v));
  const s = u.toString();
  return s ? "?" + s : "";
}

/** A path segment from client data (key ids, account names, aliases): always encoded. */
export const seg = (s) => encodeURIComponent(String(s));

export async function signIn(adminKey) {
  const data = await call("POST", "/ui/api/session", { admin_key: adminKey }, { allow401: true });
  session.csrf = data.csrf;
  session.expires = data.expires;
  return data;
}

export async function resume() {
  try {
    const data = await call("GET", "/ui/api/session", undefined, { allow401: true });
    session.csrf = data.csrf;
    session.expires = data.expires;
    return true;
  } catch {
    return false;
  }
}

export async function signOut() {
  try {
    await call("DELETE", "/ui/api/session", undefined, { allow401: true });
  } finally {
    session.csrf = null;
    session.expires = null;
  }
}
