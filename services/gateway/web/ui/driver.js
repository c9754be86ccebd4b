// The driver view, live over GET /api/drivers/{id}/stream: the order the
// driver holds, pickup and delivery buttons
// (POST /api/drivers/{id}/pickup|deliver), the driver's status, and a map
// of the delivery with the driver's position. The stream brings every
// change of the driver (a new assignment, the pickup, the delivery, a
// status change, an order taken back) and each new position; nothing
// polls and nothing needs a reload.

import { command, describe, enc, getJSON, newKey } from './api.js';
import {
  $, DRIVER_STATUSES, clear, clock, duration, h, handleAuth, liveIndicator, param, ready, shortId, shortName, tokenClaims, topbar,
} from './common.js';
import { CityMap } from './map.js';
import { openStream } from './sse.js';

let id = '';
let driver = null;
let map;
let restaurants = [];

// How the order stands, in a driver's words, from the driver's own view.
const deliveryStatus = (cd) => (cd.pickedUpAt ? 'OutForDelivery' : 'DriverAssigned');
const DELIVERY_WORDS = { DriverAssigned: 'Assigned to you', OutForDelivery: 'Out for delivery' };

async function main() {
  topbar();
  try {
    restaurants = await getJSON('/api/restaurants');
  } catch (err) {
    $('#action-error').textContent = describe(err);
  }
  id = param('driver');
  const claims = tokenClaims();
  if (!id && claims && claims.role === 'driver' && claims.sub) id = claims.sub;
  if (!id) {
    pick(claims);
    return;
  }
  $('#driver').hidden = false;
  map = new CityMap($('#map'));
  map.setRestaurants(restaurants);
  $('#pickup').addEventListener('click', () => step('pickup'));
  $('#deliver').addEventListener('click', () => step('deliver'));
  $('#share-location').addEventListener('click', shareLocation);
  openStream(`/api/drivers/${enc(id)}/stream`, {
    onState: liveIndicator($('#live')),
    onMissing: (status) => {
      if (!handleAuth({ status, problem: {} })) $('#action-error').textContent = 'No such driver (or not one you may follow).';
      ready();
    },
    onMessage: (ev) => {
      if (ev.event === 'driver') {
        render(JSON.parse(ev.data));
        ready();
      } else if (ev.event === 'position' && driver) {
        const p = JSON.parse(ev.data);
        map.setDriver({ driverId: p.driverId, name: 'You', status: driver.status, location: { latitude: p.latitude, longitude: p.longitude, at: p.at } }, { followed: true });
      }
    },
  });
}

async function pick(claims) {
  $('#pick').hidden = false;
  $('#live').hidden = true;
  const ids = claims && Array.isArray(claims.restaurants) ? claims.restaurants : restaurants.map((r) => r.id);
  const items = [];
  for (const rid of ids) {
    try {
      const list = await getJSON(`/api/drivers?restaurantId=${enc(rid)}`);
      const r = restaurants.find((x) => x.id === rid);
      for (const d of list) {
        items.push(h('li', {}, h('a', { href: `/driver?driver=${enc(d.driverId)}`, text: `${d.name} (${d.vehicle})` }),
          h('span', { class: 'muted small', text: r ? shortName(r.name) : rid })));
      }
    } catch (err) {
      if (handleAuth(err)) break;
    }
  }
  clear($('#pick-list'), items.length ? items : h('li', { class: 'empty', text: 'No driver to show: open /driver?driver=<your id>.' }));
  ready();
}

function render(d) {
  if (driver && d.version < driver.version) return; // an older answer than what the stream showed
  const before = driver;
  driver = d;
  $('#driver-name').textContent = d.name;
  document.title = `${d.name} · Awesome Pizza`;
  const badge = $('#driver-status');
  badge.dataset.status = d.status;
  badge.textContent = d.status;
  const r = restaurants.find((x) => x.id === d.restaurantId);
  $('#driver-meta').textContent = `${d.vehicle} · ${r ? shortName(r.name) : d.restaurantId} · ${d.deliveriesCompleted} delivered${d.location ? ` · last fix ${clock(d.location.at)}` : ''}`;
  map.setRestaurants(restaurants, d.restaurantId);
  if (d.location) map.setDriver({ driverId: d.driverId, name: 'You', status: d.status, location: d.location }, { followed: true });

  const cd = d.currentDelivery;
  const panel = $('#delivery');
  panel.dataset.orderId = cd ? cd.orderId : '';
  if (cd) {
    const st = deliveryStatus(cd);
    map.setDestination(cd.dropoff);
    clear($('#delivery-body'), h('dl', { class: 'facts' },
      h('dt', { text: 'Order' }), h('dd', {}, h('code', { text: `#${shortId(cd.orderId)}` }), ' ',
        h('span', { id: 'delivery-order-status', class: 'badge', dataset: { status: st }, text: DELIVERY_WORDS[st] })),
      h('dt', { text: 'Assigned' }), h('dd', { text: `${clock(cd.assignedAt)}${cd.manual ? ` by ${cd.assignedBy || 'a manager'}` : ''}` }),
      h('dt', { text: 'Picked up' }), h('dd', { text: cd.pickedUpAt ? clock(cd.pickedUpAt) : 'not yet — collect it at the restaurant' }),
      h('dt', { text: 'Arrive by' }), h('dd', { id: 'delivery-eta', dataset: { eta: cd.estimatedDeliveryAt || '' }, text: cd.estimatedDeliveryAt ? eta(cd.estimatedDeliveryAt) : 'set at pickup' })));
  } else {
    map.setDestination(null);
    clear($('#delivery-body'), h('p', { class: 'empty', text: d.status === 'Available' ? 'No order yet. Stay available: the next one comes here.' : 'No order assigned.' }));
  }
  $('#pickup').disabled = !cd || Boolean(cd.pickedUpAt);
  $('#deliver').disabled = !cd || !cd.pickedUpAt;
  statusButtons(d);
  note(before, d);
}

// note tells what became of the order the driver held a moment ago.
function note(before, d) {
  const was = before && before.currentDelivery;
  const el = $('#driver-note');
  if (d.currentDelivery) {
    el.textContent = '';
    delete el.dataset.outcome;
  } else if (was) {
    const delivered = d.deliveriesCompleted > before.deliveriesCompleted;
    el.dataset.outcome = delivered ? 'delivered' : 'withdrawn';
    el.textContent = delivered
      ? `Order #${shortId(was.orderId)} delivered at ${clock(d.lastUpdated)}. Thank you!`
      : `Order #${shortId(was.orderId)} was taken back (cancelled or reassigned).`;
  }
}

function eta(at) {
  const left = new Date(at).getTime() - Date.now();
  return `${clock(at)}${left > 0 ? ` (in ${duration(left)})` : ''}`;
}

async function step(verb) {
  const cd = driver && driver.currentDelivery;
  if (!cd) return;
  const err = $('#action-error');
  err.textContent = '';
  const button = verb === 'pickup' ? $('#pickup') : $('#deliver');
  button.disabled = true;
  try {
    render(await command('POST', `/api/drivers/${enc(id)}/${verb}`, { orderId: cd.orderId }));
  } catch (e) {
    if (!handleAuth(e)) err.textContent = describe(e);
    if (driver) render(driver); // the buttons again as the driver stands
  }
}

function statusButtons(d) {
  const choices = DRIVER_STATUSES.filter((s) => s !== 'Busy');
  clear($('#status-buttons'), choices.map((s) => h('button', {
    type: 'button',
    class: s === d.status ? '' : 'secondary',
    dataset: { status: s },
    disabled: d.status === 'Busy' || s === d.status,
    'aria-pressed': String(s === d.status),
    text: s === 'OnBreak' ? 'On break' : s === 'EndOfShift' ? 'End of shift' : s,
    onclick: async () => {
      $('#status-error').textContent = '';
      try {
        render(await command('PUT', `/api/drivers/${enc(id)}/status`, { status: s }));
      } catch (e) {
        if (!handleAuth(e)) $('#status-error').textContent = describe(e);
      }
    },
  })));
}

// shareLocation reports the phone's position (the HTTP fallback of the
// MQTT location feed), at most every five seconds.
let watch = null;
function shareLocation() {
  const note = $('#location-note');
  const button = $('#share-location');
  if (watch !== null) {
    navigator.geolocation.clearWatch(watch);
    watch = null;
    button.textContent = 'Share my location';
    note.textContent = 'Location sharing is off.';
    return;
  }
  if (!('geolocation' in navigator) || !window.isSecureContext) {
    note.textContent = 'This browser cannot share its location here (it needs HTTPS or localhost).';
    return;
  }
  let lastSent = 0;
  watch = navigator.geolocation.watchPosition(async (pos) => {
    if (Date.now() - lastSent < 5000) return;
    lastSent = Date.now();
    const c = pos.coords;
    const body = { latitude: c.latitude, longitude: c.longitude, timestamp: new Date(pos.timestamp).toISOString() };
    if (Number.isFinite(c.speed) && c.speed >= 0) body.speedKmh = Math.min(300, c.speed * 3.6);
    if (Number.isFinite(c.heading) && c.heading >= 0 && c.heading < 360) body.heading = c.heading;
    if (Number.isFinite(c.accuracy)) body.accuracyM = Math.min(100000, c.accuracy);
    try {
      await command('POST', `/api/drivers/${enc(id)}/location`, body, newKey());
      note.textContent = `Position sent at ${clock(new Date().toISOString())}.`;
    } catch (e) {
      note.textContent = describe(e);
    }
  }, (e) => {
    note.textContent = `No position: ${e.message}`;
  }, { enableHighAccuracy: true, maximumAge: 5000 });
  button.textContent = 'Stop sharing';
  note.textContent = 'Sharing your location…';
}

main();
