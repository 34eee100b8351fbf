import { h, svg, type Child } from './dom.js';

/**
 * GPU-hours by peering, shown only on a broker that has the usage ledger (GET /usage). The
 * rows are read loosely: an origin, a donor, GPU-seconds (or GPU-hours) and, when the answer
 * is split by time, the start of each bucket.
 */
interface UsageRow {
  origin?: string;
  donor?: string;
  gpuSeconds?: number;
  gpuHours?: number;
  from?: string;
  start?: string;
  bucket?: string;
}

export function usageQuery(now: number): string {
  const from = new Date(now - 7 * 24 * 3_600_000).toISOString();
  return `usage?from=${encodeURIComponent(from)}&by=origin,donor`;
}

function rowsOf(body: unknown): UsageRow[] {
  if (Array.isArray(body)) return body as UsageRow[];
  const o = body as { rows?: unknown; usage?: unknown; items?: unknown } | undefined;
  const list = o?.rows ?? o?.usage ?? o?.items;
  return Array.isArray(list) ? (list as UsageRow[]) : [];
}

const hoursOf = (r: UsageRow): number => r.gpuHours ?? (r.gpuSeconds ?? 0) / 3600;

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
    const t = r.from ?? r.start ?? r.bucket;
    if (t !== undefined) p.series.push([Date.parse(t), hoursOf(r)]);
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
            p.series.sort((a, b) => a[0] - b[0]);
            return h(
              'tr',
              { 'data-usage': `${p.origin}/${p.donor}` },
              h('th', { scope: 'row', 'data-label': 'Origin → donor' }, key),
              h('td', { class: 'num', 'data-label': 'GPU-hours (7 d)' }, p.hours.toFixed(1)),
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
