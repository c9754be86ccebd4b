// Shared pieces of the pages: a DOM builder (no innerHTML anywhere: every
// value from the API lands in text nodes), formatting, the order statuses,
// the live indicator, and the bearer token.

import { authToken } from './api.js';

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

// liveIndicator binds a stream's state to a badge (hidden until a stream
// reports its first state).
export function liveIndicator(el) {
  const words = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', missing: 'Unavailable', closed: 'Closed', offline: 'Offline', idle: 'Idle' };
  return (state) => {
    if (!el) return;
    el.hidden = false;
    el.dataset.state = state;
    el.textContent = words[state] || state;
  };
}

export function ready() {
  document.body.dataset.ready = 'true';
}

// --- bearer token ---
// The pages send the token kept in localStorage ("pizza.token"). Signing in
// is out of their scope: when the API asks for a token, they offer a box to
// paste one (from `pizza dev`'s output or `pizza token`).

const TOKEN_KEY = 'pizza.token';

// tokenClaims reads the token's claims (role, sub, restaurants) for display
// and defaults; the gateway verifies the token, the page never trusts it.
export function tokenClaims() {
  const t = authToken();
  if (!t) return null;
  try {
    const part = t.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const claims = JSON.parse(atob(b64));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

// staffOf tells whether the token may read a restaurant's staff data
// (drivers, dashboard): an operator, a manager of it, or no token at all
// (a platform without authentication lets everyone in).
export function staffOf(restaurantId) {
  const c = tokenClaims();
  if (!c) return !authToken();
  if (c.role === 'operator') return true;
  return c.role === 'manager' && Array.isArray(c.restaurants) && c.restaurants.includes(restaurantId);
}

function saveToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage is disabled: nothing to keep.
  }
}

// signIn shows a box to paste a bearer token; why tells what was refused.
export function signIn(why) {
  const main = document.querySelector('main');
  if (!main || document.getElementById('signin')) return;
  const input = h('input', { id: 'token-input', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'eyJhbGciOi…', 'aria-label': 'Bearer token' });
  const box = h('section', { id: 'signin', class: 'panel signin' },
    h('h2', { text: authToken() ? 'This token cannot open this page' : 'A token is needed' }),
    h('p', { class: 'muted', text: why || 'The platform asks for a bearer token. Paste one of the demo tokens `pizza dev` prints, or mint one with `pizza token --role … --subject …`.' }),
    h('form', {
      class: 'row',
      onsubmit: (ev) => {
        ev.preventDefault();
        saveToken(input.value.trim());
        location.reload();
      },
    }, input, h('button', { type: 'submit', text: 'Use token' })));
  main.prepend(box);
}

// handleAuth shows the sign-in box for a 401 or 403 and says whether it did.
export function handleAuth(err) {
  if (!err || (err.status !== 401 && err.status !== 403)) return false;
  const p = err.problem || {};
  signIn(err.status === 401 ? 'The platform asks for a bearer token: paste one of the demo tokens `pizza dev` prints, or mint one with `pizza token`.' : `${p.detail || 'Your token does not allow this page.'} Paste another token.`);
  return true;
}

function whoAmI() {
  const bar = document.querySelector('.topbar');
  if (!bar) return;
  const claims = tokenClaims();
  const who = h('span', { class: 'who small' });
  if (claims) {
    who.append(h('span', { text: `${claims.role || 'token'} · ${claims.sub || ''}` }), ' ',
      h('button', { type: 'button', class: 'linkish', text: 'Sign out', onclick: () => { saveToken(''); location.reload(); } }));
  } else {
    who.append(h('button', { type: 'button', class: 'linkish', text: 'Use a token', onclick: () => signIn() }));
  }
  bar.insertBefore(who, document.getElementById('live'));
}

export function topbar() {
  markNav();
  whoAmI();
}
