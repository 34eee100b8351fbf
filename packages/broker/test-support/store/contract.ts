import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpillwayError } from '@spillway/common';
import {
  DEFAULT_DONOR_POLICY,
  type CapacityUpdate,
  type ClusterRecord,
  type NodeInventory,
  type PeeringRecord,
  type ReservationRecord,
  type ReserveRequest,
  type ReserveResult,
} from '../../src/model.js';
import type { Store } from '../../src/store/store.js';

/**
 * The one behaviour both stores must show, written against the Store interface only.
 * sqlite.int.test.ts and redis.int.test.ts run it on real backends.
 */

export interface StoreHarness {
  store: Store;
  /** Closes the current store and opens a new one on the same data (a broker restart). */
  reopen(): Promise<Store>;
  /** Closes whatever is open and removes the data. */
  cleanup(): Promise<void>;
}

export const T0 = new Date('2026-03-01T12:00:00.000Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const GPU = 'nvidia.com/gpu';
const MIG = 'nvidia.com/mig-1g.10gb';

export function node(
  name: string,
  free: number,
  extra: Partial<NodeInventory> = {},
): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: 8, free } },
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB', 'kubernetes.io/hostname': name },
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 549_755_813_888,
    memoryFreeBytes: 274_877_906_944,
    offloadedPodUids: [],
    ...extra,
  };
}

export function cluster(id: string, extra: Partial<ClusterRecord> = {}): ClusterRecord {
  return {
    id,
    role: 'both',
    createdAt: T0.toISOString(),
    policy: { ...DEFAULT_DONOR_POLICY, nodeSelector: {} },
    ...extra,
  };
}

function peering(origin: string, donor: string, extra: Partial<PeeringRecord> = {}): PeeringRecord {
  return { origin, donor, maxGpus: 0, gpuProducts: [], createdAt: T0.toISOString(), ...extra };
}

const full = (nodes: NodeInventory[], sequence = 1): CapacityUpdate => ({
  full: true,
  nodes,
  removedNodes: [],
  sequence,
});

let seq = 0;
export function reserveRequest(
  donor: string,
  nodeName: string,
  gpus: number,
  extra: Partial<ReserveRequest> = {},
): ReserveRequest {
  seq += 1;
  const uid = extra.pod?.uid ?? `uid-${seq}`;
  return {
    id: `rsv-${seq}`,
    origin: 'origin-a',
    donor,
    node: nodeName,
    resource: GPU,
    gpus,
    pod: { originCluster: extra.origin ?? 'origin-a', namespace: 'ml', name: `train-${seq}`, uid },
    ttlMs: 30_000,
    peeringMaxGpus: 0,
    donorMaxGpus: 0,
    donorMaxGpusPerOrigin: 0,
    ...extra,
  };
}

async function errorOf(p: Promise<unknown>): Promise<SpillwayError> {
  const err = await p.then(
    () => new Error('expected the call to fail, it succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SpillwayError);
  return err as SpillwayError;
}

async function reserveOk(store: Store, req: ReserveRequest, now = T0): Promise<ReservationRecord> {
  const res = await store.reserve(req, now);
  if (!res.ok) throw new Error(`reserve ${req.id} refused: ${res.code} ${res.reason}`);
  return res.reservation;
}

async function refusal(store: Store, req: ReserveRequest, now = T0): Promise<string> {
  const res = await store.reserve(req, now);
  if (res.ok) throw new Error(`reserve ${req.id} should have been refused`);
  expect(res.reason).not.toBe('');
  return res.code;
}

export function describeStoreContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;

    beforeEach(async () => {
      h = await makeStore();
      store = h.store;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    /** A donor with inventory: the store binds inventory to a known cluster. */
    async function donor(id: string, nodes: NodeInventory[]): Promise<void> {
      await store.putCluster(cluster(id, { role: 'donor' }));
      await store.applyCapacity(id, full(nodes), T0);
    }

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
      expect(['sqlite', 'redis']).toContain(store.kind);
    });

    describe('join tokens', () => {
      const token = {
        id: 'jt1',
        secretHash: 'a'.repeat(64),
        clusterId: 'gpu-east',
        role: 'donor' as const,
        createdAt: T0.toISOString(),
        expiresAt: at(15 * 60_000).toISOString(),
      };

      it('is consumed once: the second consume fails with TOKEN_INVALID', async () => {
        await store.createJoinToken(token);
        expect(await store.listJoinTokens()).toStrictEqual([token]);
        const used = await store.consumeJoinToken('jt1', token.secretHash, at(1000));
        expect(used).toStrictEqual({ ...token, usedAt: at(1000).toISOString() });
        expect((await store.listJoinTokens())[0]?.usedAt).toBe(at(1000).toISOString());
        const err = await errorOf(store.consumeJoinToken('jt1', token.secretHash, at(2000)));
        expect(err.code).toBe('TOKEN_INVALID');
      });

      it('refuses an expired token, a wrong secret and an unknown id with one message', async () => {
        await store.createJoinToken(token);
        const expired = await errorOf(
          store.consumeJoinToken('jt1', token.secretHash, at(15 * 60_000)),
        );
        const wrong = await errorOf(store.consumeJoinToken('jt1', 'b'.repeat(64), at(1000)));
        const unknown = await errorOf(store.consumeJoinToken('nope', token.secretHash, at(1000)));
        for (const e of [expired, wrong, unknown]) expect(e.code).toBe('TOKEN_INVALID');
        expect(new Set([expired.message, wrong.message, unknown.message]).size).toBe(1);
        // A failed attempt does not burn the token.
        await expect(
          store.consumeJoinToken('jt1', token.secretHash, at(1000)),
        ).resolves.toMatchObject({ id: 'jt1' });
      });

      it('lets exactly one of many concurrent consumers win', async () => {
        await store.createJoinToken(token);
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, () =>
            store.consumeJoinToken('jt1', token.secretHash, at(1000)),
          ),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      });

      it('refuses a duplicate id', async () => {
        await store.createJoinToken(token);
        expect((await errorOf(store.createJoinToken(token))).code).toBe('ALREADY_EXISTS');
      });
    });

    describe('clusters', () => {
      it('puts, gets, lists and updates', async () => {
        const a = cluster('gpu-east', {
          certSerial: '0a1b',
          certNotAfter: at(86_400_000).toISOString(),
        });
        const b = cluster('gpu-west', {
          role: 'origin',
          policy: { ...DEFAULT_DONOR_POLICY, maxGpus: 8, nodeSelector: { pool: 'a' } },
        });
        await store.putCluster(b);
        await store.putCluster(a);
        expect(await store.getCluster('gpu-east')).toStrictEqual(a);
        expect(await store.getCluster('missing')).toBeUndefined();
        expect(await store.listClusters()).toStrictEqual([a, b]);
        const revoked = {
          ...a,
          revokedAt: at(5000).toISOString(),
          policy: { ...a.policy, cordoned: true },
        };
        await store.putCluster(revoked);
        expect(await store.getCluster('gpu-east')).toStrictEqual(revoked);
        const { certSerial: _s, ...withoutSerial } = revoked;
        await store.putCluster(withoutSerial);
        expect(await store.getCluster('gpu-east')).toStrictEqual(withoutSerial);
      });

      it('deleteCluster removes its inventory, connections and peerings, and nothing else', async () => {
        await donor('gpu-east', [node('n1', 4)]);
        await donor('gpu-west', [node('w1', 2)]);
        await store.putCluster(cluster('origin-a', { role: 'origin' }));
        await store.putPeering(peering('origin-a', 'gpu-east'));
        await store.putPeering(peering('gpu-east', 'gpu-west'));
        await store.putPeering(peering('origin-a', 'gpu-west'));
        const conn = {
          component: 'agent' as const,
          brokerId: 'b1',
          connectedAt: T0.toISOString(),
          lastSeenAt: T0.toISOString(),
        };
        await store.putConnection({ clusterId: 'gpu-east', ...conn });
        await store.putConnection({ clusterId: 'gpu-east', ...conn, component: 'virtual-node' });
        await store.putConnection({ clusterId: 'gpu-west', ...conn });
        const r = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));

        await store.deleteCluster('gpu-east');

        expect(await store.getCluster('gpu-east')).toBeUndefined();
        expect(await store.getInventory('gpu-east')).toBeUndefined();
        expect((await store.listInventories()).map((i) => i.clusterId)).toEqual(['gpu-west']);
        expect(await store.listPeerings()).toStrictEqual([peering('origin-a', 'gpu-west')]);
        expect(await store.listConnections()).toStrictEqual([{ clusterId: 'gpu-west', ...conn }]);
        expect((await store.listClusters()).map((c) => c.id)).toEqual(['gpu-west', 'origin-a']);
        // Reservations are history, not cluster state: they stay for GET /offloads.
        expect(await store.getReservation(r.id)).toStrictEqual(r);
        // A removed cluster's late report cannot bring its inventory back.
        expect(
          (await errorOf(store.applyCapacity('gpu-east', full([node('n1', 4)], 9), T0))).code,
        ).toBe('NOT_FOUND');
        await expect(store.deleteCluster('gpu-east')).resolves.toBeUndefined();
      });
    });

    it('revokes serials, matching them case- and zero-insensitively', async () => {
      expect(await store.isRevoked('0abc')).toBe(false);
      await store.revoke({
        serial: '00ABC',
        revokedAt: T0.toISOString(),
        reason: 'cluster removed',
        subject: 'cluster:gpu-east',
      });
      await store.revoke({ serial: 'ff01', revokedAt: at(1000).toISOString(), reason: 'rotated' });
      expect(await store.isRevoked('abc')).toBe(true);
      expect(await store.isRevoked('0ABC')).toBe(true);
      expect(await store.isRevoked('abd')).toBe(false);
      expect(await store.listRevoked()).toStrictEqual([
        {
          serial: 'abc',
          revokedAt: T0.toISOString(),
          reason: 'cluster removed',
          subject: 'cluster:gpu-east',
        },
        { serial: 'ff01', revokedAt: at(1000).toISOString(), reason: 'rotated' },
      ]);
    });

    it('keeps peerings: put, get, filtered list, update, delete', async () => {
      const p1 = peering('origin-a', 'gpu-east', { maxGpus: 4, gpuProducts: ['NVIDIA-H100'] });
      const p2 = peering('origin-a', 'gpu-west');
      const p3 = peering('origin-b', 'gpu-east');
      for (const p of [p3, p2, p1]) await store.putPeering(p);
      expect(await store.getPeering('origin-a', 'gpu-east')).toStrictEqual(p1);
      expect(await store.getPeering('gpu-east', 'origin-a')).toBeUndefined();
      expect(await store.listPeerings()).toStrictEqual([p1, p2, p3]);
      expect(await store.listPeerings({ origin: 'origin-a' })).toStrictEqual([p1, p2]);
      expect(await store.listPeerings({ donor: 'gpu-east' })).toStrictEqual([p1, p3]);
      expect(await store.listPeerings({ origin: 'origin-b', donor: 'gpu-east' })).toStrictEqual([
        p3,
      ]);
      const draining = { ...p1, deletingSince: at(10).toISOString() };
      await store.putPeering(draining);
      expect(await store.getPeering('origin-a', 'gpu-east')).toStrictEqual(draining);
      expect(await store.deletePeering('origin-a', 'gpu-east')).toBe(true);
      expect(await store.deletePeering('origin-a', 'gpu-east')).toBe(false);
      expect(await store.listPeerings({ origin: 'origin-a' })).toStrictEqual([p2]);
    });

    describe('applyCapacity', () => {
      it('replaces on a full report and merges a delta (upserts and removedNodes)', async () => {
        await store.putCluster(cluster('gpu-east'));
        expect(await store.getInventory('gpu-east')).toBeUndefined();
        await store.applyCapacity('gpu-east', full([node('n2', 2), node('n1', 1)], 5), at(1));
        expect(await store.getInventory('gpu-east')).toStrictEqual({
          clusterId: 'gpu-east',
          nodes: [node('n1', 1), node('n2', 2)],
          updatedAt: at(1).toISOString(),
          sequence: 5,
        });
        const n1 = node('n1', 0, { taints: [{ key: 'k', value: 'v', effect: 'NoSchedule' }] });
        await store.applyCapacity(
          'gpu-east',
          { full: false, nodes: [n1, node('n3', 3)], removedNodes: ['n2'], sequence: 6 },
          at(2),
        );
        expect(await store.getInventory('gpu-east')).toStrictEqual({
          clusterId: 'gpu-east',
          nodes: [n1, node('n3', 3)],
          updatedAt: at(2).toISOString(),
          sequence: 6,
        });
        await store.applyCapacity('gpu-east', full([node('n9', 9)], 7), at(3));
        expect((await store.getInventory('gpu-east'))?.nodes).toStrictEqual([node('n9', 9)]);
      });

      it('ignores a delta with a lower sequence, but not a full report', async () => {
        await store.putCluster(cluster('gpu-east'));
        await store.applyCapacity('gpu-east', full([node('n1', 4)], 10), at(1));
        await store.applyCapacity(
          'gpu-east',
          { full: false, nodes: [node('n1', 0)], removedNodes: [], sequence: 9 },
          at(2),
        );
        expect(await store.getInventory('gpu-east')).toMatchObject({
          sequence: 10,
          updatedAt: at(1).toISOString(),
        });
        expect((await store.getInventory('gpu-east'))?.nodes).toStrictEqual([node('n1', 4)]);
        // Same sequence is not lower: applied.
        await store.applyCapacity(
          'gpu-east',
          { full: false, nodes: [node('n1', 3)], removedNodes: [], sequence: 10 },
          at(3),
        );
        expect((await store.getInventory('gpu-east'))?.nodes).toStrictEqual([node('n1', 3)]);
        // A new stream restarts its numbering with a full snapshot.
        await store.applyCapacity('gpu-east', full([node('n1', 2)], 1), at(4));
        expect(await store.getInventory('gpu-east')).toStrictEqual({
          clusterId: 'gpu-east',
          nodes: [node('n1', 2)],
          updatedAt: at(4).toISOString(),
          sequence: 1,
        });
      });

      it('lists and clears inventories, and refuses an unknown cluster', async () => {
        await donor('gpu-west', [node('w1', 1)]);
        await donor('gpu-east', [node('e1', 1)]);
        expect((await store.listInventories()).map((i) => [i.clusterId, i.nodes.length])).toEqual([
          ['gpu-east', 1],
          ['gpu-west', 1],
        ]);
        await store.clearInventory('gpu-east');
        expect(await store.getInventory('gpu-east')).toBeUndefined();
        expect((await store.listInventories()).map((i) => i.clusterId)).toEqual(['gpu-west']);
        const err = await errorOf(store.applyCapacity('nobody', full([node('x', 1)]), T0));
        expect(err.code).toBe('NOT_FOUND');
        expect(err.message).toContain('nobody');
      });

      it('binds open reservations whose pod uid the report shows, once', async () => {
        await donor('gpu-east', [node('n1', 4), node('n2', 4)]);
        await donor('gpu-west', [node('w1', 4)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 2));
        const b = await reserveOk(store, reserveRequest('gpu-east', 'n2', 1));
        const w = await reserveOk(store, reserveRequest('gpu-west', 'w1', 1));
        // gpu-west's uid appearing in gpu-east's report binds nothing of gpu-west.
        const bound = await store.applyCapacity(
          'gpu-east',
          full([node('n1', 2, { offloadedPodUids: [a.pod.uid, w.pod.uid] }), node('n2', 4)], 2),
          at(500),
        );
        expect(bound).toStrictEqual([{ ...a, state: 'bound', boundAt: at(500).toISOString() }]);
        expect(await store.getReservation(a.id)).toStrictEqual(bound[0]);
        expect((await store.getReservation(b.id))?.state).toBe('open');
        expect((await store.getReservation(w.id))?.state).toBe('open');
        // Seen again in the next report: already bound, nothing new.
        const again = await store.applyCapacity(
          'gpu-east',
          {
            full: false,
            nodes: [node('n2', 3, { offloadedPodUids: [b.pod.uid] })],
            removedNodes: [],
            sequence: 3,
          },
          at(600),
        );
        expect(again.map((r) => r.id)).toEqual([b.id]);
        expect((await store.getReservation(a.id))?.boundAt).toBe(at(500).toISOString());
        // A stale delta binds nothing.
        const w2 = await reserveOk(store, reserveRequest('gpu-east', 'n2', 1));
        expect(
          await store.applyCapacity(
            'gpu-east',
            {
              full: false,
              nodes: [node('n2', 2, { offloadedPodUids: [w2.pod.uid] })],
              removedNodes: [],
              sequence: 1,
            },
            at(700),
          ),
        ).toEqual([]);
        expect((await store.getReservation(w2.id))?.state).toBe('open');
      });
    });

    it('keeps connections, touched and deleted only by their holder', async () => {
      const c = {
        clusterId: 'gpu-east',
        component: 'agent' as const,
        brokerId: 'b1',
        connectedAt: T0.toISOString(),
        lastSeenAt: T0.toISOString(),
      };
      await store.putConnection(c);
      await store.putConnection({ ...c, component: 'virtual-node' });
      await store.touchConnection('gpu-east', 'agent', 'b1', at(1000));
      await store.touchConnection('gpu-east', 'virtual-node', 'b2', at(1000));
      await store.touchConnection('nobody', 'agent', 'b1', at(1000));
      expect(await store.listConnections()).toStrictEqual([
        { ...c, lastSeenAt: at(1000).toISOString() },
        { ...c, component: 'virtual-node' },
      ]);
      // A newer stream on another replica takes over; the old holder can neither touch nor delete.
      const moved = {
        ...c,
        brokerId: 'b2',
        connectedAt: at(2000).toISOString(),
        lastSeenAt: at(2000).toISOString(),
      };
      await store.putConnection(moved);
      await store.touchConnection('gpu-east', 'agent', 'b1', at(3000));
      await store.deleteConnection('gpu-east', 'agent', 'b1');
      expect((await store.listConnections())[0]).toStrictEqual(moved);
      await store.deleteConnection('gpu-east', 'agent', 'b2');
      expect(await store.listConnections()).toStrictEqual([{ ...c, component: 'virtual-node' }]);
    });

    describe('reserve', () => {
      it('records an open reservation with its TTL', async () => {
        await donor('gpu-east', [node('n1', 4)]);
        const req = reserveRequest('gpu-east', 'n1', 2, { ttlMs: 45_000 });
        const res = await store.reserve(req, T0);
        const expected: ReservationRecord = {
          id: req.id,
          origin: 'origin-a',
          donor: 'gpu-east',
          node: 'n1',
          resource: GPU,
          gpus: 2,
          pod: req.pod,
          state: 'open',
          createdAt: T0.toISOString(),
          expiresAt: at(45_000).toISOString(),
        };
        expect(res).toStrictEqual({ ok: true, reservation: expected });
        expect(await store.getReservation(req.id)).toStrictEqual(expected);
        expect(await store.findReservationByPod(req.pod.uid)).toStrictEqual(expected);
      });

      it('refuses NO_FIT when reported free minus open reservations is too small', async () => {
        await donor('gpu-east', [
          node('n1', 4, {
            gpus: { [GPU]: { allocatable: 8, free: 4 }, [MIG]: { allocatable: 7, free: 2 } },
          }),
          node('n2', 1),
        ]);
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 3));
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 2))).toBe('NO_FIT');
        // Other resources and other nodes are counted apart.
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { resource: MIG }));
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1, { resource: MIG }))).toBe(
          'NO_FIT',
        );
        await reserveOk(store, reserveRequest('gpu-east', 'n2', 1));
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');
      });

      it('does not subtract an open reservation the report already counts', async () => {
        const early = reserveRequest('gpu-east', 'n1', 1);
        // The donor already runs this pod (its uid is in offloadedPodUids, counted in free).
        await donor('gpu-east', [node('n1', 1, { offloadedPodUids: [early.pod.uid] })]);
        await reserveOk(store, early);
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');
      });

      it('gives 0 free on absent, not ready or cordoned nodes and unknown resources', async () => {
        await donor('gpu-east', [
          node('down', 4, { ready: false }),
          node('cordoned', 4, { cordoned: true }),
          node('ok', 4),
        ]);
        for (const n of ['down', 'cordoned', 'absent']) {
          expect(await refusal(store, reserveRequest('gpu-east', n, 1))).toBe('NO_FIT');
        }
        expect(
          await refusal(store, reserveRequest('gpu-east', 'ok', 1, { resource: 'amd.com/gpu' })),
        ).toBe('NO_FIT');
        expect(await refusal(store, reserveRequest('gpu-west', 'ok', 1))).toBe('NO_FIT');
        expect(await refusal(store, reserveRequest('gpu-east', 'ok', 5))).toBe('NO_FIT');
        await reserveOk(store, reserveRequest('gpu-east', 'ok', 4));
        expect(await store.listReservations()).toHaveLength(1);
      });

      it('refuses QUOTA_EXCEEDED past peeringMaxGpus, counting open and bound', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const limit = { peeringMaxGpus: 3 };
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, limit));
        await store.applyCapacity(
          'gpu-east',
          full([node('n1', 6, { offloadedPodUids: [a.pod.uid] })], 2),
          T0,
        );
        expect((await store.getReservation(a.id))?.state).toBe('bound');
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 2, limit))).toBe(
          'QUOTA_EXCEEDED',
        );
        // Another origin has its own peering budget.
        await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-b' }),
        );
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, limit));
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1, limit))).toBe(
          'QUOTA_EXCEEDED',
        );
      });

      it('refuses QUOTA_EXCEEDED past donorMaxGpusPerOrigin', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const limit = { donorMaxGpusPerOrigin: 2 };
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, limit));
        const code = await refusal(store, reserveRequest('gpu-east', 'n1', 1, limit));
        expect(code).toBe('QUOTA_EXCEEDED');
        await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-b' }),
        );
      });

      it('refuses QUOTA_EXCEEDED past donorMaxGpus across origins', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const limit = { donorMaxGpus: 3 };
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, limit));
        await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 1, { ...limit, origin: 'origin-b' }),
        );
        expect(
          await refusal(
            store,
            reserveRequest('gpu-east', 'n1', 1, { ...limit, origin: 'origin-c' }),
          ),
        ).toBe('QUOTA_EXCEEDED');
        // Finished reservations no longer count.
        const [first] = await store.listReservations({ origin: 'origin-a' });
        await store.release(first!.id, 'test', at(1));
        await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-c' }),
        );
      });

      it('refuses ALREADY_EXISTS for a second live reservation of a pod, or a reused id', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const first = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        const samePod = reserveRequest('gpu-east', 'n1', 1, { pod: first.pod });
        expect(await refusal(store, samePod)).toBe('ALREADY_EXISTS');
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1, { id: first.id }))).toBe(
          'ALREADY_EXISTS',
        );
        await store.release(first.id, 'retry elsewhere', at(1));
        await reserveOk(store, samePod);
      });

      it('rejects a malformed request with INVALID_ARGUMENT naming the field', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const zero = await errorOf(store.reserve(reserveRequest('gpu-east', 'n1', 0), T0));
        expect(zero).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'gpus' });
        const ttl = await errorOf(
          store.reserve(reserveRequest('gpu-east', 'n1', 1, { ttlMs: 0 }), T0),
        );
        expect(ttl).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'ttlMs' });
        expect(await store.listReservations()).toEqual([]);
      });

      it('never over-commits a node under concurrent reserves on one store', async () => {
        await donor('gpu-east', [node('n1', 5)]);
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.reserve(reserveRequest('gpu-east', 'n1', 1), T0)),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(5);
        expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.code)).toEqual(
          Array.from({ length: 15 }, () => 'NO_FIT'),
        );
      });
    });

    describe('reservation lifecycle', () => {
      it('release: open or bound -> released, frees the GPUs, then undefined', async () => {
        await donor('gpu-east', [node('n1', 2)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        const b = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await store.applyCapacity(
          'gpu-east',
          full([node('n1', 1, { offloadedPodUids: [b.pod.uid] })], 2),
          at(1),
        );
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');

        const released = await store.release(a.id, 'pod deleted on origin', at(10));
        expect(released).toStrictEqual({
          ...a,
          state: 'released',
          endedAt: at(10).toISOString(),
          reason: 'pod deleted on origin',
        });
        expect(await store.getReservation(a.id)).toStrictEqual(released);
        expect(await store.findReservationByPod(a.pod.uid)).toBeUndefined();
        expect((await store.release(b.id, 'binding failed', at(11)))?.state).toBe('released');
        expect(await store.release(a.id, 'again', at(12))).toBeUndefined();
        expect(await store.release('unknown', 'x', at(12))).toBeUndefined();
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
      });

      it('endByPod: bound or open -> ended, frees the GPUs', async () => {
        await donor('gpu-east', [node('n1', 1)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await store.applyCapacity(
          'gpu-east',
          full([node('n1', 0, { offloadedPodUids: [a.pod.uid] })], 2),
          at(1),
        );
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');
        expect(await store.usage('gpu-east')).toEqual({ total: 1, byOrigin: { 'origin-a': 1 } });
        const ended = await store.endByPod(a.pod.uid, 'Succeeded', at(20));
        expect(ended).toStrictEqual({
          ...a,
          state: 'ended',
          boundAt: at(1).toISOString(),
          endedAt: at(20).toISOString(),
          reason: 'Succeeded',
        });
        expect(await store.endByPod(a.pod.uid, 'again', at(21))).toBeUndefined();
        expect(await store.usage('gpu-east')).toEqual({ total: 0, byOrigin: {} });
        // The donor's next report frees the GPU; the ended reservation no longer holds anything.
        await store.applyCapacity('gpu-east', full([node('n1', 1)], 3), at(22));
        const b = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        expect((await store.endByPod(b.pod.uid, 'pod deleted', at(23)))?.state).toBe('ended');
        expect(await store.endByPod('no-such-uid', 'x', at(23))).toBeUndefined();
      });

      it('binds again an expired reservation whose pod the donor reports running', async () => {
        await donor('gpu-east', [node('n1', 4)]);
        await donor('gpu-west', [node('w1', 4)]);
        const late = await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { ttlMs: 1000 }));
        const gone = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 1000 }));
        expect((await store.expire(at(1000))).map((r) => r.id).sort()).toEqual(
          [late.id, gone.id].sort(),
        );
        expect(await store.usage('gpu-east')).toEqual({ total: 0, byOrigin: {} });
        // Another donor reporting the uid binds nothing of gpu-east's.
        expect(
          await store.applyCapacity(
            'gpu-west',
            full([node('w1', 4, { offloadedPodUids: [late.pod.uid] })], 2),
            at(1500),
          ),
        ).toEqual([]);
        // The donor's report, late, shows the pod running: it holds its GPUs again.
        const bound = await store.applyCapacity(
          'gpu-east',
          full([node('n1', 2, { offloadedPodUids: [late.pod.uid] })], 2),
          at(2000),
        );
        expect(bound).toStrictEqual([{ ...late, state: 'bound', boundAt: at(2000).toISOString() }]);
        expect(await store.findReservationByPod(late.pod.uid)).toStrictEqual(bound[0]);
        expect((await store.getReservation(gone.id))?.state).toBe('expired');
        expect(await store.usage('gpu-east')).toEqual({ total: 2, byOrigin: { 'origin-a': 2 } });
        expect(
          await store.applyCapacity(
            'gpu-east',
            full([node('n1', 2, { offloadedPodUids: [late.pod.uid] })], 3),
            at(2100),
          ),
        ).toEqual([]);
        // And it ends like any other when the pod does.
        expect((await store.endByPod(late.pod.uid, 'pod deleted', at(3000)))?.state).toBe('ended');
        expect(await store.usage('gpu-east')).toEqual({ total: 0, byOrigin: {} });
        // A pod placed again after its reservation lapsed is bound by its new one only.
        const again = await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 1, { ttlMs: 60_000, pod: gone.pod }),
          at(3000),
        );
        const next = await store.applyCapacity(
          'gpu-east',
          full([node('n1', 3, { offloadedPodUids: [gone.pod.uid] })], 4),
          at(3100),
        );
        expect(next.map((r) => r.id)).toEqual([again.id]);
        expect((await store.getReservation(gone.id))?.state).toBe('expired');
      });

      it('extend: an open reservation gets a later expiry; others are left alone', async () => {
        await donor('gpu-east', [node('n1', 4)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 1000 }));
        const b = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 1000 }));
        const extended = await store.extend(a.id, at(5000));
        expect(extended).toStrictEqual({ ...a, expiresAt: at(5000).toISOString() });
        expect((await store.expire(at(1000))).map((r) => r.id)).toEqual([b.id]);
        expect(await store.extend(b.id, at(9000))).toBeUndefined();
        expect(await store.extend('no-such-id', at(9000))).toBeUndefined();
        expect((await store.expire(at(5000))).map((r) => r.id)).toEqual([a.id]);
      });

      it('expire: open reservations past expiresAt -> expired, bound ones stay', async () => {
        await donor('gpu-east', [node('n1', 3)]);
        const short = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 1000 }));
        const long = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 60_000 }));
        const bound = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ttlMs: 1000 }));
        await store.applyCapacity(
          'gpu-east',
          full([node('n1', 2, { offloadedPodUids: [bound.pod.uid] })], 2),
          at(1),
        );
        expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');

        expect(await store.expire(at(999))).toEqual([]);
        const expired = await store.expire(at(1000));
        expect(expired).toStrictEqual([
          {
            ...short,
            state: 'expired',
            endedAt: at(1000).toISOString(),
            reason: expired[0]?.reason ?? 'missing',
          },
        ]);
        expect(expired[0]?.reason).toBeTruthy();
        expect(await store.expire(at(2000))).toEqual([]);
        expect((await store.getReservation(long.id))?.state).toBe('open');
        expect((await store.getReservation(bound.id))?.state).toBe('bound');
        const later = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1), at(2000));
        // Returned in expiry order: `later` expires at 32s, `long` at 60s.
        expect((await store.expire(at(60_000))).map((r) => r.id)).toEqual([later.id, long.id]);
      });

      it('finds and lists reservations by origin, donor and state', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        await donor('gpu-west', [node('w1', 8)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1), at(1));
        const b = await reserveOk(
          store,
          reserveRequest('gpu-west', 'w1', 1, { origin: 'origin-b' }),
          at(2),
        );
        const c = await reserveOk(
          store,
          reserveRequest('gpu-east', 'n1', 1, { origin: 'origin-b' }),
          at(3),
        );
        const released = await store.release(c.id, 'x', at(4));
        expect(await store.listReservations()).toStrictEqual([a, b, released]);
        expect(await store.listReservations({ origin: 'origin-b' })).toStrictEqual([b, released]);
        expect(await store.listReservations({ donor: 'gpu-east' })).toStrictEqual([a, released]);
        expect(await store.listReservations({ states: ['open'] })).toStrictEqual([a, b]);
        expect(
          await store.listReservations({ states: ['released', 'ended'], donor: 'gpu-east' }),
        ).toStrictEqual([released]);
        expect(await store.listReservations({ states: [] })).toHaveLength(3);
        expect(await store.findReservationByPod(c.pod.uid)).toBeUndefined();
        expect(await store.findReservationByPod(b.pod.uid)).toStrictEqual(b);
        expect(await store.getReservation('nope')).toBeUndefined();
      });

      it('usage sums open and bound GPUs per donor and origin', async () => {
        await donor('gpu-east', [node('n1', 8), node('n2', 8)]);
        await donor('gpu-west', [node('w1', 8)]);
        expect(await store.usage('gpu-east')).toEqual({ total: 0, byOrigin: {} });
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 2));
        await reserveOk(store, reserveRequest('gpu-east', 'n2', 3, { origin: 'origin-b' }));
        await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await reserveOk(store, reserveRequest('gpu-west', 'w1', 4));
        const gone = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await store.release(gone.id, 'x', at(1));
        await store.applyCapacity(
          'gpu-east',
          full([node('n1', 6, { offloadedPodUids: [a.pod.uid] }), node('n2', 5)], 2),
          at(2),
        );
        expect(await store.usage('gpu-east')).toEqual({
          total: 6,
          byOrigin: { 'origin-a': 3, 'origin-b': 3 },
        });
        expect(await store.usage('gpu-west')).toEqual({ total: 4, byOrigin: { 'origin-a': 4 } });
      });

      it('updateRemoteStatus records the donor view on the live reservation', async () => {
        await donor('gpu-east', [node('n1', 8)]);
        const a = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await store.updateRemoteStatus(a.pod.uid, {
          remotePhase: 'Pending',
          remoteNamespace: 'spillway-origin-a',
          remoteName: 'train-x',
        });
        await store.updateRemoteStatus(a.pod.uid, { remotePhase: 'Running' });
        expect(await store.getReservation(a.id)).toStrictEqual({
          ...a,
          remotePhase: 'Running',
          remoteNamespace: 'spillway-origin-a',
          remoteName: 'train-x',
        });
        const err = await errorOf(
          store.updateRemoteStatus('no-such-uid', { remotePhase: 'Running' }),
        );
        expect(err.code).toBe('NOT_FOUND');
        await store.endByPod(a.pod.uid, 'Succeeded', at(1));
        expect(
          (await errorOf(store.updateRemoteStatus(a.pod.uid, { remotePhase: 'Failed' }))).code,
        ).toBe('NOT_FOUND');
        expect((await store.getReservation(a.id))?.remotePhase).toBe('Running');
      });

      it('pruneFinished deletes only reservations finished before the cut-off', async () => {
        if (!store.pruneFinished) throw new Error(`${name} store has no pruneFinished`);
        await donor('gpu-east', [node('n1', 8)]);
        const old = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        const recent = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        const live = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
        await store.release(old.id, 'x', at(1000));
        await store.endByPod(recent.pod.uid, 'y', at(5000));
        expect(await store.pruneFinished(at(2000))).toBe(1);
        expect(await store.getReservation(old.id)).toBeUndefined();
        expect((await store.listReservations()).map((r) => r.id)).toEqual([recent.id, live.id]);
        expect(await store.pruneFinished(at(2000))).toBe(0);
      });
    });

    it('keeps REST API tokens', async () => {
      const t = {
        id: 'tok1',
        secretHash: 'c'.repeat(64),
        role: 'admin' as const,
        description: 'ops',
        createdAt: T0.toISOString(),
      };
      const v = { ...t, id: 'tok2', role: 'viewer' as const, createdAt: at(1).toISOString() };
      await store.putApiToken(v);
      await store.putApiToken(t);
      expect(await store.getApiToken('tok1')).toStrictEqual(t);
      expect(await store.getApiToken('nope')).toBeUndefined();
      expect(await store.listApiTokens()).toStrictEqual([t, v]);
      await store.putApiToken({ ...t, description: 'rotated' });
      expect((await store.getApiToken('tok1'))?.description).toBe('rotated');
      expect(await store.deleteApiToken('tok1')).toBe(true);
      expect(await store.deleteApiToken('tok1')).toBe(false);
      expect(await store.listApiTokens()).toStrictEqual([v]);
    });

    it('survives a restart: clusters, peerings, tokens, revocations, reservations', async () => {
      await donor('gpu-east', [node('n1', 2)]);
      const p = peering('origin-a', 'gpu-east', { maxGpus: 2 });
      await store.putPeering(p);
      await store.revoke({ serial: 'beef', revokedAt: T0.toISOString(), reason: 'removed' });
      const token = {
        id: 'jt9',
        secretHash: 'd'.repeat(64),
        clusterId: 'x',
        role: 'origin' as const,
        createdAt: T0.toISOString(),
        expiresAt: at(60_000).toISOString(),
      };
      await store.createJoinToken(token);
      await store.consumeJoinToken('jt9', token.secretHash, at(1));
      const api = {
        id: 'api1',
        secretHash: 'e'.repeat(64),
        role: 'viewer' as const,
        description: '',
        createdAt: T0.toISOString(),
      };
      await store.putApiToken(api);
      const open = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
      const bound = await reserveOk(store, reserveRequest('gpu-east', 'n1', 1));
      await store.applyCapacity(
        'gpu-east',
        full([node('n1', 1, { offloadedPodUids: [bound.pod.uid] })], 2),
        at(2),
      );
      const clustersBefore = await store.listClusters();
      const inventoryBefore = await store.getInventory('gpu-east');

      store = await h.reopen();

      expect(await store.listClusters()).toStrictEqual(clustersBefore);
      expect(await store.getInventory('gpu-east')).toStrictEqual(inventoryBefore);
      expect(await store.getPeering('origin-a', 'gpu-east')).toStrictEqual(p);
      expect(await store.isRevoked('BEEF')).toBe(true);
      expect((await errorOf(store.consumeJoinToken('jt9', token.secretHash, at(3)))).code).toBe(
        'TOKEN_INVALID',
      );
      expect(await store.getApiToken('api1')).toStrictEqual(api);
      expect(await store.getReservation(open.id)).toStrictEqual(open);
      expect((await store.findReservationByPod(bound.pod.uid))?.state).toBe('bound');
      expect(await store.usage('gpu-east')).toEqual({ total: 2, byOrigin: { 'origin-a': 2 } });
      // The open reservation still holds its GPU after the restart.
      expect(await refusal(store, reserveRequest('gpu-east', 'n1', 1))).toBe('NO_FIT');
      expect(await store.expire(at(30_000))).toHaveLength(1);
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 1), at(30_000));
    });

    it('fails with STORE_UNAVAILABLE once closed', async () => {
      await store.close();
      expect((await errorOf(store.ping())).code).toBe('STORE_UNAVAILABLE');
      expect((await errorOf(store.listClusters())).code).toBe('STORE_UNAVAILABLE');
    });
  });
}

/** Free GPUs per node of the contended donor: 100 in all, unevenly spread. */
export const CONTENDED_FREE = [4, 6, 8, 10, 12, 15, 20, 25] as const;
export const CONTENDED_DONOR = 'gpu-contended';

export async function seedContendedDonor(store: Store): Promise<void> {
  await store.putCluster(cluster(CONTENDED_DONOR, { role: 'donor' }));
  await store.applyCapacity(
    CONTENDED_DONOR,
    full(CONTENDED_FREE.map((free, i) => node(`node-${i}`, free))),
    T0,
  );
}

/** `count` 1-GPU requests spread round-robin over the contended donor's nodes. */
export function contendedRequests(
  count: number,
  extra: (i: number) => Partial<ReserveRequest> = () => ({}),
): ReserveRequest[] {
  const run = Math.random().toString(36).slice(2, 8);
  return Array.from({ length: count }, (_, i) =>
    reserveRequest(CONTENDED_DONOR, `node-${i % CONTENDED_FREE.length}`, 1, {
      id: `c-${run}-${i}`,
      pod: { originCluster: 'origin-a', namespace: 'ml', name: `p-${i}`, uid: `c-${run}-uid-${i}` },
      ...extra(i),
    }),
  );
}

/**
 * Exactly `expectedOk` reserves won, every loser was refused for capacity or quota, no node
 * holds more open GPUs than it reported free, and the store agrees with what callers saw.
 */
export async function expectNoOvercommit(
  store: Store,
  results: readonly ReserveResult[],
  expectedOk: number,
): Promise<void> {
  const won = results.flatMap((r) => (r.ok ? [r.reservation] : []));
  expect(won).toHaveLength(expectedOk);
  for (const r of results) if (!r.ok) expect(['NO_FIT', 'QUOTA_EXCEEDED']).toContain(r.code);
  const open = await store.listReservations({ donor: CONTENDED_DONOR, states: ['open'] });
  expect(open.map((r) => r.id).sort()).toEqual(won.map((r) => r.id).sort());
  CONTENDED_FREE.forEach((free, i) => {
    const held = open.filter((r) => r.node === `node-${i}`).reduce((n, r) => n + r.gpus, 0);
    expect(held, `node-${i} reported ${free} free`).toBeLessThanOrEqual(free);
  });
  expect((await store.usage(CONTENDED_DONOR)).total).toBe(expectedOk);
}
