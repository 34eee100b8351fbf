// The Core on both stores: peerings. Shared setup: test-support/core/harness.ts.
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
  const { newCore, peeredLab, joinAs } = s;
  describe('peerings', () => {
    it('creates, lists, reports lending and deletes, with events', async () => {
      const core = await newCore();
      await joinAs(core, 'lab', 'origin');
      await joinAs(core, 'donor-a', 'donor');
      const changed: string[][] = [];
      core.events.on('peeringsChanged', (ids) => changed.push(ids));

      const pending = await core.createPeering({ origin: 'lab', donor: 'donor-a', maxGpus: 10 });
      expect(pending).toMatchObject({
        origin: 'lab',
        donor: 'donor-a',
        maxGpus: 10,
        gpuProducts: [],
        donorState: 'Pending',
        tenantNamespace: 'spillway-lab',
        podSecurity: 'baseline',
      });
      expect(changed).toEqual([['donor-a', 'lab']]);

      await core.connected('donor-a', 'agent');
      await core.applyCapacity('donor-a', {
        full: true,
        nodes: [gpuNode('n1', 8), gpuNode('n2', 4), gpuNode('t4', 4, { gpuProduct: 'Tesla-T4' })],
        removedNodes: [],
        sequence: 1,
      });
      const state = await core.peeringState('lab');
      expect(state.asDonor).toEqual([]);
      expect(state.asOrigin).toHaveLength(1);
      // 16 free on the nodes, clipped to the peering's 10.
      expect(state.asOrigin[0]).toMatchObject({
        donorState: 'Ready',
        lendable: { [GPU]: 10 },
        inUse: {},
        donorGpuProducts: [A100, 'Tesla-T4'].sort(),
      });
      expect((await core.peeringState('donor-a')).asDonor[0]?.origin).toBe('lab');

      // Re-creating updates the limits and the product filter.
      const updated = await core.createPeering({
        origin: 'lab',
        donor: 'donor-a',
        gpuProducts: [A100],
      });
      expect(updated.createdAt).toBe(pending.createdAt);
      expect(updated.lendable).toEqual({ [GPU]: 12 });
      expect(updated.donorGpuProducts).toEqual([A100]);

      expect((await core.assertPeered('lab', 'donor-a')).donor).toBe('donor-a');
      await core.deletePeering('lab', 'donor-a');
      expect((await caught(core.assertPeered('lab', 'donor-a'))).code).toBe('NO_PEERING');
      expect((await caught(core.deletePeering('lab', 'donor-a'))).code).toBe('NOT_FOUND');
      expect(await core.listPeerings({ origin: 'lab' })).toEqual([]);
    });

    it('draining a peering stops new placements until it is created again', async () => {
      const core = await newCore();
      await peeredLab(core);
      expect((await core.place('lab', placement('running', 1))).placed).toBe(true);
      const drained = await core.drainPeering('lab', 'donor-a');
      expect(drained.deletingSince).toBeDefined();
      expect(drained.lendable).toEqual({ [GPU]: 0 });
      expect(drained.inUse).toEqual({ [GPU]: 1 });
      expect((await core.drainPeering('lab', 'donor-a')).deletingSince).toBe(drained.deletingSince);
      expect(await core.place('lab', placement('new', 1))).toMatchObject({
        placed: false,
        code: 'NO_PEERING',
      });
      expect((await caught(core.assertPeered('lab', 'donor-a'))).code).toBe('NO_PEERING');
      // Its running pods still report and can be deleted while it drains.
      expect((await core.assertPeered('lab', 'donor-a', { allowDraining: true })).donor).toBe(
        'donor-a',
      );
      expect((await caught(core.drainPeering('lab', 'ghost'))).code).toBe('NOT_FOUND');
      await core.createPeering({ origin: 'lab', donor: 'donor-a' });
      expect((await core.place('lab', placement('new', 1))).placed).toBe(true);
    });

    it.each([
      [{ origin: 'lab', donor: 'lab' }, 'donor', 'INVALID_ARGUMENT'],
      [{ origin: 'lab', donor: 'ghost' }, 'donor', 'NOT_FOUND'],
      [{ origin: 'donor-a', donor: 'lab' }, 'origin', 'INVALID_ARGUMENT'],
      [{ origin: 'lab', donor: 'donor-a', maxGpus: -1 }, 'maxGpus', 'INVALID_ARGUMENT'],
      [
        { origin: 'lab', donor: 'donor-a', gpuProducts: [''] },
        'gpuProducts[0]',
        'INVALID_ARGUMENT',
      ],
    ])('refuses %j', async (input, field, code) => {
      const core = await newCore();
      await joinAs(core, 'lab', 'origin');
      await joinAs(core, 'donor-a', 'donor');
      const err = await caught(core.createPeering(input));
      expect([err.code, err.field]).toEqual([code, field]);
      expect(await core.listPeerings()).toEqual([]);
    });
  });
});
