import { h, svg, type Child } from './dom.js';

/**
 * GPU-hours by peering over the last 7 days, from the usage ledger (GET /usage by origin and
 * donor, in 6-hour buckets: each row a peering's GPU-hours in the bucket from `start`). Shown
 * only on a broker that has the ledger.
 */
interface UsageRow {
  start?: string;
  origin?: string;
  donor?: string;
  gpuSeconds: number;
  gpuHours: number;
}

/** The window and bucket the page shows. */
const WINDOW_MS = 7 * 24 * 3_600_000;
const STEP = '6h';

export function usageQuery(now: number): string {
  const from = new Date(now - WINDOW_MS).toISOString();
  return `usage?from=${encodeURIComponent(from)}&by=origin,donor&step=${STEP}`;
}

function rowsOf(body: unknown): UsageRow[] {
  const rows = (body as { rows?: unknown } | undefined)?.rows;
  return Array.isArray(rows) ? (rows as UsageRow[]) : [];
}

const hoursOf = (r: UsageRow): number => r.gpuSeconds / 3600;

/** 0.042, 1.35, 12.4, 1280: small amounts keep their digits. */
function formatHours(hours: number): string {
  if (hours < 1) return hours.toFixed(3);
  if (hours < 10) return hours.toFixed(2);
  return hours.toFixed(1);
}

function sparkline(points: readonly [number, number][]): SVGElement {
  const w = 160;
  const hgt = 32;
  const el = svg('svg', {
    viewBox: `0 0 ${w} ${hgt}`,
    width: w,
    height: hgt,
    'aria-hidden': 'true',
    class: 'spark',
  });
  const max = Math.max(...points.map(([, v]) => v), 1e-9);
  const step = points.length > 1 ? w / (points.length - 1) : 0;
  const d = points
    .map(
      ([, v], i) =>
        `${i === 0 ? 'M' : 'L'}${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`,
    )
    .join(' ');
  el.appendChild(svg('path', { d, class: 'spark-line' }));
  return el;
}

/** The series with a zero for every bucket of the report in which the peering lent nothing. */
function filled(series: readonly [number, number][], body: unknown): [number, number][] {
  const r = body as { from?: string; to?: string; stepMs?: number } | undefined;
  const from = Date.parse(r?.from ?? '');
  const to = Math.min(Date.parse(r?.to ?? ''), Date.now());
  const step = r?.stepMs ?? 0;
  const byStart = new Map(series.map(([t, v]) => [t, v]));
  if (!(step > 0) || Number.isNaN(from) || Number.isNaN(to)) {
    return [...series].sort((a, b) => a[0] - b[0]);
  }
  const out: [number, number][] = [];
  for (let t = from; t < to; t += step) out.push([t, byStart.get(t) ?? 0]);
  return out;
}

export function renderUsage(body: unknown): Child {
  const rows = rowsOf(body);
  const byPeering = new Map<
    string,
    { origin: string; donor: string; hours: number; series: [number, number][] }
  >();
  for (const r of rows) {
    const key = `${r.origin ?? '?'} → ${r.donor ?? '?'}`;
    let p = byPeering.get(key);
    if (!p) {
      p = { origin: r.origin ?? '?', donor: r.donor ?? '?', hours: 0, series: [] };
      byPeering.set(key, p);
    }
    p.hours += hoursOf(r);
    if (r.start !== undefined) p.series.push([Date.parse(r.start), hoursOf(r)]);
  }
  if (byPeering.size === 0)
    return h('p', { class: 'empty' }, 'No GPU-hours were lent in the last 7 days.');
  const max = Math.max(...[...byPeering.values()].map((p) => p.hours), 1e-9);
  return h(
    'div',
    { class: 'card flush' },
    h(
      'table',
      { class: 'grid stack' },
      h('caption', { class: 'sr-only' }, 'GPU-hours lent by peering, last 7 days'),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'Origin → donor'),
          h('th', { scope: 'col', class: 'num' }, 'GPU-hours (7 d)'),
          h('th', { scope: 'col' }, 'Share'),
          h('th', { scope: 'col' }, 'Over time'),
        ),
      ),
      h(
        'tbody',
        null,
        [...byPeering.entries()]
          .sort((a, b) => b[1].hours - a[1].hours)
          .map(([key, p]) => {
            const share = h('div', { class: 'bar' }, h('span', { class: 'seg inUse' }));
            (share.firstChild as HTMLElement).style.flexGrow = String(p.hours);
            const rest = h('span', { class: 'seg empty' });
            rest.style.flexGrow = String(max - p.hours);
            share.appendChild(rest);
            p.series = filled(p.series, body);
            return h(
              'tr',
              { 'data-usage': `${p.origin}/${p.donor}` },
              h('th', { scope: 'row', 'data-label': 'Origin → donor' }, key),
              h('td', { class: 'num', 'data-label': 'GPU-hours (7 d)' }, formatHours(p.hours)),
              h('td', { 'data-label': 'Share' }, share),
              h(
                'td',
                { 'data-label': 'Over time' },
                p.series.length > 1 ? sparkline(p.series) : '—',
              ),
            );
          }),
      ),
    ),
  );
}
