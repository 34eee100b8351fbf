import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '@spillway/common';
import { BrokerClient, joinCluster, type ClusterStream, type NodeCapacity } from '@spillway/api';
import type { UsageReport } from '@spillway/api/rest';
import { run as spillctl, type CliIO } from '@spillway/cli';
import { startBrokerProcess, type BrokerProcess } from '../harness/broker-process.js';

// The usage ledger end to end: the real broker process, a donor agent and an origin
// simulated over real mTLS gRPC, pods of known duration, and a SIGKILL of the broker while
// one of them runs. Each pod's GPU-seconds must match what the donor reported within 1 s.

const ADMIN = 'ledger-e2e-admin-token-0123456789';
const REDIS_URL = 'redis://127.0.0.1:6379';
const GPU = 'nvidia.com/gpu';
const PRODUCT = 'NVIDIA-A100-SXM4-80GB';
const ORIGIN = 'ledger-origin';
const DONOR = 'ledger-donor';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Pod {
  name: string;
  namespace: string;
  uid: string;
  gpus: number;
  reservation?: string;
  /** Local times the donor reported the pod bound and ended. */
  boundAt?: number;
  endedAt?: number;
}

/** A donor agent: one node, full reports on every (re)connect, pod starts and ends. */
class SimDonor {
  readonly running = new Set<Pod>();
  private sequence = 0;
  /** Streams opened so far (1 at first, 2 after the broker came back). */
  connects = 0;
  stream!: ClusterStream;

  constructor(readonly client: BrokerClient) {}

  private node(): NodeCapacity {
    const used = [...this.running].reduce((n, p) => n + p.gpus, 0);
    return {
      name: 'gpu-node-1',
      gpus: { [GPU]: { allocatable: 8, free: 8 - used } },
      gpu_product: PRODUCT,
      gpu_memory_mib: 81920,
      labels: { 'nvidia.com/gpu.product': PRODUCT, 'kubernetes.io/hostname': 'gpu-node-1' },
      taints: [],
      ready: true,
      cordoned: false,
      cpu_allocatable_millis: 64_000,
      cpu_free_millis: 48_000,
      memory_allocatable_bytes: 512 * 1024 ** 3,
      memory_free_bytes: 384 * 1024 ** 3,
      offloaded_pod_uids: [...this.running].map((p) => p.uid),
    };
  }

  async connect(): Promise<void> {
    this.stream = this.client.connect(
      'agent',
      {
        hello: { version: 'ledger-e2e', kubernetes_version: 'v1.34.4', gpu_resources: [GPU] },
        onConnected: (s) => {
          this.connects++;
          s.send({
            capacity: {
              full: true,
              nodes: [this.node()],
              removed_nodes: [],
              sequence: ++this.sequence,
            },
          });
        },
      },
      { backoff: { baseMs: 200, maxMs: 1_000 } },
    );
    await this.stream.waitConnected(30_000);
  }

  private report(): void {
    if (
      !this.stream.send({
        capacity: {
          full: true,
          nodes: [this.node()],
          removed_nodes: [],
          sequence: ++this.sequence,
        },
      })
    )
      throw new Error('the stream refused a capacity report');
  }

  start(pod: Pod): void {
    this.running.add(pod);
    pod.boundAt = Date.now();
    this.report();
  }

  /** The pod Succeeded: its status, then the node without it (as the agent sends them). */
  end(pod: Pod): void {
    pod.endedAt = Date.now();
    this.status(pod, 'Succeeded');
    this.running.delete(pod);
    this.report();
  }

  status(pod: Pod, phase: string): void {
    this.stream.send({
      pod_status: {
        pod: { origin_cluster: ORIGIN, namespace: pod.namespace, name: pod.name, uid: pod.uid },
        donor_cluster: DONOR,
        remote_namespace: `spillway-${ORIGIN}`,
        remote_name: pod.name,
        node_name: 'gpu-node-1',
        status_json: JSON.stringify({ phase }),
        deleted: false,
        observed_unix_ms: Date.now(),
      },
    });
  }
}

function cliIo(): CliIO & { out: string; err: string } {
  const state = { out: '', err: '' };
  return Object.assign(state, {
    stdout: { write: (s: string) => ((state.out += s), true) },
    stderr: { write: (s: string) => ((state.err += s), true) },
    env: { HOME: '/nonexistent-home-for-tests' },
    cwd: '/',
  });
}

describe.each([
  ['sqlite', {}],
  [
    'redis',
    {
      store: 'redis' as const,
      redisUrl: REDIS_URL,
      redisPrefix: `spillway-ledger-e2e:${randomUUID()}:`,
    },
  ],
])('usage ledger on %s across a broker SIGKILL', (kind, storeOpts) => {
  it('counts each pod of known duration within 1 s, once', async () => {
    const dir = await mkdtemp(join(tmpdir(), `spillway-ledger-${kind}-`));
    dirs.push(dir);
    let broker: BrokerProcess = await startBrokerProcess({
      dir,
      adminToken: ADMIN,
      ...storeOpts,
      flags: ['--reservation-ttl=10m'],
    });
    const clients: BrokerClient[] = [];
    try {
      const key = generateKeyPair().privateKeyPem;
      const member = async (clusterId: string, role: 'origin' | 'donor'): Promise<BrokerClient> => {
        const res = await broker.rest('POST', '/api/v1/join-tokens', { body: { clusterId, role } });
        expect(res.status).toBe(201);
        const id = await joinCluster({
          brokerAddress: broker.grpcAddress,
          caPem: broker.caPem,
          token: (res.body as { token: string }).token,
          privateKeyPem: key,
          serverName: 'localhost',
        });
        const c = new BrokerClient({
          address: broker.grpcAddress,
          caPem: id.caPem,
          certPem: id.certPem,
          keyPem: id.keyPem,
          serverName: 'localhost',
        });
        clients.push(c);
        return c;
      };
      const donor = new SimDonor(await member(DONOR, 'donor'));
      await donor.connect();
      const origin = await member(ORIGIN, 'origin');
      expect(
        (await broker.rest('POST', '/api/v1/peerings', { body: { origin: ORIGIN, donor: DONOR } }))
          .status,
      ).toBe(201);

      const offload = async (name: string, gpus: number): Promise<Pod> => {
        const pod: Pod = { name, namespace: `ns-${name}`, uid: randomUUID(), gpus };
        // Capacity reaches the broker on the stream: retry until it is in.
        const reservation = await until(`a placement for ${name}`, async () => {
          const res = await origin.place({
            pod: { origin_cluster: ORIGIN, namespace: pod.namespace, name, uid: pod.uid },
            resource_name: GPU,
            gpus,
            node_requirements: [],
            tolerations: [],
            donors: [],
          });
          return res.reservation?.id;
        });
        pod.reservation = reservation;
        donor.start(pod);
        await until(`${name} bound`, async () => {
          const r = await broker.rest('GET', `/api/v1/offloads?origin=${ORIGIN}&state=bound`);
          const list = (r.body as { offloads: { id: string }[] }).offloads;
          return list.some((o) => o.id === reservation) ? true : undefined;
        });
        return pod;
      };
      const ended = async (pod: Pod): Promise<void> => {
        await until(`${pod.name} ended`, async () => {
          const r = await broker.rest('GET', `/api/v1/offloads?origin=${ORIGIN}&state=ended`);
          const list = (r.body as { offloads: { id: string }[] }).offloads;
          return list.some((o) => o.id === pod.reservation) ? true : undefined;
        });
      };

      // a: 2 GPUs, ends before the crash. b: 1 GPU, runs through it. c: 3 GPUs, after it.
      const a = await offload('a', 2);
      const b = await offload('b', 1);
      await sleep(3_000);
      donor.end(a);
      await ended(a);

      broker.child.kill('SIGKILL');
      expect((await broker.exited).signal).toBe('SIGKILL');
      await sleep(2_000);
      const [grpcPort, httpPort] = [broker.grpcAddress.split(':')[1], new URL(broker.restUrl).port];
      broker = await startBrokerProcess({
        ...broker.launch,
        grpcPort: Number(grpcPort),
        httpPort: Number(httpPort),
      });
      // The agent reconnects by itself and reports its node again; it also repeats a's end
      // (a report resent after a reconnect), which must not count a twice.
      await until('the donor back', () => Promise.resolve(donor.connects >= 2 ? true : undefined));
      await donor.stream.waitConnected(30_000);
      donor.status(a, 'Succeeded');

      const c = await offload('c', 3);
      await sleep(2_000);
      donor.end(b);
      donor.end(c);
      await ended(b);
      await ended(c);
      // Time passes before the query: an end the ledger missed would count up to now.
      await sleep(2_000);

      const res = await broker.rest('GET', '/api/v1/usage?by=namespace,donor,product');
      expect(res.status).toBe(200);
      const report = res.body as UsageReport;
      for (const pod of [a, b, c]) {
        const row = report.rows.find((r) => r.namespace === pod.namespace);
        expect(row, pod.name).toBeDefined();
        expect(row!.donor).toBe(DONOR);
        expect(row!.product).toBe(PRODUCT);
        expect(row!.pods).toBe(1);
        const seconds = (pod.endedAt! - pod.boundAt!) / 1000;
        // Within 1 s of what the donor reported, per pod.
        expect(Math.abs(row!.gpuSeconds / pod.gpus - seconds), pod.name).toBeLessThan(1);
      }
      expect(report.rows).toHaveLength(3);
      // b ran through the crash: at least its 5 s of sleeps and the 2 s of downtime.
      expect(report.rows.find((r) => r.namespace === 'ns-b')!.gpuSeconds).toBeGreaterThan(7);

      // The same ledger through spillctl and Prometheus.
      const io = cliIo();
      const code = await spillctl(
        [
          '--server',
          broker.restUrl,
          '--token',
          ADMIN,
          'get',
          'usage',
          '--by',
          'origin',
          '-o',
          'json',
        ],
        io,
      );
      expect([code, io.err]).toEqual([0, '']);
      const viaCli = JSON.parse(io.out) as UsageReport;
      expect(viaCli.rows).toHaveLength(1);
      expect(viaCli.rows[0]!.origin).toBe(ORIGIN);
      expect(viaCli.rows[0]!.gpuSeconds).toBeCloseTo(report.total.gpuSeconds, 3);
      const csv = cliIo();
      expect(
        await spillctl(
          [
            '--server',
            broker.restUrl,
            '--token',
            ADMIN,
            'get',
            'usage',
            '--by',
            'donor',
            '-o',
            'csv',
          ],
          csv,
        ),
      ).toBe(0);
      expect(csv.out).toMatch(
        new RegExp(`^donor,gpuSeconds,gpuHours,pods\\r\\n${DONOR},[0-9.]+,[0-9.]+,3\\r\\n$`),
      );
      const metrics = await broker.rest('GET', '/metrics', { token: null });
      const line = String(metrics.body)
        .split('\n')
        .find((l) =>
          l.startsWith(
            `spillway_gpu_seconds_total{origin="${ORIGIN}",donor="${DONOR}",product="${PRODUCT}"}`,
          ),
        );
      expect(Number(line?.split(' ')[1])).toBeCloseTo(report.total.gpuSeconds, 0);
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
      await broker.stop();
      if ('redisPrefix' in storeOpts) {
        const admin = new Redis(REDIS_URL);
        const keys = await admin.keys(`${storeOpts.redisPrefix}*`);
        if (keys.length > 0) await admin.del(...keys);
        await admin.quit();
      }
    }
  }, 180_000);
});
