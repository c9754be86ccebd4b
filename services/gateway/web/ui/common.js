// Shared pieces of the pages: a DOM builder (no innerHTML anywhere: every
// value from the API lands in text nodes), formatting, the order statuses,
// the live indicator, and following a driver.

import { enc, getJSON } from './api.js';
import { coalesce, openStream } from './sse.js';

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function param(name) {
  return new URLSearchParams(location.search).get(name) || '';
}

// The happy path of an order, in order, with the words customers read.
export const ORDER_FLOW = [
  'Created', 'Validated', 'Queued', 'Preparing', 'Baking', 'QualityCheck', 'ReadyForPickup',
  'DriverAssigned', 'PickedUp', 'OutForDelivery', 'Delivered',
];
export const FINAL_STATUSES = ['Delivered', 'Cancelled', 'Failed'];
export const CANCELLABLE = ['Created', 'Validated', 'Queued', 'Preparing', 'Baking', 'QualityCheck', 'ReadyForPickup'];
const STATUS_LABELS = {
  Created: 'Placed',
  Validated: 'Confirmed',
  Queued: 'Waiting for a chef',
  Preparing: 'Being prepared',
  Baking: 'In the oven',
  QualityCheck: 'Quality check',
  ReadyForPickup: 'Ready for pickup',
  DriverAssigned: 'Driver on the way to the restaurant',
  PickedUp: 'Picked up',
  OutForDelivery: 'On its way to you',
  Delivered: 'Delivered',
  Cancelled: 'Cancelled',
  Failed: 'Failed',
};
export const statusLabel = (s) => STATUS_LABELS[s] || s;
export const STAGES = ['Queued', 'Preparing', 'Baking', 'QualityCheck', 'Ready'];
export const STAGE_LABELS = { Queued: 'Queued', Preparing: 'Preparing', Baking: 'Baking', QualityCheck: 'Quality check', Ready: 'Ready' };
export const DRIVER_STATUSES = ['Available', 'Busy', 'OnBreak', 'Offline', 'EndOfShift'];

export function money(cents, currency = 'USD') {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 2000) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// duration formats milliseconds as m:ss (or h:mm:ss).
export function duration(ms) {
  const neg = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  const hrs = Math.floor(s / 3600);
  s -= hrs * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const core = hrs ? `${hrs}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
  return neg ? `-${core}` : core;
}

export function seconds(n) {
  if (!n) return '–';
  return n < 90 ? `${Math.round(n)} s` : `${(n / 60).toFixed(1)} min`;
}

export const shortId = (id) => (id ? String(id).slice(-6) : '');
export const shortName = (name) => String(name || '').replace(/^Awesome Pizza\s*/, '') || name;

export function metres(m) {
  return m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${Math.round(m)} m`;
}

// markNav highlights the current page in the top bar.
export function markNav() {
  for (const a of document.querySelectorAll('.topbar nav a')) {
    if (a.getAttribute('href') === location.pathname) a.setAttribute('aria-current', 'page');
  }
}

// liveIndicator binds a stream's state to a badge.
export function liveIndicator(el) {
  const words = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', missing: 'Unavailable', closed: 'Closed', offline: 'Offline' };
  return (state) => {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = words[state] || state;
  };
}

export function ready() {
  document.body.dataset.ready = 'true';
}

// followDriver keeps a driver (with its position) up to date. It follows
// GET /api/drivers/{id}/stream when the gateway serves it; otherwise it
// re-reads GET /api/drivers/{id} whenever nudge() is called (the page calls
// it when one of its own streams brings a change). Nothing polls.
export function followDriver(id, { onDriver, onState, onGone } = {}) {
  let mode = 'stream';
  let closed = false;
  const refresh = coalesce(async () => {
    if (closed) return;
    try {
      const d = await getJSON(`/api/drivers/${enc(id)}`);
      if (!closed) onDriver(d);
    } catch (err) {
      if (err && err.status === 404 && onGone) onGone();
    }
  });
  const stream = openStream(`/api/drivers/${enc(id)}/stream`, {
    onMessage: (ev) => onDriver(JSON.parse(ev.data)),
    onState: (s) => {
      if (onState && s !== 'missing') onState(s);
    },
    onMissing: () => {
      mode = 'refresh';
      if (onState) onState('live');
      refresh();
    },
  });
  return {
    get mode() {
      return mode;
    },
    id,
    nudge() {
      if (mode === 'refresh') refresh();
    },
    close() {
      closed = true;
      stream.close();
    },
  };
}

export function topbar() {
  markNav();
}
