// Faults on one broker (embedded SQLite): each part of Spillway is SIGKILLed and started
// again, links are dropped and stalled, API servers go away, a donor is lost for good —
// all while offloaded pods run and new ones are being offloaded. After each: no pod lost or
// duplicated, no GPU promised twice, no orphan once things settle, and the time it took.
import { describe, expect, it } from 'vitest';
import { BatchV1Api, type V1Job } from '@kubernetes/client-node';
import { gpuNode, podOutcome, poll } from '../testbed/index.js';
import { phases, settle, snapshot } from './audit.js';
import { FULL, HEARTBEAT_TIMEOUT_MS, WORK_NAMESPACE, sleep, useChaosBed } from './bed.js';
import {
  allRunning,
  both,
  createPods,
  gpuPodSpec,
  removeApp,
  report,
  underFault,
} from './workload.js';

const STEADY = 6;
const STEADY_GPUS = 2;
/** Donor API server outage: 60 s in the full run, shorter in CI. */
const DONOR_APISERVER_OUTAGE_MS = FULL ? 60_000 : 15_000;
/** Broker unreachable for the shim: past the 2 s grace period, short of the donor-lost timeout. */
const SHIM_OUTAGE_MS = 4_000;
/** Pods offloaded to donor-a while its API server is down. */
const LATE_PODS = 4;

const chaos = useChaosBed(
  'one broker, SQLite',
  {
    store: 'sqlite',
    donors: {
      'donor-a': [0, 1, 2].map((i) => gpuNode(`donor-a-gpu-${i}`, 16)),
      'donor-b': [0, 1, 2].map((i) => gpuNode(`donor-b-gpu-${i}`, 16)),
    },
  },
  { pods: STEADY, gpus: STEADY_GPUS },
);
const { steadyUntouched, assertRunningUntouched } = chaos;

async function cordon(donor: string, cordoned: boolean): Promise<void> {
  const { bed } = chaos;
  await bed.api('PATCH', `/api/v1/clusters/${donor}`, { cordoned });
  await poll(
    async () => {
      const n = await bed.origin.core.readNode({ name: `spillway-${donor}` });
      return (n.spec?.unschedulable ?? false) === cordoned ? true : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 200, what: `spillway-${donor} cordoned=${cordoned}` },
  );
}

/** The broker's record of the shim's stream: absent while it has none. */
async function shimStream(): Promise<{ connectedAt: string } | undefined> {
  const c = (await chaos.bed.api('GET', '/api/v1/clusters/origin')) as {
    connections: Record<string, { connectedAt: string } | undefined>;
  };
  return c.connections['virtual-node'];
}

/** Waits for a shim stream opened after `since`, then for both virtual nodes Ready. */
async function waitShimBack(since: number): Promise<number> {
  const { bed } = chaos;
  const at = await poll(
    async () => {
      const s = await shimStream().catch(() => undefined);
      return s && Date.parse(s.connectedAt) > since ? Date.now() : undefined;
    },
    {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: `a new shim stream at the broker (shim log ${bed.shim.logFile})`,
      abort: () => bed.shim.died(),
    },
  );
  await bed.waitVirtualNodesReady();
  return at;
}

/** How many pods of app are bound to a node. */
async function bound(app: string): Promise<number> {
  const s = await snapshot(chaos.bed);
  return s.origin.filter((p) => p.metadata?.labels?.app === app && p.spec?.nodeName).length;
}

describe('faults on one broker (SQLite)', { timeout: 240_000 }, () => {
  it('broker SIGKILLed mid-offload and restarted: its SQLite state carries on', async () => {
    const { bed } = chaos;
    await underFault(bed, {
      fault: 'broker SIGKILL + restart (SQLite)',
      wave: { app: 'w-broker', pods: 12 },
      inject: async () => {
        await sleep(2_500);
        const t = Date.now();
        await bed.brokers[0]!.daemon.kill();
        await sleep(4_000);
        await assertRunningUntouched();
        await bed.startBroker(bed.brokers[0]!);
        return { outageMs: Date.now() - t };
      },
      expect: both(steadyUntouched, allRunning('w-broker', 12)),
    });
    await removeApp(bed, 'w-broker');
  });

  it('agent–broker link dropped: the stream comes back by itself', async () => {
    const { bed } = chaos;
    // Only donor-a takes new pods, so the wave must go through the link we cut.
    await cordon('donor-b', true);
    try {
      await underFault(bed, {
        fault: 'agent link cut (donor-a)',
        wave: { app: 'w-cut', pods: 6 },
        inject: async () => {
          await sleep(2_000);
          const t = Date.now();
          const dropped = bed.proxies.get('agent:donor-a')!.cut();
          expect(dropped).toBeGreaterThan(0);
          return { outageMs: Date.now() - t, note: `${dropped} connection(s) reset` };
        },
        expect: both(steadyUntouched, allRunning('w-cut', 6)),
      });
      await removeApp(bed, 'w-cut');
    } finally {
      await cordon('donor-b', false);
    }
  });

  it('agent–broker link stalled: the heartbeat timeout notices and the agent reconnects', async () => {
    const { bed } = chaos;
    await cordon('donor-b', true);
    const proxy = bed.proxies.get('agent:donor-a')!;
    try {
      await underFault(bed, {
        fault: 'agent link stalled (donor-a)',
        wave: { app: 'w-stall', pods: 6 },
        inject: async () => {
          await sleep(2_000);
          const t = Date.now();
          // Nothing is closed: only a heartbeat can tell the link is dead.
          proxy.stall();
          const staleLinks = proxy.connections().size;
          const notReady = await poll(
            async () =>
              (await bed.clusterState('donor-a')) === 'NotReady' ? Date.now() : undefined,
            {
              timeoutMs: HEARTBEAT_TIMEOUT_MS * 4,
              intervalMs: 200,
              what: 'donor-a NotReady at the broker',
            },
          );
          const detectMs = notReady - t;
          // The broker gives a silent stream heartbeatTimeout, and its reaper a tick more.
          expect(detectMs).toBeLessThan(HEARTBEAT_TIMEOUT_MS * 3);
          await assertRunningUntouched();
          // The agent finds a new connection (new ones are not stalled) and is Ready again.
          await bed.waitAgentConnected('donor-a', 60_000);
          const back = Date.now() - t;
          proxy.resume();
          return {
            outageMs: back,
            note: `${staleLinks} link(s) stalled; NotReady at the broker after ${(detectMs / 1000).toFixed(1)} s, agent reconnected after ${(back / 1000).toFixed(1)} s`,
          };
        },
        expect: both(steadyUntouched, allRunning('w-stall', 6)),
      });
      await removeApp(bed, 'w-stall');
    } finally {
      proxy.resume();
      await cordon('donor-b', false);
    }
  });

  it('shim–broker link dropped while pods wait for placement: the shim reconnects and places them', async () => {
    const { bed } = chaos;
    const proxy = bed.proxies.get('shim')!;
    try {
      await underFault(bed, {
        fault: `shim link cut, broker unreachable ${SHIM_OUTAGE_MS / 1000} s`,
        wave: { app: 'w-shim-cut', pods: 6 },
        inject: async () => {
          // Inside the grace period: the wave's placements are all asked during the outage.
          await sleep(500);
          const t = Date.now();
          proxy.refuse(true);
          const dropped = proxy.cut();
          expect(dropped).toBeGreaterThan(0);
          await sleep(SHIM_OUTAGE_MS);
          // The grace period is over, and without the broker nothing was placed.
          expect(await bound('w-shim-cut'), 'wave pods bound while the broker was away').toBe(0);
          await assertRunningUntouched();
          proxy.refuse(false);
          const outageMs = Date.now() - t;
          // Watched from here, so the reconnect counts in the recovery, as for the agent link.
          const back = waitShimBack(t);
          back.catch(() => undefined);
          return {
            outageMs,
            note: `${dropped} connection(s) reset`,
            recovered: async () => {
              const ms = (await back) - t - outageMs;
              return `the shim's stream back ${(ms / 1000).toFixed(1)} s after the broker was reachable`;
            },
          };
        },
        expect: both(steadyUntouched, allRunning('w-shim-cut', 6)),
      });
      await removeApp(bed, 'w-shim-cut');
    } finally {
      proxy.refuse(false);
    }
  });

  it('shim–broker link stalled while pods wait for placement: the heartbeat notices and the shim reconnects', async () => {
    const { bed } = chaos;
    const proxy = bed.proxies.get('shim')!;
    try {
      await underFault(bed, {
        fault: 'shim link stalled',
        wave: { app: 'w-shim-stall', pods: 6 },
        inject: async () => {
          await sleep(500);
          const before = await shimStream();
          expect(before, 'the shim has a stream').toBeDefined();
          const t = Date.now();
          // Nothing is closed: only heartbeats and keepalives can tell the link is dead.
          proxy.stall();
          const staleLinks = proxy.connections().size;
          const dropped = await poll(
            async () =>
              (await shimStream())?.connectedAt !== before?.connectedAt ? Date.now() : undefined,
            {
              timeoutMs: HEARTBEAT_TIMEOUT_MS * 4,
              intervalMs: 200,
              what: "the broker drops the shim's silent stream",
            },
          );
          const detectMs = dropped - t;
          // The broker gives a silent stream heartbeatTimeout, and its reaper a tick more.
          expect(detectMs).toBeLessThan(HEARTBEAT_TIMEOUT_MS * 3);
          await assertRunningUntouched();
          // New connections are not stalled: the shim finds one and opens its stream again.
          const back = (await waitShimBack(t)) - t;
          proxy.resume();
          return {
            outageMs: back,
            note: `${staleLinks} link(s) stalled; the broker dropped the stream after ${(detectMs / 1000).toFixed(1)} s, the shim reconnected after ${(back / 1000).toFixed(1)} s`,
          };
        },
        expect: both(steadyUntouched, allRunning('w-shim-stall', 6)),
      });
      await removeApp(bed, 'w-shim-stall');
    } finally {
      proxy.resume();
    }
  });

  it('donor agent SIGKILLed while it runs pods and creates new ones, then restarted', async () => {
    const { bed } = chaos;
    await cordon('donor-b', true);
    try {
      await underFault(bed, {
        fault: 'donor agent SIGKILL + restart (donor-a)',
        wave: { app: 'w-agent', pods: 8 },
        inject: async () => {
          await sleep(2_500);
          const t = Date.now();
          const agent = bed.agents.get('donor-a')!;
          await agent.kill();
          await sleep(4_000);
          await assertRunningUntouched();
          agent.start();
          await bed.waitAgentConnected('donor-a');
          return { outageMs: Date.now() - t };
        },
        expect: both(steadyUntouched, allRunning('w-agent', 8)),
      });
      await removeApp(bed, 'w-agent');
    } finally {
      await cordon('donor-b', false);
    }
  });

  it(`donor API server stopped for ${DONOR_APISERVER_OUTAGE_MS / 1000} s and restarted, with pods offloaded to it meanwhile`, async () => {
    const { bed } = chaos;
    await cordon('donor-b', true);
    try {
      await underFault(bed, {
        fault: `donor API server down ${DONOR_APISERVER_OUTAGE_MS / 1000} s (donor-a)`,
        wave: { app: 'w-apiserver', pods: 6 },
        skipDonors: () =>
          bed.donor('donor-a').component('kube-apiserver').running ? [] : ['donor-a'],
        inject: async () => {
          await sleep(2_500);
          const t = Date.now();
          await bed.donor('donor-a').stopApiServer();
          const down = Date.now();
          // New pods that only donor-a can take, asked for while its API server is away.
          await sleep(1_000);
          await createPods(bed, 'w-apiserver-late', LATE_PODS);
          await sleep(Math.max(0, DONOR_APISERVER_OUTAGE_MS - (Date.now() - down)));
          await assertRunningUntouched(['donor-a']);
          const boundMeanwhile = await bound('w-apiserver-late');
          await bed.donor('donor-a').startApiServer();
          return {
            outageMs: Date.now() - t,
            note: `${LATE_PODS} pods created during the outage, ${boundMeanwhile} of them bound to spillway-donor-a before it ended`,
          };
        },
        expect: both(
          steadyUntouched,
          allRunning('w-apiserver', 6),
          allRunning('w-apiserver-late', LATE_PODS),
        ),
        timeoutMs: 150_000,
      });
      await removeApp(bed, 'w-apiserver');
      await removeApp(bed, 'w-apiserver-late');
    } finally {
      // Leave nothing behind to crowd the next scenario out, whatever happened.
      await bed.origin.core
        .deleteCollectionNamespacedPod({
          namespace: WORK_NAMESPACE,
          labelSelector: 'app=w-apiserver-late',
        })
        .catch(() => undefined);
      await cordon('donor-b', false);
    }
  }, 300_000);

  it('shim SIGKILLed in the middle of a burst of 100 pods, then restarted', async () => {
    const { bed } = chaos;
    const s0 = await snapshot(bed);
    const used = (s0.reservations ?? []).reduce((n, r) => n + r.gpus, 0);
    const free =
      Object.values(bed.capacity)
        .flatMap((nodes) => Object.values(nodes))
        .reduce((a, b) => a + b, 0) - used;
    const fits = Math.min(100, free);
    await underFault(bed, {
      fault: 'shim SIGKILL mid-burst of 100 pods + restart',
      wave: { app: 'w-burst', pods: 100 },
      inject: async () => {
        // Kill it once some pods are offloaded and many are still on their way.
        await poll(
          async () => {
            const s = await snapshot(bed);
            const bound = s.origin.filter(
              (p) => p.metadata?.labels?.app === 'w-burst' && p.spec?.nodeName,
            ).length;
            return bound >= 15 ? true : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 100, what: '15 burst pods bound' },
        );
        const t = Date.now();
        await bed.shim.kill();
        const s = await snapshot(bed);
        const bound = s.origin.filter(
          (p) => p.metadata?.labels?.app === 'w-burst' && p.spec?.nodeName,
        ).length;
        await sleep(3_000);
        await assertRunningUntouched();
        bed.shim.start();
        return { outageMs: Date.now() - t, note: `${bound}/100 bound at the kill; ${fits} fit` };
      },
      expect: both(steadyUntouched, allRunning('w-burst', fits, 100 - fits)),
      timeoutMs: 180_000,
    });
    // The ones that did not fit hold nothing and have been told why.
    const s = await snapshot(bed);
    for (const p of phases(s, 'w-burst').Pending ?? []) expect(p.spec?.nodeName).toBeUndefined();
    await removeApp(bed, 'w-burst');
  }, 300_000);

  it('origin API server restarted while pods are being offloaded', async () => {
    const { bed } = chaos;
    await underFault(bed, {
      fault: 'origin API server restart',
      wave: { app: 'w-origin', pods: 10 },
      inject: async () => {
        // Inside the grace period: every offload of the wave is still ahead.
        await sleep(500);
        const t = Date.now();
        await bed.origin.stopApiServer();
        await sleep(5_000);
        await bed.origin.startApiServer();
        return { outageMs: Date.now() - t };
      },
      expect: both(steadyUntouched, allRunning('w-origin', 10)),
    });
    await removeApp(bed, 'w-origin');
  });

  it('donor lost for good: its origin pods fail with the reason, and Jobs run elsewhere', async () => {
    const { bed } = chaos;
    const batch = bed.origin.kubeConfig.makeApiClient(BatchV1Api);
    // Only donor-b takes the Job's first pods, so they are on the donor we lose.
    await cordon('donor-a', true);
    const job: V1Job = {
      metadata: { name: 'train', namespace: WORK_NAMESPACE },
      spec: {
        parallelism: 4,
        completions: 4,
        backoffLimit: 8,
        template: {
          metadata: {
            labels: { app: 'train' },
            annotations: podOutcome('succeed', { runFor: '15s' }),
          },
          spec: gpuPodSpec(2),
        },
      },
    };
    await batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    const first = await settle(bed, 'the Job running on donor-b', (s) => {
      const run = (phases(s, 'train').Running ?? []).filter(
        (p) => p.spec?.nodeName === 'spillway-donor-b',
      );
      return run.length === 4 ? undefined : `${run.length}/4 Job pods Running on donor-b`;
    });
    const onB = (phases(first.snapshot, 'train').Running ?? []).map((p) => p.metadata!.uid!);
    const steadyOnB = (phases(first.snapshot, 'steady').Running ?? []).filter(
      (p) => p.spec?.nodeName === 'spillway-donor-b',
    ).length;
    await cordon('donor-a', false);

    const t = Date.now();
    await bed.agents.get('donor-b')!.kill();
    await bed.donor('donor-b').stop();
    // The shim sees the donor go, and its virtual node turns NotReady.
    await poll(async () => ((await bed.virtualNodeReady('donor-b')) ? undefined : true), {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: 'spillway-donor-b NotReady',
    });
    const notReadyMs = Date.now() - t;
    // Gone for good: the operator removes it (spillctl cluster remove does this call).
    await bed.api('DELETE', '/api/v1/clusters/donor-b', undefined, 204);
    const removedAt = Date.now();
    const failed = await poll(
      async () => {
        const s = await snapshot(bed, ['donor-b']);
        const lost = s.origin.filter((p) => onB.includes(p.metadata!.uid!));
        return lost.length === 4 && lost.every((p) => p.status?.phase === 'Failed')
          ? lost
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 300, what: "the Job's pods on donor-b Failed" },
    );
    for (const p of failed) {
      expect(p.status?.reason).toBe('PeeringRemoved');
      expect(p.status?.message).toContain('donor-b');
    }
    const { ms } = await settle(
      bed,
      'the Job complete on donor-a, the steady pods replaced there',
      (s) => {
        const done = s.origin.some(
          (p) => p.metadata?.labels?.app === 'train' && p.status?.phase === 'Succeeded',
        );
        const steadyRun = (phases(s, 'steady').Running ?? []).filter(
          (p) => p.spec?.nodeName === 'spillway-donor-a',
        );
        return done && steadyRun.length === STEADY
          ? undefined
          : `${steadyRun.length}/${STEADY} steady on donor-a`;
      },
      150_000,
    );
    await poll(
      async () => {
        const j = await batch.readNamespacedJob({ name: 'train', namespace: WORK_NAMESPACE });
        return j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')
          ? true
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: 'Job train Complete' },
    );
    const jobDoneMs = Date.now() - removedAt;
    const node = await bed.origin.core
      .readNode({ name: 'spillway-donor-b' })
      .catch(() => undefined);
    expect(node, 'the lost donor has no virtual node left').toBeUndefined();
    report({
      fault: 'donor lost for good (donor-b), removed by the operator',
      outageMs: notReadyMs,
      recoverMs: ms,
      note: `virtual node NotReady ${(notReadyMs / 1000).toFixed(1)} s after the loss; 4 Job pods and ${steadyOnB} steady pods failed over; Job Complete ${(jobDoneMs / 1000).toFixed(1)} s after removal`,
    });
  }, 400_000);
});
