import { beforeEach, expect, it } from 'vitest';
import type { NodeInventory } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  type ContractContext,
  T0,
  at,
  errorOf,
  full,
  node,
  peering,
  refusal,
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

/** Store contract: What a restart keeps, and a closed store. */
export function durabilityContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });
  const donor = (id: string, nodes: NodeInventory[]): Promise<void> => seedDonor(store, id, nodes);

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

    store = await ctx.h.reopen();

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
}
