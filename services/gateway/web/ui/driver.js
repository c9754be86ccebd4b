// The driver view: the order the driver holds (GET /api/drivers/{id}),
// pickup and delivery buttons (POST /api/drivers/{id}/pickup|deliver), the
// driver's status, and a map of the delivery. The order's own stream
// (GET /api/orders/{id}/track) brings its changes and the driver's
// position; nothing polls.

import { command, describe, enc, getJSON, newKey } from './api.js';
import {
  $, DRIVER_STATUSES, clear, clock, duration, h, handleAuth, liveIndicator, param, ready, shortId, shortName, staffOf, tokenClaims, topbar,
} from './common.js';
import { CityMap } from './map.js';
import { coalesce, openStream } from './sse.js';

let id = '';
let driver = null;
let map;
let restaurants = [];
let live;
let orderStream = null; // { orderId, stream }
let restaurantStream = null; // wakes an idle driver (staff tokens only)
let orderStatus = '';

// The order's status as a driver says it.
const ORDER_WORDS = {
  ReadyForPickup: 'Ready for pickup', DriverAssigned: 'Assigned to you', PickedUp: 'Picked up', OutForDelivery: 'Out for delivery',
  Delivered: 'Delivered', Cancelled: 'Cancelled', Failed: 'Failed',
};
const orderWords = (s) => ORDER_WORDS[s] || s;

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
  live = liveIndicator($('#live'));
  map = new CityMap($('#map'));
  map.setRestaurants(restaurants);
  $('#pickup').addEventListener('click', () => step('pickup'));
  $('#deliver').addEventListener('click', () => step('deliver'));
  $('#share-location').addEventListener('click', shareLocation);
  try {
    render(await getJSON(`/api/drivers/${enc(id)}`));
  } catch (err) {
    if (!handleAuth(err)) $('#action-error').textContent = err.status === 404 ? 'No such driver.' : describe(err);
    live('missing');
    ready();
    return;
  }
  ready();
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

const reload = coalesce(async () => {
  try {
    render(await getJSON(`/api/drivers/${enc(id)}`));
  } catch (err) {
    handleAuth(err);
  }
});

function render(d) {
  if (driver && d.version < driver.version) return;
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
    map.setDestination(cd.dropoff);
    clear($('#delivery-body'), h('dl', { class: 'facts' },
      h('dt', { text: 'Order' }), h('dd', {}, h('code', { text: `#${shortId(cd.orderId)}` }), ' ',
        h('span', { id: 'delivery-order-status', class: 'badge', dataset: { status: orderStatus }, text: orderStatus ? orderWords(orderStatus) : '' })),
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
  followOrder(cd ? cd.orderId : '');
}

function eta(at) {
  const left = new Date(at).getTime() - Date.now();
  return `${clock(at)}${left > 0 ? ` (in ${duration(left)})` : ''}`;
}

// followOrder keeps one stream on the order the driver holds: the order's
// changes (each one re-reads the driver: pickup, delivery, withdrawal) and
// the driver's own position as the platform stored it. No stream tells a
// driver about a new assignment yet; an idle page learns it from the
// restaurant's dashboard stream when the token may read it (a manager's,
// an operator's), and otherwise from the answer to a status change.
function followOrder(orderId) {
  if (orderStream && orderStream.orderId !== orderId) {
    orderStream.stream.close();
    orderStream = null;
    orderStatus = '';
  }
  if (orderId && !orderStream) {
    orderStream = {
      orderId,
      stream: openStream(`/api/orders/${enc(orderId)}/track`, {
        onState: live,
        onMissing: () => reload(),
        onMessage: (ev) => {
          if (ev.event === 'order') {
            const o = JSON.parse(ev.data);
            const changed = o.status !== orderStatus;
            orderStatus = o.status;
            const el = document.getElementById('delivery-order-status');
            if (el) {
              el.dataset.status = o.status;
              el.textContent = orderWords(o.status);
            }
            if (changed) reload();
          } else if (ev.event === 'driver' && driver) {
            const u = JSON.parse(ev.data);
            map.setDriver({ driverId: u.driverId, name: 'You', status: driver.status, location: { latitude: u.latitude, longitude: u.longitude } }, { followed: true });
          }
        },
      }),
    };
  }
  const idle = !orderId && driver;
  if (idle && !restaurantStream) {
    if (staffOf(driver.restaurantId)) {
      restaurantStream = openStream(`/api/dashboard/${enc(driver.restaurantId)}/stream`, { resume: false, onState: live, onMessage: () => reload() });
    } else {
      live('idle');
      $('#driver-note').textContent = 'New orders show up here when you set your status, or when you reload the page.';
    }
  } else if (!idle && restaurantStream) {
    restaurantStream.close();
    restaurantStream = null;
  }
  if (!idle) $('#driver-note').textContent = '';
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
    reload();
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
