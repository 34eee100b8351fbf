import { age, h, type Child } from './dom.js';
import type { Peering } from './types.js';

const perResource = (m: Record<string, number>): string => {
  const entries = Object.entries(m).filter(([, n]) => n > 0);
  if (entries.length === 0) return '0';
  return entries
    .map(([r, n]) => (entries.length === 1 && r === 'nvidia.com/gpu' ? String(n) : `${n} ${r}`))
    .join(', ');
};

export function renderPeerings(peerings: readonly Peering[], now: number): Child {
  if (peerings.length === 0) {
    return h('p', { class: 'empty' }, 'No peerings. Let an origin use a donor with spillctl peer.');
  }
  return h(
    'div',
    { class: 'card flush' },
    h(
      'table',
      { class: 'grid stack' },
      h('caption', { class: 'sr-only' }, 'Peerings'),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'Origin → donor'),
          h('th', { scope: 'col' }, 'Donor'),
          h('th', { scope: 'col', class: 'num' }, 'Limit'),
          h('th', { scope: 'col' }, 'Products'),
          h('th', { scope: 'col', class: 'num' }, 'Lending now'),
          h('th', { scope: 'col', class: 'num' }, 'In use'),
          h('th', { scope: 'col' }, 'Tenant namespace'),
          h('th', { scope: 'col', class: 'num' }, 'Age'),
        ),
      ),
      h(
        'tbody',
        null,
        peerings.map((p) =>
          h(
            'tr',
            { 'data-peering': `${p.origin}/${p.donor}` },
            h('th', { scope: 'row', 'data-label': 'Origin → donor' }, `${p.origin} → ${p.donor}`),
            h(
              'td',
              { 'data-label': 'Donor' },
              h('span', { class: `badge state-${p.donorState.toLowerCase()}` }, p.donorState),
              p.deletingSince !== undefined &&
                h('span', { class: 'badge state-draining' }, 'Draining'),
            ),
            h(
              'td',
              { class: 'num', 'data-label': 'Limit' },
              p.maxGpus === 0 ? 'donor policy' : p.maxGpus,
            ),
            h(
              'td',
              { 'data-label': 'Products' },
              p.gpuProducts.length === 0 ? 'all' : p.gpuProducts.join(', '),
            ),
            h('td', { class: 'num lending', 'data-label': 'Lending now' }, perResource(p.lendable)),
            h('td', { class: 'num inuse', 'data-label': 'In use' }, perResource(p.inUse)),
            h('td', { 'data-label': 'Tenant namespace' }, h('code', null, p.tenantNamespace)),
            h('td', { class: 'num', 'data-label': 'Age' }, age(p.createdAt, now)),
          ),
        ),
      ),
    ),
  );
}
