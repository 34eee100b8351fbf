// Faults of the HA setup: three broker replicas sharing our own redis-server (AOF on),
// reached by every agent and the shim through a TCP load balancer that round-robins over
// the live replicas (the broker client dials one address). Replicas and Redis are killed,
// restarted and frozen while offloaded pods run and new ones are being offloaded.
import { describe, expect, it } from 'vitest';
import { gpuNode, poll } from '../testbed/index.js';
import {
  ADMIN_TOKEN,
  FULL,
  WORK_NAMESPACE,
  sleep,
  startRedisDaemon,
  useChaosBed,
  type BrokerReplica,
} from './bed.js';
import { allRunning, both, removeApp, underFault } from './workload.js';

const STEADY = 4;
/** Redis unreachable: 30 s in the full run, shorter in CI. */
const REDIS_OUTAGE_MS = FULL ? 30_000 : 15_000;

const chaos = useChaosBed(
  'three broker replicas on Redis',
  {
    store: 'redis',
    replicas: 3,
    donors: {
      'donor-a': [0, 1].map((i) => gpuNode(`donor-a-gpu-${i}`, 16)),
      'donor-b': [0, 1].map((i) => gpuNode(`donor-b-gpu-${i}`, 16)),
    },
  },
  { pods: STEADY, gpus: 2 },
);
const { steadyUntouched, assertRunningUntouched } = chaos;

/** Which replica holds the most of our parts' connections right now. */
function busiestReplica(): { replica: BrokerReplica; links: number } {
  const { bed } = chaos;
  const count = new Map<string, number>();
  for (const p of bed.proxies.values())
    for (const [target, n] of p.connections()) count.set(target, (count.get(target) ?? 0) + n);
  let best = bed.brokers[0]!;
  for (const b of bed.brokers) if ((count.get(b.grpc) ?? 0) > (count.get(best.grpc) ?? 0)) best = b;
  return { replica: best, links: count.get(best.grpc) ?? 0 };
}

interface ClusterView {
  id: string;
  state: string;
  connections: Record<string, { brokerId: string; connectedAt: string } | undefined>;
}

/** Every agent and the shim have a stream on a replica other than `dead`. */
async function streamsMovedOff(dead: string): Promise<boolean> {
  const { bed } = chaos;
  const { clusters } = (await bed.api('GET', '/api/v1/clusters')) as { clusters: ClusterView[] };
  const wanted: [string, string][] = [
    ['origin', 'virtual-node'],
    ...['origin', ...bed.donorNames].map((c): [string, string] => [c, 'agent']),
  ];
  return wanted.every(([id, component]) => {
    const c = clusters.find((x) => x.id === id);
    const conn = c?.connections[component];
    return c?.state === 'Ready' && conn !== undefined && conn.brokerId !== dead;
  });
}

describe('faults of broker replicas on Redis', { timeout: 240_000 }, () => {
  it('one of three replicas SIGKILLed while agents are connected to it: they move to the others', async () => {
    const { bed } = chaos;
    const { replica, links } = busiestReplica();
    expect(links, 'the killed replica holds streams').toBeGreaterThan(0);
    await underFault(bed, {
      fault: 'one of 3 replicas SIGKILL (Redis)',
      wave: { app: 'w-replica', pods: 8 },
      inject: async () => {
        await sleep(2_500);
        const t = Date.now();
        await replica.daemon.kill();
        // The parts reconnect through the balancer, which skips the dead replica.
        await poll(async () => ((await streamsMovedOff(replica.daemon.name)) ? true : undefined), {
          timeoutMs: 60_000,
          intervalMs: 200,
          what: 'every stream on a live replica',
        });
        const moved = Date.now() - t;
        await assertRunningUntouched();
        return {
          outageMs: moved,
          note: `${links} link(s) on ${replica.daemon.name}; all streams on the other replicas after ${(moved / 1000).toFixed(1)} s`,
        };
      },
      expect: both(steadyUntouched, allRunning('w-replica', 8)),
    });
    await removeApp(bed, 'w-replica');
    // It comes back and takes new connections again.
    await bed.startBroker(replica);
    expect(await bed.readyz(replica)).toBe(200);
  });

  it('every replica SIGKILLed and restarted: the state in Redis carries on', async () => {
    const { bed } = chaos;
    await underFault(bed, {
      fault: 'all 3 replicas SIGKILL + restart (Redis)',
      wave: { app: 'w-allkill', pods: 8 },
      inject: async () => {
        await sleep(2_500);
        const t = Date.now();
        await Promise.all(bed.brokers.map((b) => b.daemon.kill()));
        await sleep(4_000);
        await assertRunningUntouched();
        await Promise.all(bed.brokers.map((b) => bed.startBroker(b)));
        return { outageMs: Date.now() - t };
      },
      expect: both(steadyUntouched, allRunning('w-allkill', 8)),
    });
    await removeApp(bed, 'w-allkill');
  });

  it('Redis SIGKILLed and restarted (AOF): nothing it held is lost', async () => {
    const { bed } = chaos;
    await underFault(bed, {
      fault: 'Redis SIGKILL + restart (AOF)',
      wave: { app: 'w-redis', pods: 8 },
      inject: async () => {
        await sleep(2_500);
        const t = Date.now();
        await bed.redis!.daemon.kill();
        await sleep(3_000);
        await assertRunningUntouched();
        await startRedisDaemon(bed.redis!);
        return { outageMs: Date.now() - t };
      },
      // Settled also means every Running pod's bound reservation is there: read back from the AOF.
      expect: both(steadyUntouched, allRunning('w-redis', 8)),
    });
    await removeApp(bed, 'w-redis');
  });

  it(`Redis unreachable for ${REDIS_OUTAGE_MS / 1000} s: not ready, placements refused with the reason, running pods untouched, then back by itself`, async () => {
    const { bed } = chaos;
    await underFault(bed, {
      fault: `Redis unreachable ${REDIS_OUTAGE_MS / 1000} s`,
      wave: { app: 'w-frozen', pods: 6 },
      inject: async () => {
        // Inside the grace period: the wave's placements all come while Redis is away.
        await sleep(500);
        const t = Date.now();
        // Frozen, not dead: connections stay open and nothing answers.
        bed.signalRedis('SIGSTOP');
        try {
          const notReady = await poll(
            async () => {
              const codes = await Promise.all(bed.brokers.map((b) => bed.readyz(b).catch(() => 0)));
              return codes.every((c) => c === 503) ? Date.now() : undefined;
            },
            { timeoutMs: 20_000, intervalMs: 250, what: 'every replica /readyz 503' },
          );
          const res = await fetch(`${bed.brokers[0]!.rest}/readyz`);
          const body = (await res.json()) as { status: string; store: string; reason: string };
          expect(body).toMatchObject({ status: 'unavailable', store: 'redis' });
          expect(body.reason).toMatch(/redis/i);
          // A placement asked for now is refused and says why.
          const sim = await fetch(`${bed.brokers[1]!.rest}/api/v1/placements:simulate`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${ADMIN_TOKEN}`,
              'content-type': 'application/json',
            },
            body: JSON.stringify({ origin: 'origin', gpus: 1 }),
            signal: AbortSignal.timeout(20_000),
          });
          const simBody = (await sim.json()) as { error?: { code: string; message: string } };
          expect(sim.status).toBe(503);
          expect(simBody.error?.code).toBe('STORE_UNAVAILABLE');
          expect(simBody.error?.message).toMatch(/redis/i);
          // The pods waiting to be offloaded say why they wait.
          const why = await poll(
            async () => {
              const events = await bed.origin.core.listNamespacedEvent({
                namespace: WORK_NAMESPACE,
                fieldSelector: 'reason=NotOffloaded',
              });
              return events.items.find(
                (e) =>
                  e.involvedObject.name?.startsWith('w-frozen-') &&
                  /STORE_UNAVAILABLE|redis/i.test(e.message ?? ''),
              );
            },
            { timeoutMs: 20_000, intervalMs: 500, what: 'a NotOffloaded event naming the store' },
          );
          expect(why.type).toBe('Warning');
          console.log(`waiting pod event: ${why.message ?? ''}`);
          await sleep(Math.max(0, REDIS_OUTAGE_MS - (Date.now() - t)));
          await assertRunningUntouched();
          console.log(
            `every replica not ready ${((notReady - t) / 1000).toFixed(1)} s after Redis froze`,
          );
        } finally {
          bed.signalRedis('SIGCONT');
        }
        const outage = Date.now() - t;
        const ready = await poll(
          async () => {
            const codes = await Promise.all(bed.brokers.map((b) => bed.readyz(b).catch(() => 0)));
            return codes.every((c) => c === 200) ? Date.now() : undefined;
          },
          { timeoutMs: 30_000, intervalMs: 250, what: 'every replica ready again' },
        );
        return {
          outageMs: outage,
          note: `/readyz 200 on every replica ${((ready - t - outage) / 1000).toFixed(1)} s after Redis answered again`,
        };
      },
      expect: both(steadyUntouched, allRunning('w-frozen', 6)),
      timeoutMs: 150_000,
    });
    await removeApp(bed, 'w-frozen');
  });
});
