// A restaurant manager's dashboard, live over
// GET /api/dashboard/{id}/stream: orders by status, averages, the kitchen,
// the drivers on the map, low stock and stuck orders, and manual dispatch
// (POST /api/orders/{id}/assign-driver). The lists the dashboard does not
// carry (recent orders, orders waiting for a driver, the drivers) are read
// again when a frame says their part changed; the drivers' markers move
// with the stream's "positions" frames. Nothing polls.

import { command, describe, enc, getJSON } from './api.js';
import {
  $, ORDER_FLOW, STAGES, STAGE_LABELS, clear, clock, h, handleAuth, liveIndicator, money, param, ready, seconds, shortId, shortName,
  statusLabel, tokenClaims, topbar,
} from './common.js';
import { CityMap } from './map.js';
import { coalesce, openStream } from './sse.js';

let rid = '';
let map;
let last = null; // the last dashboard
let parts = {}; // version parts of the last dashboard: o, k, d, q, i
let drivers = [];
const positions = new Map(); // driver id → newest {latitude, longitude, at} from the stream

async function main() {
  topbar();
  let restaurants = [];
  try {
    restaurants = await getJSON('/api/restaurants');
  } catch (err) {
    $('#error').textContent = describe(err);
  }
  rid = param('restaurant');
  const claims = tokenClaims();
  if (!rid && claims && Array.isArray(claims.restaurants) && claims.restaurants.length === 1) rid = claims.restaurants[0];
  if (!rid) {
    $('#pick').hidden = false;
    $('#live').hidden = true;
    clear($('#pick-list'), restaurants.map((r) => h('li', {}, h('a', { href: `/dashboard?restaurant=${enc(r.id)}`, text: shortName(r.name) }), h('span', { class: 'muted small', text: r.address }))));
    ready();
    return;
  }
  const r = restaurants.find((x) => x.id === rid);
  $('#dash').hidden = false;
  $('#dash-title').textContent = `Dashboard · ${r ? shortName(r.name) : rid}`;
  document.title = `Dashboard · ${r ? shortName(r.name) : rid}`;
  map = new CityMap($('#map'), { minSpanMetres: 2500 });
  map.setRestaurants(restaurants, rid);
  $('#assign').addEventListener('submit', (ev) => {
    ev.preventDefault();
    assign();
  });
  for (const sel of ['#assign-order', '#assign-driver']) $(sel).addEventListener('change', enableAssign);
  const live = liveIndicator($('#live'));
  openStream(`/api/dashboard/${enc(rid)}/stream`, {
    onState: live,
    onMissing: (status) => {
      if (status === 401 || status === 403) handleAuth({ status, problem: {} });
      else $('#error').textContent = 'No such restaurant (or not yours).';
      ready();
    },
    onMessage: (ev) => {
      if (ev.event === 'dashboard') render(JSON.parse(ev.data));
      else if (ev.event === 'positions') movePositions(JSON.parse(ev.data).positions || []);
    },
  });
}

function versionParts(v) {
  const out = {};
  for (const m of String(v || '').matchAll(/([a-z])(\d+)/g)) out[m[1]] = m[2];
  return out;
}

function render(d) {
  const prev = last;
  last = d;
  const before = parts;
  parts = versionParts(d.version);
  $('#dash-version').textContent = d.version;
  $('#updated').textContent = clock(d.generatedAt);

  const o = d.orders;
  const by = o.ordersByStatus || {};
  tiles([
    ['activeOrders', 'Active orders', o.activeOrders],
    ['delivered', 'Delivered', by.Delivered || 0],
    ['avgPrep', 'Avg. preparation', o.avgPrepSeconds, seconds(o.avgPrepSeconds)],
    ['avgDelivery', 'Avg. delivery', o.avgDeliverySeconds, seconds(o.avgDeliverySeconds)],
    ['waiting', 'Waiting for a driver', d.drivers.waitingOrders],
    ['driversAvailable', 'Drivers available', d.drivers.available, `${d.drivers.available}/${d.drivers.total}`],
    ['chefsAvailable', 'Chefs free', d.kitchen.chefsAvailable, `${d.kitchen.chefsAvailable}/${d.kitchen.chefsTotal}`],
    ['stuck', 'Stuck orders', d.stuckOrders.length, null, d.stuckOrders.length > 0],
    ['lowStock', 'Low on stock', d.lowStock.length, null, d.lowStock.length > 0],
  ], prev);

  const statuses = [...ORDER_FLOW, 'Cancelled', 'Failed'];
  const maxCount = Math.max(1, ...statuses.map((s) => by[s] || 0));
  clear($('#by-status'), statuses.map((s) => bar(s, statusLabel(s), by[s] || 0, maxCount)));
  const stageMax = Math.max(1, ...STAGES.map((s) => d.kitchen.tickets[s] || 0));
  clear($('#stages'), STAGES.map((s) => bar(s, STAGE_LABELS[s], d.kitchen.tickets[s] || 0, stageMax)));
  $('#chefs-line').textContent = `${d.kitchen.chefsTotal} chefs: ${d.kitchen.chefsAvailable} with room for a ticket, ${d.kitchen.chefsOnBreak} on break.`;

  clear($('#stuck'), d.stuckOrders.length
    ? d.stuckOrders.map((id) => h('li', { dataset: { orderId: id } }, h('a', { href: `/order?id=${enc(id)}`, text: `#${shortId(id)}` }), h('span', { class: 'badge bad', text: 'stuck' })))
    : h('li', { class: 'empty', text: 'None' }));
  const alerts = new Map((d.stockAlerts || []).map((a) => [a.ingredient, a]));
  clear($('#low-stock'), d.lowStock.length
    ? d.lowStock.map((ing) => {
      const a = alerts.get(ing);
      return h('li', { dataset: { ingredient: ing } }, h('span', { text: ing.replace(/_/g, ' ') }),
        h('span', { class: 'badge warn', text: a ? `${a.available} left (≤ ${a.threshold}) since ${clock(a.at)}` : 'low' }));
    })
    : h('li', { class: 'empty', text: 'Stock is fine' }));

  if (!prev || before.o !== parts.o) refreshRecent();
  if (!prev || before.q !== parts.q || before.o !== parts.o) refreshWaiting();
  // Drivers' statuses and assignments are in the version's d part; their
  // positions come in "positions" frames.
  if (!prev || before.d !== parts.d) refreshDrivers();
  ready();
}

function tiles(list, prev) {
  const root = $('#tiles');
  const old = new Map([...root.querySelectorAll('.tile')].map((el) => [el.dataset.metric, el.dataset.value]));
  clear(root, list.map(([metric, label, value, shown, alert]) => {
    const v = String(Math.round((Number(value) || 0) * 10) / 10);
    const changed = prev && old.has(metric) && old.get(metric) !== v;
    return h('div', { class: `tile${alert ? ' alert' : ''}${changed ? ' changed' : ''}`, dataset: { metric, value: v } },
      h('span', { class: 'value', text: shown == null ? v : shown }), h('span', { class: 'label', text: label }));
  }));
}

function bar(key, label, n, maxN) {
  const fill = h('span');
  fill.style.width = `${(100 * n) / maxN}%`; // CSSOM: allowed by the page's CSP, unlike style attributes
  return h('li', { dataset: { key, count: String(n) } }, h('span', { text: label }), h('span', { class: 'bar' }, fill), h('span', { class: 'n', text: String(n) }));
}

const refreshRecent = coalesce(async () => {
  try {
    const page = await getJSON(`/api/restaurants/${enc(rid)}/orders?limit=12`);
    const body = $('#recent tbody');
    clear(body, page.orders.length
      ? page.orders.map((o) => h('tr', { dataset: { orderId: o.orderId, status: o.status } },
        h('td', {}, h('a', { href: `/order?id=${enc(o.orderId)}`, text: `#${shortId(o.orderId)}` }), o.stuck ? h('span', { class: 'badge bad', text: ' stuck' }) : null),
        h('td', {}, h('span', { class: 'badge', dataset: { status: o.status }, text: statusLabel(o.status) })),
        h('td', { text: clock(o.createdAt) }),
        h('td', { class: 'num', text: money(o.totalCents, o.currency) })))
      : h('tr', {}, h('td', { colspan: '4', class: 'empty', text: 'No orders yet' })));
  } catch (err) {
    if (!handleAuth(err)) $('#error').textContent = describe(err);
  }
});

const refreshWaiting = coalesce(async () => {
  try {
    const page = await getJSON(`/api/restaurants/${enc(rid)}/orders?status=ReadyForPickup&limit=50`);
    const sel = $('#assign-order');
    const keep = sel.value;
    clear(sel, page.orders.length
      ? page.orders.map((o) => h('option', { value: o.orderId, text: `#${shortId(o.orderId)} · ready since ${clock(o.lastUpdated)}` }))
      : h('option', { value: '', text: 'No order is waiting' }));
    if (page.orders.some((o) => o.orderId === keep)) sel.value = keep;
    enableAssign();
  } catch (err) {
    if (!handleAuth(err)) $('#error').textContent = describe(err);
  }
});

const refreshDrivers = coalesce(async () => {
  try {
    drivers = await getJSON(`/api/drivers?restaurantId=${enc(rid)}`);
  } catch (err) {
    if (!handleAuth(err)) $('#error').textContent = describe(err);
    return;
  }
  for (const d of drivers) {
    const p = positions.get(d.driverId);
    if (p && (!d.location || new Date(p.at) >= new Date(d.location.at))) d.location = p;
  }
  for (const d of drivers) map.setDriver(d);
  map.keepDrivers(drivers.map((d) => d.driverId));
  clear($('#drivers'), drivers.map((d) => h('li', { dataset: { driverId: d.driverId, status: d.status, ...where(d.location) } },
    h('span', {}, h('a', { href: `/driver?driver=${enc(d.driverId)}`, text: d.name }), h('span', { class: 'muted small', text: ` ${d.vehicle} · ${d.deliveriesCompleted} delivered` }),
      d.currentOrderId ? h('span', { class: 'muted small' }, ' · ', h('a', { href: `/order?id=${enc(d.currentOrderId)}`, text: `#${shortId(d.currentOrderId)}` })) : null),
    h('span', { class: 'badge', dataset: { status: d.status }, text: d.status }))));
  const sel = $('#assign-driver');
  const keep = sel.value;
  const sorted = [...drivers].sort((a, b) => Number(b.status === 'Available') - Number(a.status === 'Available'));
  clear(sel, sorted.map((d) => h('option', { value: d.driverId, text: `${d.name} · ${d.status}` })));
  if (drivers.some((d) => d.driverId === keep)) sel.value = keep;
  enableAssign();
});

// where exposes a position on a list item (for tests and tools).
function where(loc) {
  return loc ? { lat: String(loc.latitude), lon: String(loc.longitude) } : {};
}

// movePositions moves the markers of the drivers the stream reports. The
// list counts the moves it made (data-stream-moves).
let streamMoves = 0;
function movePositions(list) {
  for (const p of list) {
    const loc = { latitude: p.latitude, longitude: p.longitude, at: p.at };
    positions.set(p.driverId, loc);
    const d = drivers.find((x) => x.driverId === p.driverId);
    if (!d) continue; // not listed yet: the next list picks the position up
    if (d.location && (d.location.latitude !== loc.latitude || d.location.longitude !== loc.longitude)) {
      streamMoves++;
      $('#drivers').dataset.streamMoves = String(streamMoves);
    }
    d.location = loc;
    map.setDriver(d);
    const li = document.querySelector(`#drivers li[data-driver-id="${CSS.escape(p.driverId)}"]`);
    if (li) Object.assign(li.dataset, where(loc));
  }
}

function enableAssign() {
  $('#assign-button').disabled = !$('#assign-order').value || !$('#assign-driver').value;
}

async function assign() {
  const orderId = $('#assign-order').value;
  const driverId = $('#assign-driver').value;
  const out = $('#assign-result');
  out.textContent = '';
  out.className = 'notice';
  delete out.dataset.outcome;
  if (!orderId || !driverId) return;
  const button = $('#assign-button');
  button.disabled = true;
  try {
    const d = await command('POST', `/api/orders/${enc(orderId)}/assign-driver`, { driverId });
    out.dataset.outcome = 'ok';
    out.textContent = `${d.name} now has order #${shortId(orderId)}.`;
    refreshWaiting();
    refreshDrivers();
  } catch (err) {
    out.dataset.outcome = 'error';
    out.className = 'error';
    if (!handleAuth(err)) out.textContent = describe(err);
  } finally {
    enableAssign();
  }
}

main();
