import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GangReserveRequest, GangReserveResult, ReserveRequest } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  GPU,
  T0,
  cluster,
  errorOf,
  full,
  node,
  reserveOk,
  reserveRequest,
  seedDonor,
  type StoreHarness,
} from './fixtures.js';

/** A gang of `gpus.length` members, member i asking gpus[i] on nodes[i] of `donor`. */
export function gangRequest(
  gang: string,
  donor: string,
  nodes: readonly string[],
  gpus: readonly number[],
  extra: Partial<ReserveRequest> = {},
): GangReserveRequest {
  return {
    gang,
    members: gpus.map((g, i) =>
      reserveRequest(donor, nodes[i]!, g, {
        id: `${gang}-r${i}`,
        pod: {
          originCluster: 'origin-a',
          namespace: 'ml',
          name: `${gang}-${i}`,
          uid: `${gang}-u${i}`,
        },
        ...extra,
      }),
    ),
  };
}

/** The racing donor: RACE_NODES nodes of RACE_FREE GPUs; each racing gang takes 1 GPU of each. */
export const RACE_DONOR = 'gpu-race';
export const RACE_NODES = 4;
export const RACE_FREE = 3;

export async function seedRaceDonor(store: Store): Promise<void> {
  await seedDonor(
    store,
    RACE_DONOR,
    Array.from({ length: RACE_NODES }, (_, i) => node(`node-${i}`, RACE_FREE)),
  );
}

export function raceGangs(count: number): GangReserveRequest[] {
  const run = Math.random().toString(36).slice(2, 8);
  const nodes = Array.from({ length: RACE_NODES }, (_, i) => `node-${i}`);
  return Array.from({ length: count }, (_, g) =>
    gangRequest(`race-${run}-${g}`, RACE_DONOR, nodes, Array<number>(RACE_NODES).fill(1)),
  );
}

/**
 * Exactly RACE_FREE gangs won; every member of a winner is open, no member of a loser is
 * anywhere in the store; no node holds more than it reported free.
 */
export async function expectWholeGangs(
  store: Store,
  gangs: readonly GangReserveRequest[],
  results: readonly GangReserveResult[],
): Promise<void> {
  const won = gangs.filter((_, i) => results[i]!.ok);
  expect(won).toHaveLength(RACE_FREE);
  for (const r of results) if (!r.ok) expect(r.code).toBe('NO_FIT');
  const all = await store.listReservations({ donor: RACE_DONOR });
  const byPod = new Set(all.map((r) => r.pod.uid));
  gangs.forEach((g, i) => {
    const present = g.members.filter((m) => byPod.has(m.pod.uid)).length;
    expect(present, `gang ${g.gang}`).toBe(results[i]!.ok ? g.members.length : 0);
  });
  for (let n = 0; n < RACE_NODES; n++) {
    const held = all.filter((r) => r.node === `node-${n}` && r.state === 'open').length;
    expect(held, `node-${n}`).toBeLessThanOrEqual(RACE_FREE);
  }
  expect((await store.usage(RACE_DONOR)).total).toBe(RACE_FREE * RACE_NODES);
}

/** Store contract for reserveGang: all members or none, under concurrency too. */
export function describeGangContract(
  name: string,
  makeStore: () => Promise<StoreHarness & { another?: () => Promise<Store> }>,
): void {
  describe(`Store contract, gangs: ${name}`, () => {
    let h: (StoreHarness & { another?: () => Promise<Store> }) | undefined;
    let store: Store;
    beforeEach(async () => {
      h = await makeStore();
      store = h.store;
    });
    afterEach(async () => {
      await h?.cleanup();
      h = undefined;
    });

    it('reserves every member on one donor, across its nodes, as open reservations', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 4), node('n2', 2)]);
      const req = gangRequest('g1', 'gpu-east', ['n1', 'n1', 'n2', 'n2'], [2, 2, 1, 0]);
      const res = await store.reserveGang(req, T0);
      if (!res.ok) throw new Error(`refused: ${res.reason}`);
      expect(res.reservations.map((r) => [r.node, r.gpus, r.state])).toEqual([
        ['n1', 2, 'open'],
        ['n1', 2, 'open'],
        ['n2', 1, 'open'],
        ['n2', 0, 'open'],
      ]);
      for (const r of res.reservations) {
        expect(await store.findReservationByPod(r.pod.uid)).toStrictEqual(r);
      }
      expect(await store.usage('gpu-east')).toEqual({ total: 5, byOrigin: { 'origin-a': 5 } });
      // The 0-GPU member's node is full now; a 1-GPU pod no longer fits on n1.
      const more = await store.reserve(reserveRequest('gpu-east', 'n1', 1), T0);
      expect(more.ok).toBe(false);
    });

    it('reserves nothing when one member does not fit, counting the members before it', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 4), node('n2', 8)]);
      // Each member alone fits n1; the second sees the first's 3 GPUs.
      const req = gangRequest('g2', 'gpu-east', ['n2', 'n1', 'n1'], [8, 3, 3]);
      const res = await store.reserveGang(req, T0);
      expect(res).toMatchObject({ ok: false, code: 'NO_FIT', member: 2 });
      if (res.ok) return;
      expect(res.reason).toContain('g2-2');
      expect(res.reason).toContain('nothing reserved');
      expect(await store.listReservations({ donor: 'gpu-east' })).toEqual([]);
      expect((await store.usage('gpu-east')).total).toBe(0);
    });

    it('refuses a member on a node the donor does not report, even for 0 GPUs', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 4)]);
      const res = await store.reserveGang(
        gangRequest('g3', 'gpu-east', ['n1', 'gone'], [1, 0]),
        T0,
      );
      expect(res).toMatchObject({ ok: false, code: 'NO_FIT', member: 1 });
      expect(await store.listReservations({ donor: 'gpu-east' })).toEqual([]);
    });

    it('checks the gang total against the limits: QUOTA_EXCEEDED, nothing reserved', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 8)]);
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { peeringMaxGpus: 6 }));
      const res = await store.reserveGang(
        gangRequest('g4', 'gpu-east', ['n1', 'n1', 'n1'], [2, 2, 1], { peeringMaxGpus: 6 }),
        T0,
      );
      expect(res).toMatchObject({ ok: false, code: 'QUOTA_EXCEEDED', member: -1 });
      if (!res.ok) expect(res.reason).toContain('peering limit');
      expect(await store.listReservations({ donor: 'gpu-east' })).toHaveLength(1);
      expect((await store.usage('gpu-east')).total).toBe(2);
    });

    it('refuses ALREADY_EXISTS when a member pod has a live reservation; the rest stay free', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 8)]);
      const req = gangRequest('g5', 'gpu-east', ['n1', 'n1'], [1, 1]);
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { pod: req.members[1]!.pod }));
      const res = await store.reserveGang(req, T0);
      expect(res).toMatchObject({ ok: false, code: 'ALREADY_EXISTS', member: 1 });
      expect(await store.findReservationByPod(req.members[0]!.pod.uid)).toBeUndefined();
    });

    it('rejects a malformed gang naming the field, and writes nothing', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 8)]);
      await store.putCluster(cluster('gpu-west', { role: 'donor' }));
      const two = gangRequest('g6', 'gpu-east', ['n1', 'n1'], [1, 1]);
      two.members[1]!.donor = 'gpu-west';
      expect(await errorOf(store.reserveGang(two, T0))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        field: 'members[1].donor',
      });
      const dup = gangRequest('g7', 'gpu-east', ['n1', 'n1'], [1, 1]);
      dup.members[1]!.pod = { ...dup.members[0]!.pod };
      expect(await errorOf(store.reserveGang(dup, T0))).toMatchObject({
        field: 'members[1].pod.uid',
      });
      const neg = gangRequest('g8', 'gpu-east', ['n1'], [-1]);
      expect(await errorOf(store.reserveGang(neg, T0))).toMatchObject({
        field: 'members[0].gpus',
      });
      expect(await errorOf(store.reserveGang({ gang: 'g9', members: [] }, T0))).toMatchObject({
        field: 'members',
      });
      expect(await store.listReservations({ donor: 'gpu-east' })).toEqual([]);
    });

    it('keeps a gang whole across a restart: its members are all there, bound by the report', async () => {
      await seedDonor(store, 'gpu-east', [node('n1', 4)]);
      const req = gangRequest('g10', 'gpu-east', ['n1', 'n1'], [2, 2]);
      const res = await store.reserveGang(req, T0);
      expect(res.ok).toBe(true);
      store = await h!.reopen();
      const uids = req.members.map((m) => m.pod.uid);
      const bound = await store.applyCapacity(
        'gpu-east',
        full([node('n1', 0, { offloadedPodUids: uids })], 2),
        T0,
      );
      expect(bound.map((r) => r.pod.uid).sort()).toEqual([...uids].sort());
      expect((await store.usage('gpu-east')).total).toBe(4);
    });

    it('many gangs racing for few GPUs: exactly the ones that fit win, each whole', async () => {
      await seedRaceDonor(store);
      const writers = [store];
      if (h!.another) for (let i = 0; i < 3; i++) writers.push(await h!.another());
      const gangs = raceGangs(24);
      const results = await Promise.all(
        gangs.map((g, i) => writers[i % writers.length]!.reserveGang(g, T0)),
      );
      await expectWholeGangs(store, gangs, results);
    });
  });
}

export { GPU };
