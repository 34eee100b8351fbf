import { beforeEach, describe, expect, it } from 'vitest';
import type { NodeInventory } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  type ContractContext,
  at,
  errorOf,
  full,
  node,
  refusal,
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

/** Store contract: A reservation after reserve(): release, end, rebind, extend, expire, list, prune. */
export function lifecycleContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });
  const donor = (id: string, nodes: NodeInventory[]): Promise<void> => seedDonor(store, id, nodes);

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
      if (!store.pruneFinished) throw new Error(`${store.kind} store has no pruneFinished`);
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
}
