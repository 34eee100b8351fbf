// The Core on both stores: placement. Shared setup: test-support/core/harness.ts.
import { describe, expect, it } from 'vitest';
import { Metrics } from '../metrics.js';
import type { PlacementRequest } from './api.js';
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
  describe('placement', () => {
    it("ends a bound reservation whose pod is missing from the donor's next full report", async () => {
      const core = await newCore();
      await peeredLab(core);
      const a = await core.place('lab', placement('uid-a', 2));
      const b = await core.place('lab', placement('uid-b', 1));
      if (!a.placed || !b.placed) throw new Error('not placed');
      expect([a.reservation.node, b.reservation.node]).toEqual(['n2', 'n2']);
      await core.applyCapacity('donor-a', {
        full: false,
        nodes: [gpuNode('n2', 1, { offloadedPodUids: ['uid-a', 'uid-b'] })],
        removedNodes: [],
        sequence: 2,
      });
      expect((await stores[0]!.getReservation(a.reservation.id))?.state).toBe('bound');
      // The agent reconnects after a pod ended unseen: its snapshot shows only uid-b. A
      // delta that leaves n2 out changes nothing; the full report ends uid-a's reservation.
      await core.applyCapacity('donor-a', {
        full: false,
        nodes: [gpuNode('n1', 8)],
        removedNodes: [],
        sequence: 3,
      });
      expect((await stores[0]!.getReservation(a.reservation.id))?.state).toBe('bound');
      await core.applyCapacity('donor-a', {
        full: true,
        nodes: [gpuNode('n1', 8), gpuNode('n2', 3, { offloadedPodUids: ['uid-b'] })],
        removedNodes: [],
        sequence: 1,
      });
      expect(await stores[0]!.getReservation(a.reservation.id)).toMatchObject({
        state: 'ended',
        reason: 'remote pod no longer on donor-a/n2 (full report)',
      });
      expect((await stores[0]!.getReservation(b.reservation.id))?.state).toBe('bound');
      expect((await core.peeringState('lab')).asOrigin[0]?.inUse).toEqual({ [GPU]: 1 });
    });

    it('place -> reserve -> capacity shows it -> donor reports the pod -> bound -> ends', async () => {
      const core = await newCore();
      await peeredLab(core);
      const before = await core.capacity({ origin: 'lab' });
      expect(before.totals).toEqual({ allocatable: 16, free: 12 });

      const res = await core.place('lab', placement('uid-1', 2));
      if (!res.placed) throw new Error(res.reason);
      // binpack: the 4-GPU node, leaving the 8-GPU node whole.
      expect(res.reservation).toMatchObject({
        origin: 'lab',
        donor: 'donor-a',
        node: 'n2',
        gpus: 2,
        state: 'open',
      });
      expect(res.verdicts.filter((v) => v.reason === '').map((v) => v.node)).toEqual(['n2', 'n1']);

      // The same pod asking again gets the same reservation.
      const retry = await core.place('lab', placement('uid-1', 2));
      expect(retry.placed && retry.reservation.id).toBe(res.reservation.id);

      const during = await core.capacity({ origin: 'lab' });
      expect(during.rows).toEqual([
        {
          cluster: 'donor-a',
          gpuProduct: A100,
          gpuMemoryMiB: 81920,
          resource: GPU,
          allocatable: 16,
          free: 10,
          largestFreeOnNode: 8,
          nodes: 2,
        },
      ]);
      expect((await core.peeringState('lab')).asOrigin[0]?.inUse).toEqual({ [GPU]: 2 });

      // The donor's report now counts the pod itself: the reservation binds, free stays 10.
      await core.applyCapacity('donor-a', {
        full: false,
        nodes: [gpuNode('n2', 2, { offloadedPodUids: ['uid-1'] })],
        removedNodes: [],
        sequence: 2,
      });
      expect((await stores[0]!.getReservation(res.reservation.id))?.state).toBe('bound');
      expect((await core.capacity({ origin: 'lab' })).totals.free).toBe(10);

      await core.podStatus('donor-a', {
        pod: res.reservation.pod,
        remoteNamespace: 'spillway-lab',
        remoteName: 'pod-uid-1',
        nodeName: 'n2',
        phase: 'Running',
        deleted: false,
      });
      expect(await stores[0]!.getReservation(res.reservation.id)).toMatchObject({
        state: 'bound',
        remotePhase: 'Running',
        remoteNamespace: 'spillway-lab',
      });
      // Another donor cannot speak for this pod.
      expect(
        (
          await caught(
            core.podStatus('lab', {
              pod: res.reservation.pod,
              remoteNamespace: '',
              remoteName: '',
              nodeName: '',
              phase: 'Failed',
              deleted: false,
            }),
          )
        ).code,
      ).toBe('PERMISSION_DENIED');

      await core.podStatus('donor-a', {
        pod: res.reservation.pod,
        remoteNamespace: 'spillway-lab',
        remoteName: 'pod-uid-1',
        nodeName: 'n2',
        phase: 'Succeeded',
        deleted: false,
      });
      expect(await stores[0]!.getReservation(res.reservation.id)).toMatchObject({
        state: 'ended',
        reason: 'remote pod Succeeded',
      });
      expect((await core.offloads({ origin: 'lab', states: ['ended'] })).map((r) => r.id)).toEqual([
        res.reservation.id,
      ]);
    });

    it('refuses bad requests naming the field and reserves nothing', async () => {
      const core = await newCore();
      await peeredLab(core);
      const cases: [PlacementRequest, string][] = [
        [placement('u', 0), 'gpus'],
        [placement('u', 1.5), 'gpus'],
        [placement('u', 65), 'gpus'],
        [placement('u', 1, { cpuMillis: -1 }), 'cpuMillis'],
        [placement(''), 'pod.uid'],
        [
          placement('u', 1, {
            pod: { originCluster: 'donor-a', namespace: 'ml', name: 'x', uid: 'u' },
          }),
          'pod.originCluster',
        ],
        [
          placement('u', 1, { nodeRequirements: [{ key: 'a', operator: 'Gt', values: ['x'] }] }),
          'nodeRequirements[0].values',
        ],
        [placement('u', 1, { donors: ['Not An Id'] }), 'donors[0]'],
        [placement('u', 1, { policy: 'random' as never }), 'policy'],
      ];
      for (const [request, field] of cases) {
        const err = await caught(core.place('lab', request));
        expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', field]);
      }
      expect(
        await caught(
          core.place(
            'ghost',
            placement('u', 1, {
              pod: { originCluster: 'ghost', namespace: 'ml', name: 'x', uid: 'u' },
            }),
          ),
        ),
      ).toMatchObject({
        code: 'NOT_FOUND',
        field: 'origin',
      });
      expect(await core.offloads()).toEqual([]);
    });

    it('counts each placement once by its outcome in the metrics it was given', async () => {
      const metrics = new Metrics();
      const core = await newCore({ metrics });
      await peeredLab(core);
      const count = async (result: string): Promise<number> => {
        const m = new RegExp(`spillway_placements_total\\{result="${result}"\\} (\\d+)`).exec(
          await metrics.render(),
        );
        return m ? Number(m[1]) : 0;
      };
      expect((await core.place('lab', placement('m1'))).placed).toBe(true);
      expect(await count('placed')).toBe(1);
      expect((await core.place('lab', placement('m2', 64))).placed).toBe(false);
      expect(await count('NO_FIT')).toBe(1);
      await caught(core.place('lab', placement('m3', 0)));
      expect(await count('INVALID_ARGUMENT')).toBe(1);
      await core.simulate('lab', placement('m4'));
      expect(await count('placed')).toBe(1);
    });

    it('simulate reserves nothing', async () => {
      const core = await newCore();
      await peeredLab(core);
      const sim = await core.simulate('lab', placement('u', 8));
      expect(sim).toMatchObject({
        placed: true,
        simulated: true,
        reservation: { id: '', node: 'n1', gpus: 8 },
      });
      expect(await core.offloads()).toEqual([]);
    });

    it('release only by the origin; expiry by the reaper returns the GPUs', async () => {
      const core = await newCore();
      await peeredLab(core);
      await joinAs(core, 'other', 'origin');
      const a = await core.place('lab', placement('u1', 8));
      const b = await core.place('lab', placement('u2', 4));
      if (!a.placed || !b.placed) throw new Error('expected placements');
      const full = await core.place('lab', placement('u3', 1));
      expect(full).toMatchObject({ placed: false, code: 'NO_FIT' });

      expect((await caught(core.release('other', a.reservation.id, 'x'))).code).toBe(
        'PERMISSION_DENIED',
      );
      expect((await caught(core.release('lab', 'nope', 'x'))).code).toBe('NOT_FOUND');
      expect(await core.release('lab', a.reservation.id, 'pod deleted')).toBe(true);
      expect(await core.release('lab', a.reservation.id, 'again')).toBe(false);
      expect((await stores[0]!.getReservation(a.reservation.id))?.state).toBe('released');

      // Updates for the placements above must not be mistaken for the expiry's.
      await core.idle();
      const changed: string[][] = [];
      core.events.on('peeringsChanged', (ids) => changed.push(ids));
      time.advance(61_000);
      await core.connected('donor-a', 'agent');
      changed.length = 0;
      await core.tick();
      expect((await stores[0]!.getReservation(b.reservation.id))?.state).toBe('expired');
      await core.idle();
      // What is lent matters to the origin (its virtual node's capacity), not to the donor.
      expect(changed).toContainEqual(['lab']);
      expect((await core.place('lab', placement('u3', 4))).placed).toBe(true);
    });

    it('enforces the peering limit', async () => {
      const core = await newCore();
      await peeredLab(core, 3);
      expect((await core.place('lab', placement('u1', 2))).placed).toBe(true);
      const r = await core.place('lab', placement('u2', 2));
      expect(r).toMatchObject({ placed: false, code: 'QUOTA_EXCEEDED' });
      expect(!r.placed && r.reason).toContain(
        'donor-a: peering limit 3 GPUs would be exceeded (2 in use, 2 requested)',
      );
      expect((await core.capacity({ origin: 'lab' })).totals.free).toBe(1);
    });

    it('heartbeats lapse -> NotReady -> DONOR_NOT_READY, and back', async () => {
      const core = await newCore({ heartbeatTimeoutMs: 15_000 });
      await peeredLab(core);
      await core.tick();
      await core.idle();
      const changed: string[][] = [];
      core.events.on('peeringsChanged', (ids) => changed.push(ids));

      time.advance(10_000);
      await core.heartbeat('donor-a', 'agent');
      time.advance(10_000);
      await core.tick();
      expect(changed).toEqual([]);
      expect((await core.place('lab', placement('u1'))).placed).toBe(true);
      // Let the debounced lending update for that placement go out first.
      await core.idle();
      changed.length = 0;

      time.advance(20_000);
      await core.tick();
      expect(changed).toEqual([['donor-a', 'lab']]);
      expect((await core.listClusters()).find((c) => c.id === 'donor-a')?.state).toBe('NotReady');
      const refused = await core.place('lab', placement('u2'));
      expect(refused).toMatchObject({
        placed: false,
        code: 'DONOR_NOT_READY',
        reason: 'no peered donor is ready: donor-a: NotReady (no heartbeat for 30s)',
      });
      expect((await core.peeringState('lab')).asOrigin[0]).toMatchObject({
        donorState: 'NotReady',
        lendable: { [GPU]: 0 },
      });

      await core.heartbeat('donor-a', 'agent');
      expect(changed).toEqual([
        ['donor-a', 'lab'],
        ['donor-a', 'lab'],
      ]);
      expect((await core.place('lab', placement('u2'))).placed).toBe(true);

      await core.disconnected('donor-a', 'agent');
      expect((await core.listClusters()).find((c) => c.id === 'donor-a')?.state).toBe('NotReady');
      expect((await core.place('lab', placement('u3'))).placed).toBe(false);
    });

    it('cordoning through patchCluster stops placements; bad patches change nothing', async () => {
      const core = await newCore();
      await peeredLab(core);
      const err = await caught(
        core.patchCluster('donor-a', { policy: { maxGpus: -2, cordoned: true } }),
      );
      expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', 'policy.maxGpus']);
      expect(
        (await caught(core.patchCluster('donor-a', { policy: { colour: 'red' } as never }))).field,
      ).toBe('policy.colour');
      expect((await core.place('lab', placement('u0'))).placed).toBe(true);

      const view = await core.patchCluster('donor-a', { cordoned: true });
      expect(view.policy.cordoned).toBe(true);
      expect(await core.place('lab', placement('u1'))).toMatchObject({
        placed: false,
        code: 'DONOR_NOT_READY',
        reason: 'no peered donor is ready: donor-a: cordoned',
      });
      expect((await core.peeringState('lab')).asOrigin[0]?.donorState).toBe('Cordoned');
    });
  });
});
