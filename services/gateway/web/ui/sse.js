// Server-Sent Events over fetch. The browser's EventSource cannot send an
// Authorization header; this client can, and otherwise behaves the same:
// it resumes with Last-Event-ID after a dropped connection, honours the
// server's `retry:` delay, and ignores comments (heartbeats).

import { authHeaders } from './api.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// openStream follows path until close() is called.
//   onMessage({id, event, data})  for every message (data is the raw text)
//   onState(state)                'connecting' | 'live' | 'reconnecting' | 'missing' | 'closed'
//   onMissing(status)             the stream is refused (401/403) or does not exist (404/410): no retry
//   resume                        send Last-Event-ID when reconnecting (default true)
export function openStream(path, { onMessage, onState, onMissing, resume = true } = {}) {
  let closed = false;
  let controller = null;
  let lastId = null;
  let retry = 2000;
  const state = (s) => {
    if (onState) onState(s);
  };

  async function run() {
    let first = true;
    while (!closed) {
      state(first ? 'connecting' : 'reconnecting');
      first = false;
      controller = new AbortController();
      try {
        const headers = { Accept: 'text/event-stream', ...authHeaders() };
        if (resume && lastId !== null) headers['Last-Event-ID'] = lastId;
        const res = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin', signal: controller.signal });
        if ([401, 403, 404, 410].includes(res.status)) {
          state('missing');
          if (onMissing) onMissing(res.status);
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        state('live');
        await readEvents(res.body, (ev) => {
          if (ev.retry) retry = ev.retry;
          if (ev.id !== null) lastId = ev.id;
          if (ev.data !== null && !closed) onMessage(ev);
        });
      } catch {
        // The connection failed or dropped: reconnect below.
      }
      if (closed) return;
      state('reconnecting');
      await sleep(retry);
    }
  }
  run();
  return {
    close() {
      if (closed) return;
      closed = true;
      if (controller) controller.abort();
      state('closed');
    },
  };
}

// readEvents parses an event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html).
async function readEvents(body, dispatch) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data = [];
  let event = '';
  let id = null;
  let sawId = false;
  const line = (l) => {
    if (l === '') {
      if (data.length) dispatch({ id: sawId ? id : null, event: event || 'message', data: data.join('\n'), retry: 0 });
      data = [];
      event = '';
      sawId = false;
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        data.push(value);
        break;
      case 'event':
        event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          id = value;
          sawId = true;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) dispatch({ id: null, event: '', data: null, retry: Number(value) });
        break;
      default:
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const sep = buffer[i] === '\r' && buffer[i + 1] === '\n' ? 2 : 1;
      if (buffer[i] === '\r' && i + 1 === buffer.length) break; // a \r\n may be split across chunks
      line(buffer.slice(0, i));
      buffer = buffer.slice(i + sep);
    }
  }
}

// coalesce runs fn at most once at a time; calls made while it runs are
// folded into one more run afterwards.
export function coalesce(fn) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await fn();
      } while (again);
    } finally {
      running = false;
    }
  };
}
