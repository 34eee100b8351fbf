import { ApiError, type Api } from './api.js';
import { byId, h, replace, type Child } from './dom.js';
import type { SimulateResult, Verdict } from './types.js';

const PRODUCT_LABEL = 'nvidia.com/gpu.product';

/** Keeps a <select>'s options in step with `values`, leaving the user's choice alone. */
/** A text field of the form ('' when absent). */
function field(data: FormData, name: string): string {
  const v = data.get(name);
  return typeof v === 'string' ? v : '';
}

export function setOptions(select: HTMLSelectElement, values: readonly [string, string][]): void {
  const want = JSON.stringify(values);
  if (select.dataset.options === want) return;
  const chosen = select.value;
  select.replaceChildren(...values.map(([value, label]) => h('option', { value }, label)));
  select.dataset.options = want;
  if (values.some(([v]) => v === chosen)) select.value = chosen;
}

function verdictTable(
  verdicts: readonly Verdict[],
  chosen?: { donor: string; node: string },
): Child {
  if (verdicts.length === 0) return null;
  return h(
    'table',
    { class: 'grid stack verdicts' },
    h('caption', null, 'Every node considered'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'Donor'),
        h('th', { scope: 'col' }, 'Node'),
        h('th', { scope: 'col' }, 'Verdict'),
      ),
    ),
    h(
      'tbody',
      null,
      verdicts.map((v) => {
        const isChosen = chosen !== undefined && v.donor === chosen.donor && v.node === chosen.node;
        return h(
          'tr',
          { class: isChosen ? 'chosen' : v.reason === '' ? 'fits' : 'refused' },
          h('th', { scope: 'row', 'data-label': 'Donor' }, v.donor),
          h('td', { 'data-label': 'Node' }, v.node || '—'),
          h(
            'td',
            { class: 'why', 'data-label': 'Verdict' },
            isChosen
              ? `chosen (score ${v.score.toFixed(2)})`
              : v.reason === ''
                ? `fits (score ${v.score.toFixed(2)})`
                : v.reason,
          ),
        );
      }),
    ),
  );
}

export function renderSimulation(r: SimulateResult): Child {
  if (r.placed) {
    const { donor, node } = r.reservation;
    return h(
      'div',
      { class: 'card result ok', 'data-result': 'placed' },
      h(
        'p',
        { class: 'verdict' },
        h('strong', null, 'Would be placed'),
        ` on ${donor}, node ${node}.`,
      ),
      h('p', { class: 'muted' }, 'Nothing was reserved.'),
      verdictTable(r.verdicts, r.reservation),
    );
  }
  return h(
    'div',
    { class: 'card result refused', 'data-result': 'refused' },
    h('p', { class: 'verdict' }, h('strong', null, `Refused (${r.code})`), ': ', r.reason),
    verdictTable(r.verdicts),
  );
}

export function wireSimulate(
  api: () => Api | undefined,
  onAuthLost: (err: ApiError) => void,
): void {
  const form = byId<HTMLFormElement>('simulate-form');
  const out = byId('simulate-result');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const client = api();
    if (!client) return;
    const data = new FormData(form);
    const gpus = Number(data.get('gpus'));
    const origin = field(data, 'origin');
    const product = field(data, 'product');
    const policy = field(data, 'policy');
    if (origin === '') {
      replace(
        out,
        h('p', { class: 'error', role: 'alert' }, 'Choose an origin cluster: none has joined yet.'),
      );
      return;
    }
    if (!Number.isInteger(gpus) || gpus < 1 || gpus > 256) {
      replace(
        out,
        h('p', { class: 'error', role: 'alert' }, 'GPUs: a whole number from 1 to 256.'),
      );
      return;
    }
    const body = {
      origin,
      gpus,
      resource: field(data, 'resource').trim() || 'nvidia.com/gpu',
      ...(product === '' ? {} : { nodeSelector: { [PRODUCT_LABEL]: product } }),
      ...(policy === '' ? {} : { policy }),
    };
    replace(out, h('p', { class: 'muted' }, 'Asking the broker…'));
    client
      .post<SimulateResult>('./placements:simulate', body)
      .then((r) => replace(out, renderSimulation(r)))
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) onAuthLost(err);
        const message = err instanceof Error ? err.message : String(err);
        replace(
          out,
          h(
            'div',
            { class: 'card result refused', 'data-result': 'error' },
            h('p', { class: 'error', role: 'alert' }, message),
          ),
        );
      });
  });
}
