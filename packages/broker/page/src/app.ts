// The dashboard: sign in with an API token, then read the broker's REST API once a second.
import { Api, ApiError } from './api.js';
import { byId, replace } from './dom.js';
import { fleetModel, fleetTotals, renderFleet, renderTotals } from './fleet.js';
import { renderOffloads } from './offloads.js';
import { renderPeerings } from './peerings.js';
import { setOptions, wireSimulate } from './simulate.js';
import type { ClusterDetail, ClusterView, Offload, Peering } from './types.js';
import { renderUsage, usageQuery } from './usage.js';

/** A change on the broker shows within this plus one round of requests. */
const POLL_MS = 1_000;
const USAGE_POLL_MS = 30_000;

let api: Api | undefined;
let timer: number | undefined;
let inFlight = false;
let hasUsage = false;
let usageAt = 0;
/** Last rendered input per section, so an unchanged section is not rebuilt. */
const lastKey = new Map<string, string>();

const el = {
  login: byId('login'),
  loginForm: byId<HTMLFormElement>('login-form'),
  loginError: byId('login-error'),
  token: byId<HTMLInputElement>('token'),
  dashboard: byId('dashboard'),
  signout: byId<HTMLButtonElement>('signout'),
  status: byId('status'),
  updated: byId('updated'),
  totals: byId('totals'),
  fleet: byId('fleet'),
  offloads: byId('offloads'),
  peerings: byId('peerings'),
  usageSection: byId('usage-section'),
  usage: byId('usage'),
  simOrigin: byId<HTMLSelectElement>('sim-origin'),
  simProduct: byId<HTMLSelectElement>('sim-product'),
};

function show(
  section: string,
  container: HTMLElement,
  input: unknown,
  render: () => ReturnType<typeof renderFleet>,
): void {
  const key = JSON.stringify(input);
  if (lastKey.get(section) === key) return;
  lastKey.set(section, key);
  replace(container, render());
}

function signOut(message = ''): void {
  api = undefined;
  if (timer !== undefined) window.clearTimeout(timer);
  timer = undefined;
  lastKey.clear();
  hasUsage = false;
  for (const c of [
    el.totals,
    el.fleet,
    el.offloads,
    el.peerings,
    el.usage,
    byId('simulate-result'),
  ])
    c.replaceChildren();
  el.dashboard.hidden = true;
  el.usageSection.hidden = true;
  el.signout.hidden = true;
  el.login.hidden = false;
  el.updated.textContent = '';
  el.status.textContent = '';
  el.loginError.textContent = message;
  el.token.value = '';
  el.token.focus();
}

function explain(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return `The broker refused this token: ${err.message}.`;
    if (err.status === 403) return `This token may not read the dashboard: ${err.message}.`;
    if (err.status === 429) return `Too many failed sign-ins from this address: ${err.message}.`;
    if (err.status === 0)
      return 'The broker did not answer. Is it running, and is this its REST address?';
    return `${err.code}: ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

async function refresh(client: Api): Promise<void> {
  const [clusters, offloads, peerings] = await Promise.all([
    client.get<{ clusters: ClusterView[] }>('clusters').then((r) => r.clusters),
    client.get<{ offloads: Offload[] }>('offloads').then((r) => r.offloads),
    client.get<{ peerings: Peering[] }>('peerings').then((r) => r.peerings),
  ]);
  const donorIds = clusters
    .filter((c) => c.role !== 'origin' && c.state !== 'Revoked')
    .map((c) => c.id)
    .sort((a, b) => a.localeCompare(b, 'en'));
  const details = await Promise.all(
    donorIds.map((id) => client.get<ClusterDetail>(`clusters/${encodeURIComponent(id)}`)),
  );
  if (api !== client) return;
  const now = Date.now();
  const model = fleetModel(details, offloads);
  show(
    'totals',
    el.totals,
    model.map((d) => d.counts),
    () => renderTotals(fleetTotals(model)),
  );
  show('fleet', el.fleet, model, () => renderFleet(model));
  // Ages and expiry countdowns change every second: these are rebuilt on every round.
  show('offloads', el.offloads, [offloads, Math.floor(now / 1000)], () =>
    renderOffloads(offloads, now),
  );
  show('peerings', el.peerings, [peerings, Math.floor(now / 60_000)], () =>
    renderPeerings(peerings, now),
  );

  setOptions(
    el.simOrigin,
    clusters.filter((c) => c.role !== 'donor' && c.state !== 'Revoked').map((c) => [c.id, c.id]),
  );
  const products = [...new Set(model.flatMap((d) => d.products.map((p) => p.product)))]
    .filter((p) => p !== '')
    .sort();
  setOptions(el.simProduct, [
    ['', 'any product'],
    ...products.map((p): [string, string] => [p, p]),
  ]);

  if (hasUsage && now - usageAt >= USAGE_POLL_MS) {
    usageAt = now;
    const body = await client.get<unknown>(usageQuery(now));
    show('usage', el.usage, body, () => renderUsage(body));
  }
  el.updated.textContent = `Updated ${new Date(now).toLocaleTimeString()}`;
  el.status.textContent = '';
}

async function tick(): Promise<void> {
  const client = api;
  if (!client || inFlight) return;
  if (document.hidden) return schedule();
  inFlight = true;
  try {
    await refresh(client);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      if (api === client) signOut(explain(err));
      return;
    }
    // Keep the last picture and say it is stale; the next round tries again.
    if (api === client) el.status.textContent = `Not current: ${explain(err)} Retrying…`;
  } finally {
    inFlight = false;
  }
  schedule();
}

function schedule(): void {
  if (!api) return;
  if (timer !== undefined) window.clearTimeout(timer);
  timer = window.setTimeout(() => void tick(), POLL_MS);
}

async function signIn(token: string): Promise<void> {
  const client = new Api(token);
  // One cheap authenticated call proves the token before anything is shown.
  await client.get('clusters');
  hasUsage = await client.exists(usageQuery(Date.now())).catch(() => false);
  api = client;
  usageAt = 0;
  el.login.hidden = true;
  el.dashboard.hidden = false;
  el.usageSection.hidden = !hasUsage;
  el.signout.hidden = false;
  el.loginError.textContent = '';
  el.token.value = '';
  await tick();
  byId('fleet-title').focus();
}

el.loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = el.token.value.trim();
  if (token === '') {
    el.loginError.textContent =
      'Enter an API token (spillctl token create --role viewer prints one).';
    return;
  }
  el.loginError.textContent = '';
  signIn(token).catch((err: unknown) => {
    el.loginError.textContent = explain(err);
    el.token.select();
  });
});
el.signout.addEventListener('click', () => signOut());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void tick();
});
wireSimulate(
  () => api,
  (err) => signOut(explain(err)),
);
byId('fleet-title').setAttribute('tabindex', '-1');
