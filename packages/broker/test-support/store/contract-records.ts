import { beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_DONOR_POLICY } from '../../src/model.js';
import type { NodeInventory } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  type ContractContext,
  T0,
  at,
  cluster,
  errorOf,
  full,
  node,
  peering,
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

/** Store contract: Join tokens, clusters, revocation, peerings and REST API tokens. */
export function recordsContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });
  const donor = (id: string, nodes: NodeInventory[]): Promise<void> => seedDonor(store, id, nodes);

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
        Array.from({ length: 20 }, () => store.consumeJoinToken('jt1', token.secretHash, at(1000))),
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

    it('keeps the serials a renewal replaced, and forgets them when unset', async () => {
      const renewed = cluster('gpu-east', { certSerial: '0c', supersededSerials: ['0a', '0b'] });
      await store.putCluster(renewed);
      expect(await store.getCluster('gpu-east')).toStrictEqual(renewed);
      const { supersededSerials: _s, ...confirmed } = renewed;
      await store.putCluster(confirmed);
      expect(await store.getCluster('gpu-east')).toStrictEqual(confirmed);
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
    expect(await store.listPeerings({ origin: 'origin-b', donor: 'gpu-east' })).toStrictEqual([p3]);
    const draining = { ...p1, deletingSince: at(10).toISOString() };
    await store.putPeering(draining);
    expect(await store.getPeering('origin-a', 'gpu-east')).toStrictEqual(draining);
    expect(await store.deletePeering('origin-a', 'gpu-east')).toBe(true);
    expect(await store.deletePeering('origin-a', 'gpu-east')).toBe(false);
    expect(await store.listPeerings({ origin: 'origin-a' })).toStrictEqual([p2]);
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
}
