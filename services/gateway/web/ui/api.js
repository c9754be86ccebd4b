// HTTP calls to the gateway's API. Every request carries an
// `Authorization: Bearer` header when a token is kept in localStorage under
// "pizza.token" (login is not part of the UI yet); errors come back as RFC
// 9457 problem documents and are thrown as ProblemError.

const TOKEN_KEY = 'pizza.token';

export function authToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function authHeaders() {
  const token = authToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class ProblemError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.name = 'ProblemError';
    this.status = status;
    this.problem = p;
  }
}

export async function request(method, path, body, { idempotencyKey, signal } = {}) {
  const headers = { Accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'same-origin',
    signal,
  });
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw new ProblemError(res.status, data);
  return data;
}

export const getJSON = (path, opts) => request('GET', path, undefined, opts);
export const postJSON = (path, body, opts) => request('POST', path, body, opts);
export const putJSON = (path, body, opts) => request('PUT', path, body, opts);

// A command sent with an Idempotency-Key may be retried safely: on a lost
// answer or a 503 it is sent again with the same key.
export async function command(method, path, body, key = newKey()) {
  let last;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 400 * attempt));
    try {
      return await request(method, path, body, { idempotencyKey: key });
    } catch (err) {
      last = err;
      const retryable = !(err instanceof ProblemError) || err.status === 503;
      if (!retryable) throw err;
    }
  }
  throw last;
}

// newKey returns a random Idempotency-Key (crypto.getRandomValues works on
// plain-HTTP origins too, unlike crypto.randomUUID).
export function newKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// describe turns an error into one line for people.
export function describe(err) {
  if (err instanceof ProblemError) {
    const p = err.problem;
    let s = p.title || `HTTP ${err.status}`;
    if (p.detail) s += `: ${p.detail}`;
    if (p.currentStatus) s += ` (now ${p.currentStatus})`;
    if (Array.isArray(p.errors) && p.errors.length) {
      s += ` (${p.errors.map((e) => `${e.field} ${e.detail}`).join('; ')})`;
    }
    return s;
  }
  if (err && err.name === 'TypeError') return 'The gateway cannot be reached. Check your connection and try again.';
  return String((err && err.message) || err);
}

export const enc = encodeURIComponent;
