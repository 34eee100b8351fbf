// The Core on both stores: events, replicas and reporting. Shared setup: test-support/core/harness.ts.
import { describe, expect, it } from 'vitest';
import {
  A100,
  GPU,
  caught,
  describeCore,
  gpuNode,
  placement,
} from '../../test-support/core/harness.js';
describeCore((s) => {
  const { stores, time, newCore, peeredLab, joinAs } = s;
  describe('events, replicas and reporting', () => {
    it('emits peeringsChanged on capacity only when what is lent changes', async () => {
      const core = await newCore();
      await peeredLab(core);
      await core.idle();
      const changed: string[][] = [];
      core.events.on('peeringsChanged', (ids) => changed.push(ids));
      const report = (sequence: number, n1Free: number): Promise<void> =>
        core.applyCapacity('donor-a', {
          full: true,
          nodes: [gpuNode('n1', n1Free), gpuNode('n2', 4)],
          removedNodes: [],
          sequence,
        });
      await report(2, 8);
      await core.idle();
      // The same numbers again: nothing to tell the streams.
      expect(changed).toEqual([]);
      await report(3, 6);
      await core.idle();
      expect(changed).toEqual([['lab']]);
      await report(4, 6);
      await core.idle();
      expect(changed).toHaveLength(1);
      expect((await core.peeringState('lab')).asOrigin[0]?.lendable).toEqual({ [GPU]: 10 });
    });

    it("a replica that holds no stream notices a donor's readiness flip on its own reaper", async () => {
      const a = await newCore({ brokerId: 'replica-a' });
      const b = await newCore({ brokerId: 'replica-b' });
      await peeredLab(a);
      await b.tick();
      await b.idle();
      const seenByB: string[][] = [];
      b.events.on('peeringsChanged', (ids) => seenByB.push(ids));
      time.advance(16_000);
      await b.tick();
      expect(seenByB).toEqual([['donor-a', 'lab']]);
      const view = (await b.listClusters()).find((c) => c.id === 'donor-a');
      expect(view).toMatchObject({
        state: 'NotReady',
        connections: { agent: { brokerId: 'replica-a' } },
      });
    });

    it('start() runs the reaper on its own; stop() ends it', async () => {
      const core = await newCore({ reaperIntervalMs: 20 });
      await peeredLab(core);
      const r = await core.place('lab', placement('u1', 2));
      if (!r.placed) throw new Error(r.reason);
      time.advance(61_000);
      core.start();
      const deadline = Date.now() + 2000;
      while ((await stores[0]!.getReservation(r.reservation.id))?.state === 'open') {
        if (Date.now() > deadline) throw new Error('the reaper never expired the reservation');
        await new Promise((res) => setTimeout(res, 20));
      }
      expect((await stores[0]!.getReservation(r.reservation.id))?.state).toBe('expired');
      await core.stop();
    });

    it('capacity filters by product, memory, resource and origin', async () => {
      const core = await newCore();
      await peeredLab(core, 5);
      await joinAs(core, 'donor-b', 'donor');
      await core.connected('donor-b', 'agent');
      await core.applyCapacity('donor-b', {
        full: true,
        nodes: [
          gpuNode('t4-1', 4, { gpuProduct: 'Tesla-T4', gpuMemoryMiB: 15360 }),
          gpuNode('mig', 0, {
            gpus: { 'nvidia.com/mig-1g.10gb': { allocatable: 7, free: 7 } },
          }),
        ],
        removedNodes: [],
        sequence: 1,
      });
      const all = await core.capacity();
      expect(all.rows.map((r) => `${r.cluster}:${r.gpuProduct}:${r.resource}:${r.free}`)).toEqual([
        `donor-a:${A100}:${GPU}:12`,
        `donor-b:${A100}:nvidia.com/mig-1g.10gb:7`,
        `donor-b:Tesla-T4:${GPU}:4`,
      ]);
      expect(all.totals).toEqual({ allocatable: 31, free: 23 });
      expect((await core.capacity({ gpuProduct: 'Tesla-T4' })).totals.free).toBe(4);
      expect((await core.capacity({ minGpuMemoryMiB: 40_000, resource: GPU })).rows).toHaveLength(
        1,
      );
      // lab is peered with donor-a only, limited to 5 GPUs.
      const mine = await core.capacity({ origin: 'lab' });
      expect(mine.rows).toHaveLength(1);
      expect(mine.rows[0]).toMatchObject({ cluster: 'donor-a', free: 5, largestFreeOnNode: 5 });
      const err = await caught(core.capacity({ minGpuMemoryMiB: -1 }));
      expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', 'minGpuMemoryMiB']);
    });

    it('refuses a capacity report with impossible amounts and keeps the old inventory', async () => {
      const core = await newCore();
      await peeredLab(core);
      const bad = gpuNode('n1', 8, { gpus: { [GPU]: { allocatable: 4, free: 8 } } });
      const err = await caught(
        core.applyCapacity('donor-a', {
          full: true,
          nodes: [bad],
          removedNodes: [],
          sequence: 9,
        }),
      );
      expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', `nodes[0].gpus[${GPU}].free`]);
      expect((await core.getInventory('donor-a'))?.nodes.map((n) => n.name)).toEqual(['n1', 'n2']);
    });
  });
});
