// The customer page: choose a restaurant, build an order from its menu,
// pick the delivery point on the map, place the order (POST /api/orders),
// then follow it live over GET /api/orders/{id}/track: the status
// timeline, the estimated arrival, and the driver on the map.

import { command, describe, enc, getJSON, newKey } from './api.js';
import {
  $, CANCELLABLE, FINAL_STATUSES, ORDER_FLOW, clear, clock, duration, h, handleAuth, liveIndicator, metres, money, param, ready,
  shortName, statusLabel, tokenClaims, topbar,
} from './common.js';
import { CityMap, GRID_LAT, GRID_LON, addressOf, distance } from './map.js';
import { openStream } from './sse.js';

const state = {
  restaurants: [],
  menu: null,
  restaurant: null,
  cart: [],
  destination: null,
  streetEdited: false,
  key: null, // Idempotency-Key of the order being placed; a new one after any change
};

function customerId() {
  const claims = tokenClaims();
  if (claims && claims.role === 'customer' && claims.sub) return claims.sub;
  try {
    let id = localStorage.getItem('pizza.customerId');
    if (!id) {
      id = `web-${newKey().slice(0, 10)}`;
      localStorage.setItem('pizza.customerId', id);
    }
    return id;
  } catch {
    return `web-${newKey().slice(0, 10)}`;
  }
}

function changed() {
  state.key = null;
}

async function main() {
  topbar();
  try {
    state.restaurants = await getJSON('/api/restaurants');
  } catch (err) {
    $('#error').textContent = describe(err);
    ready();
    return;
  }
  const id = param('id');
  if (id) {
    track(id);
    return;
  }
  shop();
}

// --- ordering ---

let pickMap;

function shop() {
  $('#shop').hidden = false;
  $('#customer-id').textContent = customerId();
  const select = $('#restaurant');
  clear(select, state.restaurants.map((r) => h('option', { value: r.id, text: `${shortName(r.name)} — ${r.address}` })));
  const wanted = param('restaurant');
  if (state.restaurants.some((r) => r.id === wanted)) select.value = wanted;
  pickMap = new CityMap($('#pick-map'), {
    onPick: (p) => {
      state.destination = p;
      pickMap.setDestination(p);
      if (!state.streetEdited) $('#street').value = addressOf(p);
      changed();
    },
  });
  select.addEventListener('change', () => chooseRestaurant(select.value));
  $('#street').addEventListener('input', () => {
    state.streetEdited = true;
    changed();
  });
  for (const sel of ['#city', '#state', '#zip', '#payment']) $(sel).addEventListener('input', changed);
  $('#checkout').addEventListener('submit', (ev) => {
    ev.preventDefault();
    place();
  });
  chooseRestaurant(select.value);
}

async function chooseRestaurant(rid) {
  const r = state.restaurants.find((x) => x.id === rid);
  if (!r) return;
  state.restaurant = r;
  state.cart = [];
  changed();
  renderCart();
  const parts = String(r.address || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length >= 3) {
    $('#city').value = parts[parts.length - 2];
    $('#state').value = parts[parts.length - 1];
  }
  // A default delivery point a few blocks from the restaurant, on a street.
  state.destination = {
    latitude: round6((Math.round(r.location.latitude / GRID_LAT) + 2) * GRID_LAT),
    longitude: round6((Math.round(r.location.longitude / GRID_LON) + 3.5) * GRID_LON),
  };
  if (!state.streetEdited) $('#street').value = addressOf(state.destination);
  pickMap.setRestaurants(state.restaurants, r.id);
  pickMap.setDestination(state.destination);
  const menuEl = $('#menu');
  clear(menuEl, h('p', { class: 'empty', text: 'Loading the menu…' }));
  try {
    state.menu = await getJSON(`/api/menu/${enc(rid)}`);
  } catch (err) {
    clear(menuEl, h('p', { class: 'error', text: describe(err) }));
    return;
  }
  if (state.restaurant !== r) return;
  clear(menuEl, state.menu.pizzas.map(pizzaCard));
  ready();
}

const round6 = (x) => Math.round(x * 1e6) / 1e6;

function pizzaCard(p) {
  const menu = state.menu;
  const size = h('select', { class: 'size', 'aria-label': `Size of ${p.name}` },
    menu.sizes.map((s) => h('option', { value: s, text: `${s} · ${money(p.priceCents[s] || 0, menu.currency)}` })));
  size.value = menu.sizes.includes('Medium') ? 'Medium' : menu.sizes[0];
  const qty = h('input', { class: 'qty', type: 'number', min: '1', max: '50', value: '1', 'aria-label': `How many ${p.name}` });
  const toppings = menu.toppings.map((t) => ({ t, box: h('input', { type: 'checkbox', value: t.name }) }));
  const toppingLabels = toppings.map(({ t, box }) => h('label', {}, box, h('span', { class: 'tp', dataset: { topping: t.name } })));
  const price = h('span', { class: 'price' });
  const refresh = () => {
    const s = size.value;
    for (const l of toppingLabels) {
      const name = l.querySelector('span').dataset.topping;
      const t = menu.toppings.find((x) => x.name === name);
      l.querySelector('span').textContent = `${name} (+${money((t.priceCents && t.priceCents[s]) || 0, menu.currency)})`;
    }
    price.textContent = money(unitPrice(p, s, toppings.filter((x) => x.box.checked).map((x) => x.t.name)), menu.currency);
  };
  size.addEventListener('change', refresh);
  for (const { box } of toppings) box.addEventListener('change', refresh);
  refresh();
  const add = h('button', {
    class: 'add',
    type: 'button',
    text: 'Add',
    onclick: () => {
      const quantity = Math.max(1, Math.min(50, Math.round(Number(qty.value) || 1)));
      state.cart.push({ pizzaType: p.pizzaType, name: p.name, size: size.value, toppings: toppings.filter((x) => x.box.checked).map((x) => x.t.name), quantity });
      changed();
      renderCart();
    },
  });
  return h('article', { class: 'card pizza', dataset: { pizza: p.pizzaType } },
    h('h3', { text: p.name }),
    h('p', { text: p.description }),
    h('div', { class: 'row' }, size, qty),
    toppings.length ? h('details', {}, h('summary', { text: 'Extra toppings' }), toppingLabels) : null,
    h('div', { class: 'row' }, price, h('span', { class: 'spacer' }), add));
}

function unitPrice(p, size, toppingNames) {
  let cents = p.priceCents[size] || 0;
  for (const name of toppingNames) {
    const t = state.menu.toppings.find((x) => x.name === name);
    cents += (t && t.priceCents && t.priceCents[size]) || 0;
  }
  return cents;
}

function renderCart() {
  const ul = $('#cart');
  const currency = (state.menu && state.menu.currency) || 'USD';
  let total = 0;
  clear(ul, state.cart.map((line, i) => {
    const pizza = state.menu && state.menu.pizzas.find((p) => p.pizzaType === line.pizzaType);
    const cents = pizza ? unitPrice(pizza, line.size, line.toppings) * line.quantity : 0;
    total += cents;
    return h('li', { dataset: { line: String(i) } },
      h('span', {}, `${line.quantity}× ${line.name} · ${line.size}`, line.toppings.length ? h('span', { class: 'muted small', text: ` + ${line.toppings.join(', ')}` }) : null),
      h('span', { class: 'row' }, money(cents, currency),
        h('button', {
          type: 'button',
          class: 'secondary',
          'aria-label': `Remove ${line.name}`,
          text: '×',
          onclick: () => {
            state.cart.splice(i, 1);
            changed();
            renderCart();
          },
        })));
  }));
  $('#cart-empty').hidden = state.cart.length > 0;
  $('#cart-total').textContent = state.cart.length ? money(total, currency) : '–';
  $('#place').disabled = state.cart.length === 0;
}

async function place() {
  const errEl = $('#checkout-error');
  errEl.textContent = '';
  const street = $('#street').value.trim();
  const city = $('#city').value.trim();
  if (!state.cart.length) {
    errEl.textContent = 'Add a pizza first.';
    return;
  }
  if (!street || !city) {
    errEl.textContent = 'Tell us the street and the city.';
    (street ? $('#city') : $('#street')).focus();
    return;
  }
  const body = {
    customerId: customerId(),
    restaurantId: state.restaurant.id,
    items: state.cart.map((l) => ({ pizzaType: l.pizzaType, size: l.size, toppings: l.toppings, quantity: l.quantity })),
    address: {
      street,
      city,
      state: $('#state').value.trim(),
      zipCode: $('#zip').value.trim(),
      coordinates: { latitude: state.destination.latitude, longitude: state.destination.longitude },
    },
    paymentMethod: $('#payment').value,
  };
  if (!state.key) state.key = newKey();
  const button = $('#place');
  button.disabled = true;
  button.textContent = 'Placing…';
  try {
    const order = await command('POST', '/api/orders', body, state.key);
    history.replaceState(null, '', `/order?id=${enc(order.orderId)}`);
    $('#shop').hidden = true;
    track(order.orderId, order);
  } catch (err) {
    if (!handleAuth(err)) errEl.textContent = describe(err);
  } finally {
    button.disabled = state.cart.length === 0;
    button.textContent = 'Place order';
  }
}

// --- tracking ---

const tracking = { order: null, driver: null, etaAt: null, stream: null, map: null, tick: null };

function track(id, first) {
  $('#tracking').hidden = false;
  $('#order-id').textContent = id;
  $('#order-id').dataset.orderId = id;
  tracking.map = new CityMap($('#track-map'));
  tracking.map.setRestaurants(state.restaurants);
  if (first) render(first);
  const live = liveIndicator($('#live'));
  $('#live').hidden = false;
  tracking.stream = openStream(`/api/orders/${enc(id)}/track`, {
    onState: live,
    onMissing: (status) => {
      if (status === 401 || status === 403) handleAuth({ status, problem: {} });
      else $('#track-error').textContent = 'This order cannot be found (or belongs to someone else).';
      ready();
    },
    onMessage: (ev) => {
      if (ev.event === 'order') render(JSON.parse(ev.data));
      else if (ev.event === 'driver') driverMoved(JSON.parse(ev.data));
    },
  });
  $('#cancel').addEventListener('click', cancel);
  tracking.tick = setInterval(renderEta, 1000);
}

function render(o) {
  if (tracking.order && o.version < tracking.order.version) return;
  tracking.order = o;
  const badge = $('#order-status');
  badge.dataset.status = o.status;
  badge.textContent = statusLabel(o.status);
  document.title = `${statusLabel(o.status)} · Awesome Pizza`;
  renderTimeline(o);
  const currency = o.currency || 'USD';
  clear($('#order-items'), o.items.map((it) => h('li', {},
    h('span', {}, `${it.quantity}× ${it.pizzaType} · ${it.size}`, it.toppings && it.toppings.length ? h('span', { class: 'muted small', text: ` + ${it.toppings.join(', ')}` }) : null),
    h('span', { text: money(it.lineTotalCents, currency) }))));
  $('#order-total').textContent = money(o.totalCents, currency);
  $('#cancel').hidden = !CANCELLABLE.includes(o.status);
  const r = state.restaurants.find((x) => x.id === o.restaurantId);
  tracking.map.setRestaurants(state.restaurants, r ? r.id : null);
  if (o.deliveryLocation) tracking.map.setDestination(o.deliveryLocation);
  if (FINAL_STATUSES.includes(o.status)) {
    clearInterval(tracking.tick);
    // Nothing more will change: let the connection go.
    setTimeout(() => tracking.stream && tracking.stream.close(), 1500);
    const live = $('#live');
    live.dataset.state = 'closed';
    live.textContent = o.status === 'Delivered' ? 'Delivered' : 'Closed';
  }
  renderEta();
  ready();
}

function renderTimeline(o) {
  const seen = new Map();
  for (const c of o.statusHistory || []) seen.set(c.status, c.at);
  const final = o.status === 'Cancelled' || o.status === 'Failed';
  const current = ORDER_FLOW.indexOf(o.status);
  const items = ORDER_FLOW.filter((s) => s !== 'Created' || seen.has('Created')).map((s) => {
    const i = ORDER_FLOW.indexOf(s);
    let cls = 'pending';
    if (final) cls = seen.has(s) ? 'done' : 'pending';
    else if (o.status === 'Delivered' || i < current) cls = 'done';
    else if (i === current) cls = 'current';
    return h('li', { class: cls, dataset: { status: s } }, statusLabel(s), seen.has(s) && cls !== 'pending' ? h('time', { datetime: seen.get(s), text: clock(seen.get(s)) }) : null);
  });
  if (final) {
    const reason = o.status === 'Cancelled' ? o.cancellationReason : o.failureReason;
    items.push(h('li', { class: 'bad', dataset: { status: o.status } }, `${statusLabel(o.status)}${reason ? `: ${reason}` : ''}`,
      seen.has(o.status) ? h('time', { datetime: seen.get(o.status), text: clock(seen.get(o.status)) }) : null));
  }
  clear($('#timeline'), items);
}

function driverMoved(u) {
  tracking.driver = u;
  tracking.etaAt = u.etaAt || null;
  tracking.map.setDriver({ driverId: u.driverId, name: 'Driver', status: 'Busy', location: { latitude: u.latitude, longitude: u.longitude } }, { followed: true });
  renderEta();
}

function renderEta() {
  const o = tracking.order;
  const el = $('#eta');
  if (!o) return;
  let text = '';
  let eta = null;
  switch (o.status) {
    case 'Delivered':
      text = `Delivered at ${clock(lastChange(o, 'Delivered'))}. Enjoy!`;
      break;
    case 'Cancelled':
    case 'Failed':
      text = statusLabel(o.status);
      break;
    case 'PickedUp':
    case 'OutForDelivery':
    case 'DriverAssigned':
      eta = tracking.etaAt || o.estimatedDeliveryTime;
      text = o.status === 'DriverAssigned' ? 'A driver is heading to the restaurant.' : 'Your pizza is on its way.';
      break;
    default:
      eta = o.estimatedDeliveryTime;
      text = 'The kitchen is on it. The arrival time is set when a driver picks the order up.';
  }
  clear(el);
  if (eta) {
    const left = new Date(eta).getTime() - Date.now();
    el.append(h('span', { text: 'Arriving around ' }), h('strong', { id: 'eta-time', dataset: { eta }, text: clock(eta) }),
      h('span', { class: 'muted', text: left >= 1000 ? ` (in ${duration(left)})` : ' (any moment now)' }));
  } else {
    el.append(text);
  }
  const caption = $('#map-caption');
  const d = tracking.driver;
  if (d && o.deliveryLocation && !FINAL_STATUSES.includes(o.status)) {
    caption.textContent = `Your driver is ${metres(distance({ latitude: d.latitude, longitude: d.longitude }, o.deliveryLocation))} away (last seen ${clock(d.at)}).`;
  } else if (o.status === 'Delivered') {
    caption.textContent = 'Delivered.';
  } else {
    caption.textContent = 'The driver appears on the map once one is on the way.';
  }
}

function lastChange(o, status) {
  const hist = (o.statusHistory || []).filter((c) => c.status === status);
  return hist.length ? hist[hist.length - 1].at : o.lastUpdated;
}

async function cancel() {
  const o = tracking.order;
  if (!o) return;
  const errEl = $('#track-error');
  errEl.textContent = '';
  try {
    render(await command('POST', `/api/orders/${enc(o.orderId)}/cancel`, { reason: 'cancelled by the customer' }));
  } catch (err) {
    if (!handleAuth(err)) errEl.textContent = describe(err);
  }
}

main();
