// The index: the restaurants with links to their pages, and their drivers
// when the token may list them.

import { describe, enc, getJSON } from './api.js';
import { $, clear, h, ready, shortName, staffOf, tokenClaims, topbar } from './common.js';

async function main() {
  topbar();
  const list = $('#restaurants');
  let restaurants;
  try {
    restaurants = await getJSON('/api/restaurants');
  } catch (err) {
    clear(list);
    $('#error').textContent = describe(err);
    ready();
    return;
  }
  const claims = tokenClaims();
  clear(list, restaurants.map((r) => h('article', { class: 'card', dataset: { restaurantId: r.id } },
    h('h3', { text: shortName(r.name) }),
    h('p', { class: 'muted small', text: r.address }),
    h('div', { class: 'links' },
      h('a', { class: 'button', href: `/order?restaurant=${enc(r.id)}`, text: 'Order here' }),
      h('a', { class: 'button secondary', href: `/kitchen?restaurant=${enc(r.id)}`, text: 'Kitchen' }),
      h('a', { class: 'button secondary', href: `/dashboard?restaurant=${enc(r.id)}`, text: 'Dashboard' })),
    h('ul', { class: 'driver-links', id: `drivers-${r.id}` }))));
  ready();
  // Drivers are staff data: listed only for tokens that may see them.
  if (claims && claims.role === 'driver' && claims.sub) {
    for (const r of restaurants) {
      const ul = document.getElementById(`drivers-${r.id}`);
      if (ul) ul.remove();
    }
    list.before(h('p', {}, h('a', { class: 'button', href: `/driver?driver=${enc(claims.sub)}`, text: 'My deliveries' })));
    return;
  }
  await Promise.all(restaurants.map(async (r) => {
    const ul = document.getElementById(`drivers-${r.id}`);
    if (!staffOf(r.id)) {
      ul.remove();
      return;
    }
    try {
      const drivers = await getJSON(`/api/drivers?restaurantId=${enc(r.id)}`);
      clear(ul, drivers.map((d) => h('li', {},
        h('a', { href: `/driver?driver=${enc(d.driverId)}`, text: `${d.name} (${d.vehicle})` }),
        h('span', { class: 'badge', dataset: { status: d.status }, text: d.status }))));
    } catch {
      ul.remove();
    }
  }));
}

main();
