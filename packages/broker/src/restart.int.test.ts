import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerClient,
  joinCluster,
  type JoinedIdentity,
  type PeeringState__Output,
  type StreamHandlers,
} from '@spillway/api';
import {
  buildBroker,
  startBrokerProcess,
  type BrokerProcess,
} from '../../../e2e/harness/broker-process.js';

/**
 * Finding 6 of issue 18 on a real broker process on SQLite, killed and started again on
 * the same data and ports: until a cluster's agent reconnects to the new process (or the
 * heartbeat timeout passes), REST, the shims' peering state and spillctl read its
 * readiness Unknown — never Ready from the dead process's stream records, never NotReady.
 */

const ADMIN = 'restart-test-admin-token-0123456789';
const HEARTBEAT_TIMEOUT_S = 10;
const SPILLCTL = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));

interface ClusterRow {
  id: string;
  state: string;
  nodeCount: number;
  connections: Record<string, { brokerId: string } | undefined>;
}

const dirs: string[] = [];
const brokers: BrokerProcess[] = [];
const clients: BrokerClient[] = [];

beforeAll(() => buildBroker(), 300_000);

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const b of brokers.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    if (process.env.SPILLWAY_TEST_TRACE) console.log('waiting for', what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function clusters(b: BrokerProcess): Promise<Map<string, ClusterRow>> {
  const res = await b.rest('GET', '/api/v1/clusters');
  expect(res.status).toBe(200);
  const rows = (res.body as { clusters: ClusterRow[] }).clusters;
  return new Map(rows.map((c) => [c.id, c]));
}

async function joinAs(b: BrokerProcess, clusterId: string, role: string): Promise<JoinedIdentity> {
  const res = await b.rest('POST', '/api/v1/join-tokens', { body: { clusterId, role } });
  expect(res.status).toBe(201);
  return joinCluster({
    brokerAddress: b.grpcAddress,
    caPem: b.caPem,
    token: (res.body as { token: string }).token,
  });
}

function client(b: BrokerProcess, id: JoinedIdentity): BrokerClient {
  const c = new BrokerClient({
    address: b.grpcAddress,
    caPem: id.caPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    callTimeoutMs: 10_000,
  });
  clients.push(c);
  return c;
}

const fastRetry = { backoff: { baseMs: 100, maxMs: 500 } };

/** An agent as agents are: a full inventory snapshot after each connect. */
function agentHandlers(): StreamHandlers {
  let sequence = 0;
  return {
    onConnected: (s) => {
      s.send({
        capacity: {
          full: true,
          sequence: ++sequence,
          nodes: [
            { name: 'gpu-1', gpus: { 'nvidia.com/gpu': { allocatable: 4, free: 4 } }, ready: true },
          ],
        },
      });
    },
  };
}

describe('a broker restarted on SQLite', () => {
  it('reads clusters it holds no stream for Unknown until they reconnect or the heartbeat timeout passes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-restart-'));
    dirs.push(dir);
    const launch = {
      dir,
      adminToken: ADMIN,
      flags: [`--heartbeat-timeout=${HEARTBEAT_TIMEOUT_S}s`],
    };
    const first = await startBrokerProcess(launch);
    brokers.push(first);
    const ids = {
      lab: await joinAs(first, 'lab', 'origin'),
      a: await joinAs(first, 'donor-a', 'donor'),
      b: await joinAs(first, 'donor-b', 'donor'),
    };
    for (const donor of ['donor-a', 'donor-b']) {
      const res = await first.rest('POST', '/api/v1/peerings', { body: { origin: 'lab', donor } });
      expect(res.status).toBe(201);
    }
    // What the origin's shim hears of its donors, last message first.
    const heard: PeeringState__Output[] = [];
    client(first, ids.lab).connect(
      'virtual-node',
      { onPeerings: (s) => void heard.unshift(s) },
      fastRetry,
    );
    client(first, ids.a).connect('agent', agentHandlers(), fastRetry);
    const agentB = client(first, ids.b);
    agentB.connect('agent', agentHandlers(), fastRetry);
    const before = await until('the donors Ready and the shim connected', async () => {
      const cs = await clusters(first);
      const donorsReady = ['donor-a', 'donor-b'].every(
        (id) => cs.get(id)?.state === 'Ready' && cs.get(id)?.nodeCount === 1,
      );
      return donorsReady && cs.get('lab')?.connections['virtual-node'] ? cs : undefined;
    });
    const deadId = before.get('donor-a')!.connections.agent!.brokerId;

    // Killed mid-stream: its connection records stay behind. donor-b's agent does not return.
    first.child.kill('SIGKILL');
    await first.exited;
    await agentB.close();
    const second = await startBrokerProcess({
      ...launch,
      grpcPort: Number(first.grpcAddress.split(':')[1]),
      httpPort: Number(new URL(first.restUrl).port),
    });
    brokers.push(second);

    const after = await clusters(second);
    expect(after.get('donor-b')).toMatchObject({ state: 'Unknown', connections: {} });
    for (const c of after.values()) {
      expect(['Unknown', 'Ready'], c.id).toContain(c.state);
      // Ready only on a stream the new process holds.
      if (c.state === 'Ready') expect(c.connections.agent?.brokerId).not.toBe(deadId);
    }

    const cli = spawnSync(
      process.execPath,
      [SPILLCTL, 'get', 'clusters', '--server', second.restUrl, '--token', ADMIN],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 },
    );
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout.split('\n').find((l) => l.startsWith('donor-b'))).toMatch(/\bUnknown\b/);

    // The shim reconnects and hears donor-b Unknown; donor-a comes back Ready on its own.
    const donorState = (donor: string) =>
      heard[0]?.as_origin.find((p) => p.donor_cluster === donor)?.donor_state;
    await until('the shim to hear donor-b Unknown', () =>
      Promise.resolve(donorState('donor-b') === 'Unknown' ? true : undefined),
    );
    await until('donor-a Ready on the new process', async () => {
      const a = (await clusters(second)).get('donor-a');
      return a?.state === 'Ready' && a.connections.agent?.brokerId !== deadId ? a : undefined;
    });
    expect((await clusters(second)).get('donor-b')?.state).toBe('Unknown');

    // donor-b never returns: once the heartbeat timeout has passed it is NotReady, and the
    // shim is told.
    await until('donor-b NotReady', async () =>
      (await clusters(second)).get('donor-b')?.state === 'NotReady' ? true : undefined,
    );
    await until('the shim to hear donor-b NotReady', () =>
      Promise.resolve(donorState('donor-b') === 'NotReady' ? true : undefined),
    );
    expect(donorState('donor-a')).toBe('Ready');
  }, 240_000);
});
