// The city map, drawn on a <canvas> from the platform's own data: the
// restaurants' locations, the delivery location and the drivers' positions,
// over a street grid generated around them. No tiles, no outside requests.
//
// The grid is the simulator's (cmd/pizza/sim.go): east-west streets every
// GRID_LAT degrees, north-south avenues every GRID_LON degrees, anchored at
// 0°, so simulated drivers visibly drive along these streets.
//
// For tests and assistive technology the canvas carries what it shows as
// data attributes: data-restaurants, data-destination ("lat,lon"), and for
// the followed driver data-driver-id, data-driver-lat, data-driver-lon and
// data-driver-fixes (how many distinct positions it has shown), and
// data-moves (how many times any driver's marker moved).

export const GRID_LAT = 0.0018;
export const GRID_LON = 0.0025;
const M_PER_DEG = 111320;
const STREETS = ['Alder', 'Burnside', 'Couch', 'Davis', 'Everett', 'Flanders', 'Glisan', 'Hoyt', 'Irving', 'Johnson',
  'Kearney', 'Lovejoy', 'Marshall', 'Northrup', 'Overton', 'Pettygrove', 'Quimby', 'Raleigh', 'Savier', 'Thurman'];

const mod = (a, n) => ((a % n) + n) % n;
export const streetName = (row) => `${STREETS[mod(row, STREETS.length)]} St`;
export function avenueName(col) {
  const n = mod(col, 90) + 1;
  const suffix = n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th';
  return `${n}${suffix} Ave`;
}

// distance in metres between two {latitude, longitude}.
export function distance(a, b) {
  const lat = ((a.latitude + b.latitude) / 2) * (Math.PI / 180);
  const dx = (b.longitude - a.longitude) * M_PER_DEG * Math.cos(lat);
  const dy = (b.latitude - a.latitude) * M_PER_DEG;
  return Math.hypot(dx, dy);
}

// snapToStreet moves a point onto the nearest street or avenue.
export function snapToStreet(p) {
  const lat = Math.round(p.latitude / GRID_LAT) * GRID_LAT;
  const lon = Math.round(p.longitude / GRID_LON) * GRID_LON;
  const cos = Math.cos((p.latitude * Math.PI) / 180);
  const toStreet = Math.abs(p.latitude - lat) * M_PER_DEG;
  const toAvenue = Math.abs(p.longitude - lon) * M_PER_DEG * cos;
  return toStreet <= toAvenue ? { latitude: round6(lat), longitude: round6(p.longitude) } : { latitude: round6(p.latitude), longitude: round6(lon) };
}

// addressOf names a point on the grid like a street address.
export function addressOf(p) {
  const row = Math.round(p.latitude / GRID_LAT);
  const colF = p.longitude / GRID_LON;
  const onStreet = Math.abs(p.latitude / GRID_LAT - row) < 1e-6;
  if (onStreet) {
    const col = Math.floor(colF);
    const number = 100 * (mod(col, 90) + 1) + Math.min(98, Math.floor((colF - col) * 98)) + 1;
    return `${number} ${streetName(row)}`;
  }
  const col = Math.round(colF);
  const rowF = p.latitude / GRID_LAT;
  const r0 = Math.floor(rowF);
  const number = 100 * (mod(r0, 90) + 1) + Math.min(98, Math.floor((rowF - r0) * 98)) + 1;
  return `${number} ${avenueName(col)}`;
}

const round6 = (x) => Math.round(x * 1e6) / 1e6;

export class CityMap {
  constructor(canvas, { onPick, minSpanMetres = 1400 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.restaurants = [];
    this.highlight = null; // restaurant id
    this.destination = null;
    this.drivers = new Map(); // id → {id, name, status, location, followed, trail}
    this.minSpan = minSpanMetres;
    this.pending = false;
    this.fixes = 0;
    this.moves = 0;
    if (onPick) {
      canvas.classList.add('pick');
      canvas.addEventListener('click', (ev) => {
        const r = canvas.getBoundingClientRect();
        const p = this.toGeo(ev.clientX - r.left, ev.clientY - r.top);
        if (p) onPick(snapToStreet(p));
      });
    }
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => this.redraw()).observe(canvas);
    this.redraw();
  }

  setRestaurants(list, highlight = null) {
    this.restaurants = list || [];
    this.highlight = highlight;
    this.canvas.dataset.restaurants = String(this.restaurants.length);
    this.redraw();
  }

  setDestination(p) {
    this.destination = p || null;
    if (p) this.canvas.dataset.destination = `${p.latitude},${p.longitude}`;
    else delete this.canvas.dataset.destination;
    this.redraw();
  }

  // setDriver adds or updates a driver; followed drivers get a trail and
  // their position in the canvas's data attributes.
  setDriver(d, { followed = false } = {}) {
    const prev = this.drivers.get(d.driverId);
    const entry = prev || { id: d.driverId, trail: [] };
    entry.name = d.name;
    entry.status = d.status;
    entry.followed = followed;
    const loc = d.location;
    if (loc && Number.isFinite(loc.latitude) && Number.isFinite(loc.longitude)) {
      const last = entry.trail[entry.trail.length - 1];
      if (!last || last.latitude !== loc.latitude || last.longitude !== loc.longitude) {
        if (last) {
          entry.heading = bearing(last, loc);
          this.moves++;
          this.canvas.dataset.moves = String(this.moves);
        }
        entry.trail.push({ latitude: loc.latitude, longitude: loc.longitude });
        if (entry.trail.length > 400) entry.trail.shift();
        if (followed) this.fixes++;
      }
      entry.location = loc;
    }
    this.drivers.set(d.driverId, entry);
    if (followed) {
      const c = this.canvas.dataset;
      c.driverId = d.driverId;
      if (entry.location) {
        c.driverLat = String(entry.location.latitude);
        c.driverLon = String(entry.location.longitude);
      }
      c.driverFixes = String(this.fixes);
    }
    this.redraw();
  }

  keepDrivers(ids) {
    for (const id of [...this.drivers.keys()]) if (!ids.includes(id)) this.drivers.delete(id);
    this.redraw();
  }

  redraw() {
    if (this.pending) return;
    this.pending = true;
    const run = () => {
      this.pending = false;
      this.draw();
    };
    // Animation frames stop in hidden tabs; a timer keeps the data fresh there.
    if (document.hidden) setTimeout(run, 100);
    else requestAnimationFrame(run);
  }

  // The view frames the restaurant in focus (or all), the destination and
  // the drivers, with at least minSpan metres across.
  view(w, h) {
    const pts = [];
    const focus = this.restaurants.filter((r) => !this.highlight || r.id === this.highlight);
    for (const r of focus) pts.push(r.location);
    if (this.destination) pts.push(this.destination);
    for (const d of this.drivers.values()) if (d.location && (d.followed || !this.destination)) pts.push(d.location);
    if (!pts.length) pts.push({ latitude: 45.52, longitude: -122.67 });
    let minLat = Infinity;
    let maxLat = -Infinity;
    let minLon = Infinity;
    let maxLon = -Infinity;
    for (const p of pts) {
      minLat = Math.min(minLat, p.latitude);
      maxLat = Math.max(maxLat, p.latitude);
      minLon = Math.min(minLon, p.longitude);
      maxLon = Math.max(maxLon, p.longitude);
    }
    const lat0 = (minLat + maxLat) / 2;
    const lon0 = (minLon + maxLon) / 2;
    const cos = Math.cos((lat0 * Math.PI) / 180);
    const spanX = Math.max((maxLon - minLon) * M_PER_DEG * cos * 1.3, this.minSpan);
    const spanY = Math.max((maxLat - minLat) * M_PER_DEG * 1.3, this.minSpan);
    const scale = Math.min(w / spanX, h / spanY); // pixels per metre
    return { lat0, lon0, cos, scale, w, h };
  }

  toXY(v, p) {
    return [v.w / 2 + (p.longitude - v.lon0) * M_PER_DEG * v.cos * v.scale, v.h / 2 - (p.latitude - v.lat0) * M_PER_DEG * v.scale];
  }

  toGeo(x, y) {
    if (!this.lastView) return null;
    const v = this.lastView;
    return { latitude: v.lat0 - (y - v.h / 2) / (M_PER_DEG * v.scale), longitude: v.lon0 + (x - v.w / 2) / (M_PER_DEG * v.cos * v.scale) };
  }

  draw() {
    const c = this.canvas;
    const rect = c.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width));
    const h = Math.max(1, Math.round(rect.height));
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = this.ctx;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const v = this.view(w, h);
    this.lastView = v;

    g.fillStyle = '#f1ede3';
    g.fillRect(0, 0, w, h);
    this.drawStreets(g, v);
    this.drawTrails(g, v);
    for (const r of this.restaurants) this.drawRestaurant(g, v, r);
    if (this.destination) this.drawDestination(g, v, this.destination);
    const drivers = [...this.drivers.values()].sort((a, b) => Number(a.followed) - Number(b.followed));
    for (const d of drivers) this.drawDriver(g, v, d);
    this.drawScale(g, v);
  }

  drawStreets(g, v) {
    const topLeft = this.toGeoIn(v, 0, 0);
    const bottomRight = this.toGeoIn(v, v.w, v.h);
    const r0 = Math.floor(bottomRight.latitude / GRID_LAT) - 1;
    const r1 = Math.ceil(topLeft.latitude / GRID_LAT) + 1;
    const c0 = Math.floor(topLeft.longitude / GRID_LON) - 1;
    const c1 = Math.ceil(bottomRight.longitude / GRID_LON) + 1;
    const blockPx = GRID_LAT * M_PER_DEG * v.scale;
    if (r1 - r0 > 400 || c1 - c0 > 400) return;
    const minor = Math.max(1.5, Math.min(6, blockPx / 14));
    const major = minor * 1.8;
    const pass = (width, color, onlyMajor) => {
      g.strokeStyle = color;
      for (let r = r0; r <= r1; r++) {
        const isMajor = mod(r, 5) === 0;
        if (onlyMajor && !isMajor) continue;
        const y = this.toXY(v, { latitude: r * GRID_LAT, longitude: v.lon0 })[1];
        g.lineWidth = isMajor ? major + width : minor + width;
        g.beginPath();
        g.moveTo(0, y);
        g.lineTo(v.w, y);
        g.stroke();
      }
      for (let col = c0; col <= c1; col++) {
        const isMajor = mod(col, 5) === 0;
        if (onlyMajor && !isMajor) continue;
        const x = this.toXY(v, { latitude: v.lat0, longitude: col * GRID_LON })[0];
        g.lineWidth = isMajor ? major + width : minor + width;
        g.beginPath();
        g.moveTo(x, 0);
        g.lineTo(x, v.h);
        g.stroke();
      }
    };
    pass(2, '#d8d1c2', false);
    pass(0, '#ffffff', false);
    pass(0, '#fbe7b5', true);
    if (blockPx > 22) {
      g.fillStyle = '#7a7263';
      g.font = '11px system-ui, sans-serif';
      g.textBaseline = 'bottom';
      for (let r = r0; r <= r1; r++) {
        if (mod(r, 5) !== 0) continue;
        const y = this.toXY(v, { latitude: r * GRID_LAT, longitude: v.lon0 })[1];
        g.fillText(streetName(r), 6, y - major / 2 - 1);
      }
      for (let col = c0; col <= c1; col++) {
        if (mod(col, 5) !== 0) continue;
        const x = this.toXY(v, { latitude: v.lat0, longitude: col * GRID_LON })[0];
        g.save();
        g.translate(x - major / 2 - 2, v.h - 6);
        g.rotate(-Math.PI / 2);
        g.fillText(avenueName(col), 0, 0);
        g.restore();
      }
    }
  }

  toGeoIn(v, x, y) {
    return { latitude: v.lat0 - (y - v.h / 2) / (M_PER_DEG * v.scale), longitude: v.lon0 + (x - v.w / 2) / (M_PER_DEG * v.cos * v.scale) };
  }

  drawTrails(g, v) {
    for (const d of this.drivers.values()) {
      if (!d.followed || d.trail.length < 2) continue;
      g.strokeStyle = 'rgba(29, 78, 216, 0.55)';
      g.lineWidth = 4;
      g.lineJoin = 'round';
      g.setLineDash([8, 6]);
      g.beginPath();
      d.trail.forEach((p, i) => {
        const [x, y] = this.toXY(v, p);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
      g.setLineDash([]);
    }
  }

  drawRestaurant(g, v, r) {
    const [x, y] = this.toXY(v, r.location);
    const big = !this.highlight || r.id === this.highlight;
    const size = big ? 11 : 8;
    g.fillStyle = big ? '#c0392b' : '#d98880';
    g.strokeStyle = '#ffffff';
    g.lineWidth = 3;
    g.beginPath();
    g.moveTo(x, y - size);
    g.lineTo(x + size, y + size * 0.8);
    g.lineTo(x - size, y + size * 0.8);
    g.closePath();
    g.stroke();
    g.fill();
    g.fillStyle = '#7f1d1d';
    g.font = `${big ? 'bold ' : ''}12px system-ui, sans-serif`;
    g.textAlign = 'center';
    g.textBaseline = 'top';
    label(g, String(r.name || r.id).replace(/^Awesome Pizza\s*/, ''), x, y + size + 4);
    g.textAlign = 'start';
  }

  drawDestination(g, v, p) {
    const [x, y] = this.toXY(v, p);
    g.fillStyle = '#15803d';
    g.strokeStyle = '#ffffff';
    g.lineWidth = 3;
    g.beginPath();
    g.arc(x, y - 14, 9, Math.PI * 0.85, Math.PI * 0.15);
    g.lineTo(x, y);
    g.closePath();
    g.stroke();
    g.fill();
    g.fillStyle = '#ffffff';
    g.beginPath();
    g.arc(x, y - 14, 3.5, 0, Math.PI * 2);
    g.fill();
  }

  drawDriver(g, v, d) {
    if (!d.location) return;
    const [x, y] = this.toXY(v, d.location);
    const busy = d.followed || d.status === 'Busy';
    g.fillStyle = busy ? '#1d4ed8' : '#64748b';
    g.strokeStyle = '#ffffff';
    g.lineWidth = 3;
    g.beginPath();
    g.arc(x, y, d.followed ? 9 : 7, 0, Math.PI * 2);
    g.stroke();
    g.fill();
    if (Number.isFinite(d.heading)) {
      const a = (d.heading * Math.PI) / 180;
      g.fillStyle = '#ffffff';
      g.beginPath();
      g.moveTo(x + Math.sin(a) * 6, y - Math.cos(a) * 6);
      g.lineTo(x + Math.sin(a + 2.4) * 4, y - Math.cos(a + 2.4) * 4);
      g.lineTo(x + Math.sin(a - 2.4) * 4, y - Math.cos(a - 2.4) * 4);
      g.closePath();
      g.fill();
    }
    if (d.name) {
      g.fillStyle = '#1e3a8a';
      g.font = '11px system-ui, sans-serif';
      g.textBaseline = 'middle';
      label(g, d.name, x + 13, y);
    }
  }

  drawScale(g, v) {
    const steps = [50, 100, 200, 500, 1000, 2000, 5000];
    const target = v.w / 5 / v.scale;
    const m = steps.reduce((best, s) => (Math.abs(s - target) < Math.abs(best - target) ? s : best), steps[0]);
    const px = m * v.scale;
    const x = 10;
    const y = v.h - 12;
    g.strokeStyle = '#374151';
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(x, y - 5);
    g.lineTo(x, y);
    g.lineTo(x + px, y);
    g.lineTo(x + px, y - 5);
    g.stroke();
    g.fillStyle = '#374151';
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'bottom';
    g.fillText(m >= 1000 ? `${m / 1000} km` : `${m} m`, x + 4, y - 3);
  }
}

function label(g, text, x, y) {
  g.save();
  g.lineWidth = 3;
  g.strokeStyle = 'rgba(255,255,255,0.9)';
  g.strokeText(text, x, y);
  g.restore();
  g.fillText(text, x, y);
}

function bearing(a, b) {
  const lat = ((a.latitude + b.latitude) / 2) * (Math.PI / 180);
  const dx = (b.longitude - a.longitude) * Math.cos(lat);
  const dy = b.latitude - a.latitude;
  return ((Math.atan2(dx, dy) * 180) / Math.PI + 360) % 360;
}
