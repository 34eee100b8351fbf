import { age, h, type Child } from './dom.js';
import type { Offload } from './types.js';

const LIVE = new Set(['open', 'bound']);
/** Finished offloads stay on the page this long; the history is in GET /offloads. */
const RECENT_MS = 15 * 60_000;
const MAX_ROWS = 100;

/** What the offload is doing, or why its pod waits, in words. */
export function offloadStatus(o: Offload, now: number): string {
  switch (o.state) {
    case 'open': {
      const left = Math.max(0, Math.round((Date.parse(o.expiresAt) - now) / 1000));
      return `GPUs reserved; waiting for ${o.donor} to report the pod on ${o.node} (reservation expires in ${left} s)`;
    }
    case 'bound':
      if (o.remotePhase === undefined || o.remotePhase === '' || o.remotePhase === 'Pending')
        return `Pending on ${o.donor}: the pod is bound to ${o.node}, its containers are not running yet`;
      return `${o.remotePhase} on ${o.donor}`;
    case 'released':
      return `Released: ${o.reason ?? 'by its origin'}`;
    case 'expired':
      return `Expired: ${o.reason ?? 'the donor never reported the pod'}`;
    case 'ended':
      return `Ended: ${o.reason ?? o.remotePhase ?? 'the pod is gone'}`;
  }
}

function phase(o: Offload): string {
  if (o.state === 'open') return 'Reserved';
  if (o.state === 'bound') return o.remotePhase || 'Pending';
  return o.state[0]!.toUpperCase() + o.state.slice(1);
}

export function visibleOffloads(all: readonly Offload[], now: number): Offload[] {
  const shown = all.filter(
    (o) => LIVE.has(o.state) || now - Date.parse(o.endedAt ?? o.createdAt) < RECENT_MS,
  );
  // Live ones first, then the newest.
  shown.sort(
    (a, b) =>
      Number(LIVE.has(b.state)) - Number(LIVE.has(a.state)) ||
      Date.parse(b.createdAt) - Date.parse(a.createdAt),
  );
  return shown.slice(0, MAX_ROWS);
}

export function renderOffloads(all: readonly Offload[], now: number): Child {
  const rows = visibleOffloads(all, now);
  const live = all.filter((o) => LIVE.has(o.state)).length;
  if (rows.length === 0) {
    return h(
      'p',
      { class: 'empty' },
      'Nothing is offloaded, and nothing ended in the last 15 minutes.',
    );
  }
  return [
    h('p', { class: 'muted' }, `${live} live; finished ones are shown for 15 minutes.`),
    h(
      'div',
      { class: 'card flush' },
      h(
        'table',
        { class: 'grid stack' },
        h('caption', { class: 'sr-only' }, 'Offloaded pods'),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Origin pod'),
            h('th', { scope: 'col' }, 'Donor node'),
            h('th', { scope: 'col', class: 'num' }, 'GPUs'),
            h('th', { scope: 'col' }, 'Phase'),
            h('th', { scope: 'col', class: 'num' }, 'Age'),
            h('th', { scope: 'col' }, 'Status'),
          ),
        ),
        h(
          'tbody',
          null,
          rows.map((o) =>
            h(
              'tr',
              {
                'data-offload': o.id,
                'data-pod': `${o.pod.namespace}/${o.pod.name}`,
                class: LIVE.has(o.state) ? 'live' : 'done',
              },
              h(
                'th',
                { scope: 'row', 'data-label': 'Origin pod' },
                h('span', { class: 'pod' }, `${o.pod.namespace}/${o.pod.name}`),
                h('span', { class: 'res' }, o.origin),
              ),
              h('td', { 'data-label': 'Donor node' }, o.donor, h('span', { class: 'res' }, o.node)),
              h(
                'td',
                { class: 'num', 'data-label': 'GPUs' },
                o.gpus,
                h('span', { class: 'res' }, o.resource),
              ),
              h(
                'td',
                { 'data-label': 'Phase' },
                h('span', { class: `badge phase-${phase(o).toLowerCase()}` }, phase(o)),
              ),
              h('td', { class: 'num', 'data-label': 'Age' }, age(o.createdAt, now)),
              h('td', { class: 'why', 'data-label': 'Status' }, offloadStatus(o, now)),
            ),
          ),
        ),
      ),
    ),
  ];
}
