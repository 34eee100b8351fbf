import { beforeEach, describe, expect, it } from 'vitest';
import type { NodeInventory, ReservationRecord } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  type ContractContext,
  GPU,
  MIG,
  T0,
  at,
  errorOf,
  full,
  node,
  refusal,
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

/** Store contract: reserve(): the atomic fit and quota check. */
export function reserveContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });
  const donor = (id: string, nodes: NodeInventory[]): Promise<void> => seedDonor(store, id, nodes);

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
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-b' }));
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
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-b' }));
    });

    it('refuses QUOTA_EXCEEDED past donorMaxGpus across origins', async () => {
      await donor('gpu-east', [node('n1', 8)]);
      const limit = { donorMaxGpus: 3 };
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, limit));
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 1, { ...limit, origin: 'origin-b' }));
      expect(
        await refusal(store, reserveRequest('gpu-east', 'n1', 1, { ...limit, origin: 'origin-c' })),
      ).toBe('QUOTA_EXCEEDED');
      // Finished reservations no longer count.
      const [first] = await store.listReservations({ origin: 'origin-a' });
      await store.release(first!.id, 'test', at(1));
      await reserveOk(store, reserveRequest('gpu-east', 'n1', 2, { ...limit, origin: 'origin-c' }));
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
}
