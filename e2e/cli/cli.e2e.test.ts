// The admin story through spillctl alone: init the broker's PKI, start the broker on it,
// join an origin and two donors (agents and shim as local processes), peer, inspect in
// every output format, simulate, cordon, offload a namespace, and unpeer (refused while a
// pod runs, drained, forced). Real broker process, real sockets, real test bed clusters.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cpuNode,
  gpuNode,
  poll,
  podOutcome,
  startTestbed,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';
import {
  cliEnv,
  spillctl,
  startBrokerProcess,
  type BrokerProcess,
  type RunResult,
} from './harness.js';

const A100 = 'NVIDIA-A100-SXM4-80GB';
const H100 = 'NVIDIA-H100-80GB-HBM3';

let testbed: Testbed;
let origin: TestCluster;
let donorA: TestCluster;
let donorB: TestCluster;
let dir: string;
let env: Record<string, string | undefined>;
let broker: BrokerProcess | undefined;
let grpcAddress = '';
let restUrl = '';

const run = (args: string[], timeoutMs?: number): Promise<RunResult> =>
  spillctl(args, env, timeoutMs);

/** Runs spillctl and expects exit 0; the failure message shows what it printed. */
async function ok(args: string[], timeoutMs?: number): Promise<RunResult> {
  const r = await run(args, timeoutMs);
  expect(r.code, `spillctl ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r;
}

/** A usage or operation failure: exactly one line on stderr, nothing on stdout. */
function expectOneLine(r: RunResult, code: number, pattern: RegExp): void {
  expect(r.code, `stderr: ${r.stderr}`).toBe(code);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^spillctl: /);
  expect(lines[0]).toMatch(pattern);
}

/** A long operation that failed: progress lines, then one error line last. */
function expectFailedAfterProgress(r: RunResult, code: number, pattern: RegExp): void {
  expect(r.code, `stderr: ${r.stderr}`).toBe(code);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(
    lines.filter((l) => l.startsWith('spillctl: ')),
    r.stderr,
  ).toHaveLength(1);
  expect(lines.at(-1)).toMatch(/^spillctl: /);
  expect(lines.at(-1)).toMatch(pattern);
}

function json<T>(r: RunResult): T {
  return JSON.parse(r.stdout) as T;
}

/** Column headers of a kubectl-style table. */
function headers(r: RunResult): string[] {
  return (r.stdout.split('\n')[0] ?? '').trim().split(/\s{2,}/);
}

function gpuPod(name: string, product: string, annotations: Record<string, string>): V1Pod {
  return {
    metadata: { name, namespace: 'ml', annotations },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 1,
      nodeSelector: { 'nvidia.com/gpu.product': product },
      containers: [
        {
          name: 'train',
          image: 'example.com/spillway/train:1',
          resources: {
            requests: { cpu: '100m', memory: '128Mi', 'nvidia.com/gpu': '2' },
            limits: { 'nvidia.com/gpu': '2' },
          },
        },
      ],
    },
  };
}

interface Offload {
  pod: { namespace: string; name: string };
  donor: string;
  state: string;
}

async function liveOffloads(): Promise<Offload[]> {
  const r = await ok([
    'get',
    'offloads',
    '--origin',
    'origin',
    '--state',
    'open,bound',
    '-o',
    'json',
  ]);
  return json<{ offloads: Offload[] }>(r).offloads;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spillway-cli-e2e-'));
  env = cliEnv(dir);
  testbed = await startTestbed({
    clusters: [
      { name: 'origin', nodes: [cpuNode('origin-cpu-0')] },
      {
        name: 'donor-a',
        nodes: [gpuNode('a-gpu-0', 4, 'A100-80GB'), gpuNode('a-gpu-1', 4, 'A100-80GB')],
      },
      { name: 'donor-b', nodes: [gpuNode('b-gpu-0', 8, 'H100-80GB')] },
    ],
  });
  origin = testbed.cluster('origin');
  donorA = testbed.cluster('donor-a');
  donorB = testbed.cluster('donor-b');
});

afterAll(async () => {
  if (env) await spillctl(['local', 'stop', '--all'], env).catch(() => undefined);
  await broker?.stop();
  await testbed?.stop();
  if (dir && process.env.SPILLWAY_TESTBED_KEEP !== '1')
    await rm(dir, { recursive: true, force: true });
});

describe('spillctl', () => {
  it('broker init writes the PKI with private keys 0600, and keeps an existing CA unless forced', async () => {
    const { freePorts } = await import('../testbed/ports.js');
    const [grpc, http] = await freePorts(2);
    grpcAddress = `127.0.0.1:${grpc}`;
    restUrl = `http://127.0.0.1:${http}`;
    const pki = join(dir, 'pki');
    const args = ['broker', 'init', '--dir', pki, '--server', restUrl, '--broker', grpcAddress];
    const first = json<{
      files: { path: string; mode: string }[];
      adminToken: string;
      caFile: string;
    }>(await ok([...args, '-o', 'json']));
    for (const f of ['ca.key', 'server.key', 'admin.key', 'api-tokens.json']) {
      expect(((await stat(join(pki, f))).mode & 0o777).toString(8), f).toBe('600');
    }
    expect(((await stat(join(pki, 'ca.crt'))).mode & 0o777).toString(8)).toBe('644');
    expect(((await stat(env.SPILLWAY_CONFIG!)).mode & 0o777).toString(8)).toBe('600');
    const settings = parseYaml(readFileSync(env.SPILLWAY_CONFIG!, 'utf8')) as Record<
      string,
      string
    >;
    expect(settings).toMatchObject({
      server: restUrl,
      broker: grpcAddress,
      token: first.adminToken,
      caFile: first.caFile,
    });

    const caBefore = readFileSync(join(pki, 'ca.crt'), 'utf8');
    expectOneLine(await run(args), 1, /already holds a CA.*--force/);
    expect(readFileSync(join(pki, 'ca.crt'), 'utf8')).toBe(caBefore);

    const forced = await ok([...args, '--force']);
    expect(forced.stdout).toMatch(/admin token at-[0-9a-f]+ saved to/);
    expect(readFileSync(join(pki, 'ca.crt'), 'utf8')).not.toBe(caBefore);

    broker = await startBrokerProcess({
      pkiDir: pki,
      dataDir: join(dir, 'broker'),
      logFile: join(dir, 'broker.log'),
      ports: { grpc: grpc!, http: http! },
      extraArgs: ['--heartbeat-timeout', '6s', '--log-level', 'info'],
    });
    // The token broker init saved works against the broker that read its api-tokens.json.
    expect(
      json<{ clusters: unknown[] }>(await ok(['get', 'clusters', '-o', 'json'])).clusters,
    ).toEqual([]);
  });

  it('answers bad arguments with one line naming what was wrong and exit code 2', async () => {
    const cases: [string[], RegExp][] = [
      [['get'], /missing required argument 'resource'/],
      [['get', 'pods'], /invalid for argument 'resource'.*clusters/],
      [['get', 'clusters', '-o', 'xml'], /'xml' is invalid.*table, wide, json, yaml/],
      [['get', 'capacity', '--state', 'bound'], /--state does not apply to "get capacity"/],
      [['peer', 'origin'], /missing required argument 'donor'/],
      [['peer', 'Origin', 'donor-a'], /'Origin' is invalid for argument 'origin'.*DNS label/],
      [['peer', 'origin', 'donor-a', '--max-gpus', 'many'], /--max-gpus.*'many' is invalid/],
      [['peer', 'origin', 'origin'], /cannot peer with itself/],
      [
        ['unpeer', 'origin', 'donor-a', '--timeout', 'soon'],
        /--timeout.*'soon' is invalid.*duration/,
      ],
      [['simulate', '--origin', 'origin', '--gpus', '0'], /--gpus.*'0' is invalid/],
      [['simulate', '--gpus', '1'], /required option '--origin/],
      [['join', 'gpu_east', '--kubeconfig', origin.kubeconfigPath], /'gpu_east' is invalid/],
      [['join', 'x', '--kubeconfig', join(dir, 'nope.yaml')], /cannot read kubeconfig/],
      [['join', 'x', '--context', 'nope', '--kubeconfig', origin.kubeconfigPath], /context "nope"/],
      [['cordon'], /missing required argument 'cluster'/],
      [['broker'], /needs a subcommand: init/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['get', 'clusters', '--bogus'], /unknown option '--bogus'/],
      [['local', 'stop'], /--all/],
    ];
    for (const [args, pattern] of cases) expectOneLine(await run(args), 2, pattern);

    // A wrong token or an unreachable broker is an operation failure: exit 1, one line.
    expectOneLine(
      await run(['get', 'clusters', '--token', 'at-0000.nope']),
      1,
      /not valid.*UNAUTHENTICATED/,
    );
    expectOneLine(
      await run(['get', 'clusters', '--server', 'http://127.0.0.1:1']),
      1,
      /cannot reach the broker/,
    );
    expectOneLine(await run(['describe', 'cluster', 'ghost']), 1, /ghost.*NOT_FOUND/);
  });

  it('has --help with an example and the exit codes on every command', async () => {
    const commands = [
      [],
      ['broker', 'init'],
      ['join'],
      ['peer'],
      ['unpeer'],
      ['get'],
      ['describe'],
      ['cordon'],
      ['uncordon'],
      ['offload', 'namespace'],
      ['simulate'],
      ['token', 'create'],
      ['local', 'list'],
      ['local', 'stop'],
    ];
    for (const c of commands) {
      const r = await ok([...c, '--help']);
      expect(r.stdout, c.join(' ')).toMatch(/Examples:\n {2}spillctl /);
      expect(r.stdout, c.join(' ')).toMatch(/Exit codes:[\s\S]*2 +usage error/);
    }
  });

  it('joins two donors and an origin, running their agents and the shim locally', async () => {
    const join3 = async (name: string, cluster: TestCluster, role: string): Promise<RunResult> =>
      ok(
        [
          'join',
          name,
          '--role',
          role,
          '--kubeconfig',
          cluster.kubeconfigPath,
          '--local',
          '--timeout',
          '60s',
          '--virtual-node-flag=--grace-period=1s',
          '--virtual-node-flag=--donor-lost-timeout=5s',
        ],
        90_000,
      );
    const a = await join3('donor-a', donorA, 'donor');
    expect(a.stdout).toMatch(/^cluster donor-a joined as donor: agent pid \d+/);
    // Not a terminal: progress is plain lines on stderr, one per step.
    expect(a.stderr).toMatch(
      /installed \d+ objects into https:\/\/127\.0\.0\.1:\d+ \(namespace spillway-system\)\n/,
    );
    // No carriage returns or escape sequences: those are for terminals.
    expect(a.stderr.includes('\r') || a.stderr.includes('\u001b')).toBe(false);
    await join3('donor-b', donorB, 'donor');
    const o = await join3('origin', origin, 'origin');
    expect(o.stdout).toMatch(/agent pid \d+.*virtual-node pid \d+/);

    // What join installed; the agent has used the single-use token and deleted it.
    for (const c of [origin, donorA, donorB]) {
      const sa = await c.core.readNamespacedServiceAccount({
        name: 'spillway-agent',
        namespace: 'spillway-system',
      });
      expect(sa.metadata?.name).toBe('spillway-agent');
      const id = await c.core.readNamespacedSecret({
        name: 'spillway-identity',
        namespace: 'spillway-system',
      });
      expect(id.data?.['tls.crt']).toBeTruthy();
      await expect(
        c.core.readNamespacedSecret({ name: 'spillway-join-token', namespace: 'spillway-system' }),
      ).rejects.toThrow();
    }
    await origin.core.readNamespacedServiceAccount({
      name: 'spillway-virtual-node',
      namespace: 'spillway-system',
    });

    const local = json<{ processes: { cluster: string; component: string; running: boolean }[] }>(
      await ok(['local', 'list', '-o', 'json']),
    );
    expect(local.processes.map((p) => `${p.cluster}/${p.component}/${p.running}`).sort()).toEqual([
      'donor-a/agent/true',
      'donor-b/agent/true',
      'origin/agent/true',
      'origin/virtual-node/true',
    ]);
  }, 300_000);

  it('lists clusters in every output format', async () => {
    const table = await ok(['get', 'clusters']);
    expect(headers(table)).toEqual(['NAME', 'ROLE', 'STATE', 'GPUS(FREE/ALL)', 'NODES', 'AGE']);
    expect(table.stdout).toMatch(/^donor-a\s+donor\s+Ready\s+8\/8\s+2\s/m);
    expect(table.stdout).toMatch(/^donor-b\s+donor\s+Ready\s+8\/8\s+1\s/m);
    expect(table.stdout).toMatch(/^origin\s+origin\s+Ready\s+0\/0\s/m);
    const wide = await ok(['get', 'clusters', '-o', 'wide']);
    expect(headers(wide)).toEqual([
      'NAME',
      'ROLE',
      'STATE',
      'GPUS(FREE/ALL)',
      'NODES',
      'AGE',
      'AGENT',
      'VIRTUAL-NODE',
      'LAST-SEEN',
      'MAX-GPUS',
      'GPUS',
    ]);
    expect(wide.stdout).toMatch(/^origin\s.*connected\s+connected/m);
    type Clusters = { clusters: { id: string; state: string; role: string }[] };
    const fromJson = json<Clusters>(await ok(['get', 'clusters', '-o', 'json']));
    const fromYaml = parseYaml((await ok(['get', 'clusters', '-o', 'yaml'])).stdout) as Clusters;
    // Heartbeat times move between two calls; the rest must be the same document.
    const stable = (c: Clusters): unknown =>
      JSON.parse(JSON.stringify(c, (k, v: unknown) => (/(lastSeenAt)$/.test(k) ? undefined : v)));
    expect(stable(fromYaml)).toEqual(stable(fromJson));
    expect(fromJson.clusters.map((c) => `${c.id}:${c.role}:${c.state}`).sort()).toEqual([
      'donor-a:donor:Ready',
      'donor-b:donor:Ready',
      'origin:origin:Ready',
    ]);
    const one = json<{ id: string; nodes: unknown[] }>(
      await ok(['get', 'clusters', 'donor-a', '-o', 'json']),
    );
    expect(one.id).toBe('donor-a');
    expect(one.nodes).toHaveLength(2);
  });

  it('peers the origin with both donors and waits for their virtual nodes', async () => {
    const p1 = await ok(
      [
        'peer',
        'origin',
        'donor-a',
        '--wait',
        '--kubeconfig',
        origin.kubeconfigPath,
        '--timeout',
        '60s',
      ],
      90_000,
    );
    expect(p1.stdout).toBe('peering origin -> donor-a created\n');
    expect(p1.stderr).toMatch(/virtual node spillway-donor-a is Ready in origin/);
    const p2 = json<{ origin: string; donor: string; maxGpus: number }>(
      await ok(
        [
          'peer',
          'origin',
          'donor-b',
          '--max-gpus',
          '4',
          '--wait',
          '--kubeconfig',
          origin.kubeconfigPath,
          '-o',
          'json',
        ],
        90_000,
      ),
    );
    expect(p2).toMatchObject({ origin: 'origin', donor: 'donor-b', maxGpus: 4 });
    const node = await origin.core.readNode({ name: 'spillway-donor-b' });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');

    const table = await ok(['get', 'peerings']);
    expect(headers(table)).toEqual([
      'ORIGIN',
      'DONOR',
      'STATE',
      'LENDABLE',
      'IN-USE',
      'MAX-GPUS',
      'PRODUCTS',
      'AGE',
    ]);
    expect(table.stdout).toMatch(/^origin\s+donor-b\s+Ready\s+4\s+0\s+4\s+all\s/m);
    type Peerings = { peerings: { donor: string; lendable: Record<string, number> }[] };
    const fromJson = json<Peerings>(
      await ok(['get', 'peerings', '--origin', 'origin', '-o', 'json']),
    );
    expect(
      parseYaml((await ok(['get', 'peerings', '--origin', 'origin', '-o', 'yaml'])).stdout),
    ).toEqual(fromJson);
    expect(
      Object.fromEntries(fromJson.peerings.map((p) => [p.donor, p.lendable['nvidia.com/gpu']])),
    ).toEqual({
      'donor-a': 8,
      'donor-b': 4,
    });
    expect(headers(await ok(['get', 'peerings', '-o', 'wide']))).toContain('TENANT-NAMESPACE');
  }, 200_000);

  it('shows capacity by product', async () => {
    type Capacity = {
      rows: { cluster: string; gpuProduct: string; free: number; largestFreeOnNode: number }[];
      totals: { free: number };
    };
    const cap = json<Capacity>(await ok(['get', 'capacity', '-o', 'json']));
    expect(parseYaml((await ok(['get', 'capacity', '-o', 'yaml'])).stdout)).toEqual(cap);
    const byCluster = Object.fromEntries(cap.rows.map((r) => [r.cluster, r]));
    expect(byCluster['donor-a']).toMatchObject({ gpuProduct: A100, free: 8, largestFreeOnNode: 4 });
    expect(byCluster['donor-b']).toMatchObject({ gpuProduct: H100, free: 8, largestFreeOnNode: 8 });
    expect(cap.totals.free).toBe(16);
    const table = await ok(['get', 'capacity', '--gpu-product', H100]);
    expect(headers(table)).toEqual([
      'CLUSTER',
      'PRODUCT',
      'RESOURCE',
      'FREE',
      'ALLOCATABLE',
      'LARGEST-FREE',
      'NODES',
    ]);
    expect(table.stdout).not.toMatch(/donor-a/);
    expect(table.stdout).toMatch(/Total: 8 free of 8 GPUs/);
  });

  it('simulates placements and says why a donor does not fit', async () => {
    type Sim = {
      placed: boolean;
      reservation?: { donor: string; node: string };
      code?: string;
      verdicts: { donor: string; reason: string }[];
    };
    const h100 = json<Sim>(
      await ok([
        'simulate',
        '--origin',
        'origin',
        '--gpus',
        '2',
        '--gpu-product',
        H100,
        '-o',
        'json',
      ]),
    );
    expect(h100.placed).toBe(true);
    expect(h100.reservation).toMatchObject({ donor: 'donor-b', node: 'b-gpu-0' });
    expect(h100.verdicts.find((v) => v.donor === 'donor-a')?.reason).toMatch(
      /product|label|select/i,
    );

    // Five H100s pass the peering's limit of 4; five A100s fit on no single 4-GPU node.
    const big = json<Sim>(
      await ok(['simulate', '--origin', 'origin', '--gpus', '5', '-o', 'json']),
    );
    expect(big.placed).toBe(false);
    expect(big.verdicts.map((v) => v.donor).sort()).toContain('donor-a');
    const text = await ok(['simulate', '--origin', 'origin', '--gpus', '2', '--gpu-product', A100]);
    expect(text.stdout).toMatch(
      /^would place on donor-a, node a-gpu-[01] \(2 nvidia\.com\/gpu\)\n/,
    );
    expect(text.stdout).toMatch(/DONOR\s+NODE\s+SCORE\s+VERDICT/);
    const yaml = parseYaml(
      (
        await ok([
          'simulate',
          '--origin',
          'origin',
          '--gpus',
          '2',
          '--gpu-product',
          A100,
          '-o',
          'yaml',
        ])
      ).stdout,
    ) as Sim;
    expect(yaml.reservation?.donor).toBe('donor-a');
  });

  it('cordons a donor out of placements and back', async () => {
    expect((await ok(['cordon', 'donor-b'])).stdout).toMatch(/cluster donor-b cordoned/);
    const clusters = json<{ clusters: { id: string; policy: { cordoned: boolean } }[] }>(
      await ok(['get', 'clusters', '-o', 'json']),
    );
    expect(clusters.clusters.find((c) => c.id === 'donor-b')?.policy.cordoned).toBe(true);
    expect((await ok(['get', 'clusters'])).stdout).toMatch(/^donor-b\s+donor\s+Ready,Cordoned\s/m);
    const sim = json<{ placed: boolean }>(
      await ok([
        'simulate',
        '--origin',
        'origin',
        '--gpus',
        '2',
        '--gpu-product',
        H100,
        '-o',
        'json',
      ]),
    );
    expect(sim.placed).toBe(false);
    const described = await ok(['describe', 'cluster', 'donor-b']);
    expect(described.stdout).toMatch(/^State:\s+Ready,Cordoned$/m);
    expect(described.stdout).toMatch(/^ {2}Cordoned:\s+true$/m);
    expect(described.stdout).toMatch(/b-gpu-0\s+NVIDIA-H100-80GB-HBM3\s+8\/8/);
    const uncordoned = json<{ policy: { cordoned: boolean } }>(
      await ok(['uncordon', 'donor-b', '-o', 'json']),
    );
    expect(uncordoned.policy.cordoned).toBe(false);
    const again = json<{ placed: boolean }>(
      await ok([
        'simulate',
        '--origin',
        'origin',
        '--gpus',
        '2',
        '--gpu-product',
        H100,
        '-o',
        'json',
      ]),
    );
    expect(again.placed).toBe(true);
    const desc = json<{ id: string; peerings: unknown[] }>(
      await ok(['describe', 'cluster', 'donor-b', '-o', 'json']),
    );
    expect(desc.peerings).toHaveLength(1);
  });

  it('offloads a labelled namespace; unpeer refuses while the pod runs, then drains', async () => {
    await origin.core.createNamespace({ body: { metadata: { name: 'ml' } } });
    expect(
      (await ok(['offload', 'namespace', 'ml', '--kubeconfig', origin.kubeconfigPath])).stdout,
    ).toMatch(/namespace ml offloads/);
    const ns = await origin.core.readNamespace({ name: 'ml' });
    expect(ns.metadata?.labels?.['spillway.io/offload']).toBe('enabled');
    expectOneLine(
      await run(['offload', 'namespace', 'nowhere', '--kubeconfig', origin.kubeconfigPath]),
      1,
      /namespace nowhere does not exist/,
    );

    await origin.core.createNamespacedPod({
      namespace: 'ml',
      body: gpuPod('train-h100', H100, podOutcome('succeed', { runFor: '12s' })),
    });
    const live = await poll(
      async () => {
        const l = await liveOffloads();
        return l.some((o) => o.pod.name === 'train-h100' && o.state === 'bound') ? l : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'train-h100 to be offloaded and bound' },
    );
    expect(live.find((o) => o.pod.name === 'train-h100')?.donor).toBe('donor-b');
    const offTable = await ok(['get', 'offloads']);
    expect(headers(offTable)).toEqual([
      'POD',
      'ORIGIN',
      'DONOR',
      'NODE',
      'GPUS',
      'STATE',
      'PHASE',
      'AGE',
    ]);
    expect(offTable.stdout).toMatch(/^ml\/train-h100\s+origin\s+donor-b\s+b-gpu-0\s+2\s+bound\s/m);
    expect(parseYaml((await ok(['get', 'offloads', '-o', 'yaml'])).stdout)).toHaveProperty(
      'offloads',
    );

    expectOneLine(
      await run(['unpeer', 'origin', 'donor-b']),
      1,
      /still runs 1 offloaded pod: ml\/train-h100.*--drain.*--force/,
    );
    const started = Date.now();
    const drained = await ok(
      ['unpeer', 'origin', 'donor-b', '--drain', '--timeout', '90s'],
      120_000,
    );
    expect(drained.stdout).toBe('peering origin -> donor-b removed (drained)\n');
    expect(drained.stderr).toMatch(
      /draining origin -> donor-b: waiting for 1 offloaded pod: ml\/train-h100/,
    );
    // It waited for the pod to finish rather than cutting it off.
    expect(Date.now() - started).toBeGreaterThan(2_000);
    const pod = await origin.core.readNamespacedPod({ name: 'train-h100', namespace: 'ml' });
    expect(pod.status?.phase).toBe('Succeeded');
    const peerings = json<{ peerings: { donor: string }[] }>(
      await ok(['get', 'peerings', '-o', 'json']),
    );
    expect(peerings.peerings.map((p) => p.donor)).toEqual(['donor-a']);
    expectOneLine(await run(['unpeer', 'origin', 'donor-b']), 1, /not peered.*NOT_FOUND/);
  }, 200_000);

  it('unpeer --force after a drain timeout removes the remote pods and the tenant namespace', async () => {
    await origin.core.createNamespacedPod({
      namespace: 'ml',
      body: gpuPod('serve-a100', A100, podOutcome('run')),
    });
    await poll(
      async () =>
        (await liveOffloads()).some((o) => o.pod.name === 'serve-a100' && o.state === 'bound')
          ? true
          : undefined,
      { timeoutMs: 60_000, intervalMs: 500, what: 'serve-a100 to be offloaded and bound' },
    );
    const timedOut = await run(['unpeer', 'origin', 'donor-a', '--drain', '--timeout', '3s']);
    expectFailedAfterProgress(timedOut, 1, /timed out after 3s.*ml\/serve-a100.*stays draining/);
    expect((await ok(['get', 'peerings'])).stdout).toMatch(/^origin\s+donor-a\s+Ready,Draining\s/m);

    const forced = await ok(
      ['unpeer', 'origin', 'donor-a', '--drain', '--force', '--timeout', '3s'],
      120_000,
    );
    expect(forced.stdout).toBe(
      'peering origin -> donor-a removed (forced; 1 remote pods deleted)\n',
    );
    expect(await liveOffloads()).toEqual([]);
    await poll(
      async () => {
        const ns = await donorA.core
          .readNamespace({ name: 'spillway-origin' })
          .catch(() => undefined);
        return ns === undefined || ns.metadata?.deletionTimestamp ? true : undefined;
      },
      { timeoutMs: 30_000, what: 'the tenant namespace on donor-a to go' },
    );
    expect(
      json<{ peerings: unknown[] }>(await ok(['get', 'peerings', '-o', 'json'])).peerings,
    ).toEqual([]);
  }, 200_000);

  it('makes viewer tokens that read but cannot change', async () => {
    const token = (await ok(['token', 'create', '--role', 'viewer'])).stdout.trim();
    expect(token).toMatch(/^at-[0-9a-f]+\.\S+$/);
    expect((await ok(['get', 'clusters', '--token', token])).stdout).toMatch(/^NAME\s/);
    expectOneLine(
      await run(['cordon', 'donor-a', '--token', token]),
      1,
      /viewer role.*PERMISSION_DENIED/,
    );
  });

  it('stops the local agents and shim', async () => {
    const stopped = await ok(['local', 'stop', '--all']);
    expect(stopped.stdout.trim().split('\n')).toHaveLength(4);
    const list = json<{ processes: unknown[] }>(await ok(['local', 'list', '-o', 'json']));
    expect(list.processes).toEqual([]);
    await poll(
      async () => {
        const c = json<{ clusters: { state: string }[] }>(
          await ok(['get', 'clusters', '-o', 'json']),
        );
        return c.clusters.every((x) => x.state === 'NotReady') ? true : undefined;
      },
      { timeoutMs: 20_000, what: 'the clusters to turn NotReady' },
    );
  });
});
