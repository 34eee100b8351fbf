import { beforeEach, describe, expect, it } from 'vitest';
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
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

/** Store contract: Capacity reports, the reservations they bind, and connections. */
export function inventoryContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });
  const donor = (id: string, nodes: NodeInventory[]): Promise<void> => seedDonor(store, id, nodes);

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
}
