import { h, plural, type Child } from './dom.js';
import type { ClusterDetail, Offload } from './types.js';

/**
 * Every GPU of a node is in exactly one state, so the four add up to its allocatable GPUs:
 * free (lendable and idle), reserved (promised by an open reservation, pod not yet seen),
 * in use (a pod holds it: the donor's own or a guest) and not lent (idle, but the node is
 * NotReady, cordoned, outside the donor policy, or the donor is cordoned).
 */
export interface GpuCounts {
  free: number;
  reserved: number;
  inUse: number;
  notLent: number;
  total: number;
}

export interface NodeRow {
  name: string;
  product: string;
  memoryMiB: number;
  resource: string;
  counts: GpuCounts;
  reason?: string;
}

export interface ProductRow {
  product: string;
  memoryMiB: number;
  resource: string;
  counts: GpuCounts;
  nodes: number;
}

export interface DonorModel {
  id: string;
  state: string;
  cordoned: boolean;
  products: ProductRow[];
  nodes: NodeRow[];
  counts: GpuCounts;
}

const zero = (): GpuCounts => ({ free: 0, reserved: 0, inUse: 0, notLent: 0, total: 0 });

function add(to: GpuCounts, c: GpuCounts): void {
  to.free += c.free;
  to.reserved += c.reserved;
  to.inUse += c.inUse;
  to.notLent += c.notLent;
  to.total += c.total;
}

/**
 * Donors → nodes → GPUs, from GET /clusters/{id} and the open reservations. An open
 * reservation counts as reserved until the donor's report lists its pod on the node; the
 * broker computes free GPUs the same way, so the free column matches GET /capacity.
 */
export function fleetModel(
  donors: readonly ClusterDetail[],
  offloads: readonly Offload[],
): DonorModel[] {
  const open = offloads.filter((o) => o.state === 'open');
  return donors.map((d) => {
    const nodes: NodeRow[] = [];
    for (const n of d.nodes) {
      for (const [resource, amount] of Object.entries(n.gpus)) {
        const reportedFree = Math.max(0, Math.min(amount.free, amount.allocatable));
        let reserved = 0;
        for (const r of open) {
          if (
            r.donor === d.id &&
            r.node === n.name &&
            r.resource === resource &&
            !n.offloadedPodUids.includes(r.pod.uid)
          )
            reserved += r.gpus;
        }
        reserved = Math.min(reserved, reportedFree);
        const idle = reportedFree - reserved;
        const lent = n.eligible && !d.policy.cordoned;
        const reason = !lent ? (n.reason ?? 'donor cordoned') : undefined;
        nodes.push({
          name: n.name,
          product: n.gpuProduct,
          memoryMiB: n.gpuMemoryMiB,
          resource,
          counts: {
            free: lent ? idle : 0,
            reserved,
            inUse: Math.max(0, amount.allocatable - reportedFree),
            notLent: lent ? 0 : idle,
            total: amount.allocatable,
          },
          ...(reason === undefined ? {} : { reason }),
        });
      }
    }
    const byProduct = new Map<string, ProductRow>();
    const counts = zero();
    for (const n of nodes) {
      const key = `${n.product}\u0000${n.resource}`;
      let row = byProduct.get(key);
      if (!row) {
        row = { product: n.product, memoryMiB: 0, resource: n.resource, counts: zero(), nodes: 0 };
        byProduct.set(key, row);
      }
      row.memoryMiB = Math.max(row.memoryMiB, n.memoryMiB);
      row.nodes++;
      add(row.counts, n.counts);
      add(counts, n.counts);
    }
    const products = [...byProduct.values()].sort(
      (a, b) =>
        a.product.localeCompare(b.product, 'en') || a.resource.localeCompare(b.resource, 'en'),
    );
    nodes.sort(
      (a, b) => a.name.localeCompare(b.name, 'en') || a.resource.localeCompare(b.resource, 'en'),
    );
    return { id: d.id, state: d.state, cordoned: d.policy.cordoned, products, nodes, counts };
  });
}

export function fleetTotals(model: readonly DonorModel[]): GpuCounts {
  const t = zero();
  for (const d of model) add(t, d.counts);
  return t;
}

const KINDS = [
  ['free', 'Free'],
  ['reserved', 'Reserved'],
  ['inUse', 'In use'],
  ['notLent', 'Not lent'],
] as const;

function describe(c: GpuCounts): string {
  return `${plural(c.total, 'GPU')}: ${c.free} free, ${c.reserved} reserved, ${c.inUse} in use, ${c.notLent} not lent`;
}

/** A stacked bar; its numbers are also in the table beside it, so it is an image to readers. */
export function bar(c: GpuCounts): HTMLElement {
  const el = h('div', { class: 'bar', role: 'img', 'aria-label': describe(c) });
  for (const [k] of KINDS) {
    if (c[k] === 0) continue;
    const seg = h('span', { class: `seg ${k}` });
    // CSSOM, not a style attribute: the CSP forbids inline styles, not this.
    seg.style.flexGrow = String(c[k]);
    el.appendChild(seg);
  }
  return el;
}

export function renderTotals(t: GpuCounts): Child {
  return [
    ...KINDS.map(([k, label]) =>
      h(
        'div',
        { class: `tile ${k}`, 'data-total': k },
        h('span', { class: 'n' }, t[k]),
        h('span', { class: 'l' }, label),
      ),
    ),
    h(
      'div',
      { class: 'tile all', 'data-total': 'total' },
      h('span', { class: 'n' }, t.total),
      h('span', { class: 'l' }, 'GPUs'),
    ),
    h(
      'div',
      { class: 'legend', 'aria-hidden': 'true' },
      ...KINDS.map(([k, label]) => h('span', { class: `key ${k}` }, label)),
    ),
  ];
}

const countCells = (c: GpuCounts): Child =>
  KINDS.map(([k, label]) => h('td', { class: `num ${k}`, 'data-label': label }, c[k]));

const memory = (mib: number): string => (mib > 0 ? `${Math.round(mib / 1024)} GiB` : '—');

function badge(state: string, cordoned: boolean): Child {
  return [
    h('span', { class: `badge state-${state.toLowerCase()}` }, state),
    cordoned && h('span', { class: 'badge state-cordoned' }, 'Cordoned'),
  ];
}

export function renderFleet(model: readonly DonorModel[]): Child {
  if (model.length === 0) {
    return h(
      'p',
      { class: 'empty' },
      'No donor has joined yet. Join one with spillctl join-token create --role donor.',
    );
  }
  return model.map((d) =>
    h(
      'article',
      { class: 'card donor', 'data-donor': d.id, 'aria-labelledby': `donor-${d.id}` },
      h(
        'header',
        { class: 'donor-head' },
        h('h3', { id: `donor-${d.id}` }, d.id),
        badge(d.state, d.cordoned),
        h(
          'span',
          { class: 'muted' },
          `${plural(d.counts.total, 'GPU')} on ${plural(new Set(d.nodes.map((n) => n.name)).size, 'node')}`,
        ),
      ),
      bar(d.counts),
      d.products.length === 0
        ? h('p', { class: 'empty' }, 'This donor reports no GPU nodes.')
        : h(
            'table',
            { class: 'grid stack' },
            h('caption', { class: 'sr-only' }, `GPUs of ${d.id} by product`),
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                h('th', { scope: 'col' }, 'Product'),
                h('th', { scope: 'col' }, 'Memory'),
                ...KINDS.map(([, l]) => h('th', { scope: 'col', class: 'num' }, l)),
                h('th', { scope: 'col', class: 'num' }, 'Total'),
              ),
            ),
            h(
              'tbody',
              null,
              d.products.map((p) =>
                h(
                  'tr',
                  { 'data-product': p.product, 'data-resource': p.resource },
                  h(
                    'th',
                    { scope: 'row', 'data-label': 'Product' },
                    p.product || 'unknown product',
                    h('span', { class: 'res' }, p.resource),
                  ),
                  h('td', { 'data-label': 'Memory' }, memory(p.memoryMiB)),
                  countCells(p.counts),
                  h('td', { class: 'num total', 'data-label': 'Total' }, p.counts.total),
                ),
              ),
            ),
          ),
      d.nodes.length > 0 &&
        h(
          'details',
          { class: 'nodes', 'data-key': `nodes-${d.id}` },
          h('summary', null, `Nodes (${new Set(d.nodes.map((n) => n.name)).size})`),
          h(
            'table',
            { class: 'grid stack' },
            h('caption', { class: 'sr-only' }, `Nodes of ${d.id}`),
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                h('th', { scope: 'col' }, 'Node'),
                h('th', { scope: 'col' }, 'Product'),
                ...KINDS.map(([, l]) => h('th', { scope: 'col', class: 'num' }, l)),
                h('th', { scope: 'col' }, 'GPUs'),
                h('th', { scope: 'col' }, 'Not lent because'),
              ),
            ),
            h(
              'tbody',
              null,
              d.nodes.map((n) =>
                h(
                  'tr',
                  { 'data-node': n.name, 'data-resource': n.resource },
                  h('th', { scope: 'row', 'data-label': 'Node' }, n.name),
                  h(
                    'td',
                    { 'data-label': 'Product' },
                    n.product || 'unknown',
                    h('span', { class: 'res' }, n.resource),
                  ),
                  countCells(n.counts),
                  h('td', { class: 'wide', 'data-label': 'GPUs' }, bar(n.counts)),
                  h('td', { class: 'why', 'data-label': 'Not lent because' }, n.reason ?? ''),
                ),
              ),
            ),
          ),
        ),
    ),
  );
}
