// The kitchen display of one restaurant, live over
// GET /api/kitchen/{id}/stream: tickets by stage with their timers, and the
// chefs with their load (and their breaks).

import { command, describe, enc, getJSON } from './api.js';
import {
  $, STAGES, STAGE_LABELS, clear, clock, duration, h, handleAuth, liveIndicator, param, ready, shortId, shortName, tokenClaims, topbar,
} from './common.js';
import { openStream } from './sse.js';

const READY_SHOWN = 12;
const seenStages = new Map(); // order id → stages the ticket was seen in, in order
let rid = '';

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
    pick(restaurants);
    return;
  }
  const r = restaurants.find((x) => x.id === rid);
  $('#display').hidden = false;
  $('#kitchen-title').textContent = `Kitchen · ${r ? shortName(r.name) : rid}`;
  document.title = `Kitchen · ${r ? shortName(r.name) : rid}`;
  const live = liveIndicator($('#live'));
  openStream(`/api/kitchen/${enc(rid)}/stream`, {
    onState: live,
    onMissing: (status) => {
      if (status === 401 || status === 403) handleAuth({ status, problem: {} });
      else $('#error').textContent = 'No such restaurant (or not yours).';
      ready();
    },
    onMessage: (ev) => {
      if (ev.event !== 'kitchen') return;
      render(JSON.parse(ev.data));
    },
  });
  setInterval(tickTimers, 1000);
}

function pick(restaurants) {
  $('#pick').hidden = false;
  $('#live').hidden = true;
  clear($('#pick-list'), restaurants.map((r) => h('li', {}, h('a', { href: `/kitchen?restaurant=${enc(r.id)}`, text: shortName(r.name) }), h('span', { class: 'muted small', text: r.address }))));
  ready();
}

function render(d) {
  const present = new Set();
  for (const t of d.tickets) {
    present.add(t.orderId);
    const stages = seenStages.get(t.orderId) || [];
    if (stages[stages.length - 1] !== t.stage) stages.push(t.stage);
    seenStages.set(t.orderId, stages);
  }
  for (const id of [...seenStages.keys()]) if (!present.has(id)) seenStages.delete(id);

  clear($('#counts'), STAGES.map((s) => h('span', { class: 'badge', dataset: { stage: s, count: String(d.counts[s] || 0) }, text: `${STAGE_LABELS[s]} ${d.counts[s] || 0}` })));
  $('#updated').textContent = clock(d.lastUpdated) || '–';
  const chefs = new Map(d.chefs.map((c) => [c.chefId, c]));
  const columns = STAGES.map((stage) => {
    let tickets = d.tickets.filter((t) => t.stage === stage);
    if (stage === 'Ready') tickets = tickets.sort((a, b) => String(b.stageStartedAt).localeCompare(String(a.stageStartedAt))).slice(0, READY_SHOWN);
    return h('section', { class: 'column', dataset: { stage }, 'aria-label': STAGE_LABELS[stage] },
      h('h2', {}, h('span', { text: STAGE_LABELS[stage] }), h('span', { text: String(d.counts[stage] || 0) })),
      tickets.length ? tickets.map((t) => ticket(t, chefs)) : h('p', { class: 'empty small', text: 'Nothing here' }));
  });
  clear($('#board'), columns);
  clear($('#chefs'), d.chefs.map(chefCard));
  tickTimers();
  ready();
}

function ticket(t, chefs) {
  const chef = t.chefId ? chefs.get(t.chefId) : null;
  const el = h('article', {
    class: 'ticket',
    dataset: { orderId: t.orderId, stage: t.stage, stages: (seenStages.get(t.orderId) || [t.stage]).join(','), since: t.stageStartedAt, due: t.dueAt || '' },
  },
  h('header', {}, h('span', { text: `#${shortId(t.orderId)}` }),
    t.attempt > 1 ? h('span', { class: 'badge remake', text: `Remake ${t.attempt}` }) : null,
    t.queuePosition ? h('span', { class: 'badge', text: `#${t.queuePosition} in line` }) : null),
  h('ul', {}, t.lines.map((l) => h('li', {}, `${l.quantity}× ${l.pizzaType} `, h('strong', { text: l.size }),
    l.toppings && l.toppings.length ? h('span', { class: 'muted', text: ` + ${l.toppings.join(', ')}` }) : null))),
  t.dueAt ? h('progress', { max: '1', value: '0' }) : null,
  h('div', { class: 'meta' }, h('span', { text: chef ? chef.name : (t.stage === 'Queued' ? 'waiting for a chef' : '') }), h('span', { class: 'timer' })));
  return el;
}

function tickTimers() {
  const now = Date.now();
  for (const el of document.querySelectorAll('.ticket')) {
    const since = Date.parse(el.dataset.since);
    const due = el.dataset.due ? Date.parse(el.dataset.due) : NaN;
    const timer = el.querySelector('.timer');
    if (!Number.isNaN(due)) {
      const left = due - now;
      timer.textContent = left >= 0 ? `${duration(left)} left` : `${duration(-left)} over`;
      el.classList.toggle('overdue', left < -5000);
      const bar = el.querySelector('progress');
      if (bar && !Number.isNaN(since) && due > since) bar.value = Math.min(1, Math.max(0, (now - since) / (due - since)));
    } else if (!Number.isNaN(since)) {
      timer.textContent = `${el.dataset.stage === 'Ready' ? 'ready for' : 'waiting'} ${duration(now - since)}`;
    }
  }
}

function chefCard(c) {
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    text: c.onBreak ? 'End break' : 'Start break',
    onclick: async () => {
      button.disabled = true;
      $('#error').textContent = '';
      try {
        await command('POST', `/api/kitchen/${enc(rid)}/chefs/${enc(c.chefId)}/break`, { onBreak: !c.onBreak });
      } catch (err) {
        if (!handleAuth(err)) $('#error').textContent = describe(err);
        button.disabled = false;
      }
    },
  });
  return h('div', { class: 'panel chef', dataset: { chefId: c.chefId, load: `${c.activeTickets}/${c.capacity}` } },
    h('div', { class: 'row' }, h('strong', { text: c.name }),
      h('span', { class: `badge ${c.onBreak ? 'warn' : 'ok'}`, text: c.onBreak ? 'On break' : 'Working' })),
    h('meter', { min: '0', max: String(c.capacity), value: String(c.activeTickets), high: String(Math.max(c.capacity - 0.5, 0.5)), 'aria-label': `${c.name}'s load` }),
    h('div', { class: 'row' }, h('span', { class: 'muted small', text: `${c.activeTickets} of ${c.capacity} tickets` }), button));
}

main();
