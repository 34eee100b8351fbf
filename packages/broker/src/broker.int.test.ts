import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHANNEL_OPTIONS,
  loadSpillwayV1,
  type BrokerMessage__Output,
  type JoinResponse__Output,
} from '@spillway/api';
import { Writable } from 'node:stream';
import {
  createCsr,
  createLogger,
  generateKeyPair,
  inspectCertificate,
  silentLogger,
} from '@spillway/common';
import { startBroker, type RunningBroker } from './broker.js';
import { brokerConfig, type BrokerConfig } from './config.js';
import { pkiPaths } from './pki-files.js';
import { newApiToken } from './rest/tokens.js';
import { Core } from './core/broker-core.js';
import { StreamProbe } from '../test-support/grpc/stream-probe.js';
import { createStore } from './store/index.js';
import { openSqliteStore } from './store/sqlite.js';

const ADMIN = 'broker-test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

const dirs: string[] = [];
const running: RunningBroker[] = [];
afterEach(async () => {
  for (const b of running.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(dataDir: string, extra: Partial<BrokerConfig> = {}): BrokerConfig {
  return brokerConfig({
    dataDir,
    grpcHost: '127.0.0.1',
    grpcPort: 0,
    httpHost: '127.0.0.1',
    httpPort: 0,
    adminToken: ADMIN,
    logLevel: 'silent',
    shutdownGrace: 500,
    ...extra,
  });
}

async function start(cfg: BrokerConfig): Promise<RunningBroker> {
  const b = await startBroker(cfg, silentLogger());
  running.push(b);
  return b;
}

async function api(
  b: RunningBroker,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  return fetch(`http://127.0.0.1:${b.httpPort}${path}`, {
    method,
    headers: auth,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function joinToken(b: RunningBroker, clusterId: string): Promise<string> {
  const res = await api(b, 'POST', '/api/v1/join-tokens', { clusterId, role: 'both' });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

/** A cluster joining the way an agent does: over the broker's TLS gRPC port. */
function joinOverGrpc(
  b: RunningBroker,
  token: string,
  clusterId: string,
  keys = generateKeyPair(),
): Promise<JoinResponse__Output> {
  const v1 = loadSpillwayV1();
  const client = new v1.ClusterService(
    `localhost:${b.grpcPort}`,
    grpc.credentials.createSsl(Buffer.from(b.caCertPem)),
    CHANNEL_OPTIONS,
  );
  return new Promise<JoinResponse__Output>((resolve, reject) => {
    client.Join({ token, csr_pem: createCsr(keys.privateKeyPem, clusterId) }, (err, res) => {
      client.close();
      if (err || !res) reject(err ?? new Error('no response'));
      else resolve(res);
    });
  });
}

/**
 * An authenticated call that changes nothing (releasing an unknown reservation) over mTLS
 * with this key and certificate: the Spillway error code it answers.
 */
function callWith(b: RunningBroker, keyPem: string, certPem: string): Promise<string> {
  const v1 = loadSpillwayV1();
  const client = new v1.PlacementService(
    `localhost:${b.grpcPort}`,
    grpc.credentials.createSsl(Buffer.from(b.caCertPem), Buffer.from(keyPem), Buffer.from(certPem)),
    CHANNEL_OPTIONS,
  );
  return new Promise<string>((resolve) => {
    client.Release({ reservation_id: 'no-such-reservation', reason: '' }, (err) => {
      client.close();
      const code = err?.metadata.get('spillway-error-code')[0];
      resolve(typeof code === 'string' ? code : String(err?.code ?? 'OK'));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });
}

describe('startBroker', () => {
  it('keeps clusters, peerings and join tokens across a restart on the same data dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const first = await start(config(dir));
    expect(first.grpcPort).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'broker.db'))).toBe(true);
    expect(readFileSync(pkiPaths(join(dir, 'pki')).caCert, 'utf8')).toBe(first.caCertPem);

    for (const id of ['east', 'west']) {
      const joined = await joinOverGrpc(first, await joinToken(first, id), id);
      expect(joined.cluster_id).toBe(id);
      expect(inspectCertificate(joined.certificate_pem).identity).toEqual({
        kind: 'cluster',
        name: id,
      });
    }
    const spare = await joinToken(first, 'north');
    const peered = await api(first, 'POST', '/api/v1/peerings', {
      origin: 'east',
      donor: 'west',
      maxGpus: 4,
    });
    expect(peered.status).toBe(201);
    const serverCert = readFileSync(pkiPaths(join(dir, 'pki')).serverCert, 'utf8');
    await first.stop();
    running.splice(0);
    expect(await refused(first.httpPort)).toBe(true);

    const second = await start(config(dir));
    expect(second.caCertPem).toBe(first.caCertPem);
    expect(readFileSync(pkiPaths(join(dir, 'pki')).serverCert, 'utf8')).toBe(serverCert);
    const clusters = (await (await api(second, 'GET', '/api/v1/clusters')).json()) as {
      clusters: { id: string }[];
    };
    expect(clusters.clusters.map((c) => c.id).sort()).toEqual(['east', 'west']);
    const peerings = (await (await api(second, 'GET', '/api/v1/peerings')).json()) as {
      peerings: { origin: string; donor: string; maxGpus: number }[];
    };
    expect(peerings.peerings).toMatchObject([{ origin: 'east', donor: 'west', maxGpus: 4 }]);
    // The unused join token survived and still works, once.
    const joined = await joinOverGrpc(second, spare, 'north');
    expect(joined.ca_pem.trim()).toBe(first.caCertPem.trim());
    await expect(joinOverGrpc(second, spare, 'north')).rejects.toThrow(
      /invalid, expired or already used/,
    );
  });

  it('a cluster that joins again loses its previous certificate: an mTLS call with it is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const b = await start(config(dir));
    const oldKeys = generateKeyPair();
    const first = await joinOverGrpc(b, await joinToken(b, 'east'), 'east', oldKeys);
    // Authenticated: the reservation is unknown, not the caller.
    expect(await callWith(b, oldKeys.privateKeyPem, first.certificate_pem)).toBe('NOT_FOUND');
    const newKeys = generateKeyPair();
    const second = await joinOverGrpc(b, await joinToken(b, 'east'), 'east', newKeys);
    expect(await callWith(b, oldKeys.privateKeyPem, first.certificate_pem)).toBe('CERT_REVOKED');
    expect(await callWith(b, newKeys.privateKeyPem, second.certificate_pem)).toBe('NOT_FOUND');
    expect((await b.store.listRevoked()).map((r) => [r.subject, r.reason])).toEqual([
      ['cluster:east', 'cluster joined again'],
    ]);
  });

  it("after a restart on SQLite, a dead process's stream records do not make a cluster Ready", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const first = await start(config(dir));
    await joinOverGrpc(first, await joinToken(first, 'east'), 'east');
    await first.stop();
    running.splice(0);
    // What a broker killed mid-stream leaves behind: a fresh agent record and its report.
    const now = new Date();
    const leftover = await openSqliteStore({ path: join(dir, 'broker.db') });
    await leftover.putConnection({
      clusterId: 'east',
      component: 'agent',
      brokerId: 'killed-broker-1',
      connectedAt: now.toISOString(),
      lastSeenAt: now.toISOString(),
    });
    await leftover.applyCapacity(
      'east',
      { full: true, nodes: [], removedNodes: [], sequence: 1 },
      now,
    );
    await leftover.close();

    // Even under the same --broker-id: a record from before this process started is not its.
    const second = await start(config(dir, { brokerId: 'killed-broker-1' }));
    const clusters = (await (await api(second, 'GET', '/api/v1/clusters')).json()) as {
      clusters: { id: string; state: string; connections: Record<string, unknown> }[];
    };
    // Unknown until the agent reconnects or the heartbeat timeout passes (restart.int.test.ts).
    expect(clusters.clusters.find((c) => c.id === 'east')).toMatchObject({
      state: 'Unknown',
      connections: {},
    });
  });

  it('a cordon made through a replica that goes away at once reaches the shims on another replica', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const prefix = `spillway-test-${randomUUID().slice(0, 8)}:`;
    const r2 = await start(config(dir, { store: 'redis', redisPrefix: prefix }));
    const redis = new Redis('redis://127.0.0.1:6379');
    try {
      const labKeys = generateKeyPair();
      const lab = await joinOverGrpc(r2, await joinToken(r2, 'lab'), 'lab', labKeys);
      await joinOverGrpc(r2, await joinToken(r2, 'donor-a'), 'donor-a');
      expect(
        (await api(r2, 'POST', '/api/v1/peerings', { origin: 'lab', donor: 'donor-a' })).status,
      ).toBe(201);
      // lab's shim holds its stream on r2.
      const v1 = loadSpillwayV1();
      const client = new v1.ClusterService(
        `localhost:${r2.grpcPort}`,
        grpc.credentials.createSsl(
          Buffer.from(r2.caCertPem),
          Buffer.from(labKeys.privateKeyPem),
          Buffer.from(lab.certificate_pem),
        ),
        CHANNEL_OPTIONS,
      );
      const shim = new StreamProbe(client.Connect());
      try {
        shim.send({ hello: { component: 'COMPONENT_VIRTUAL_NODE', version: 'test' } });
        const donorState = (m: BrokerMessage__Output): string | undefined =>
          m.peerings?.as_origin.find((p) => p.donor_cluster === 'donor-a')?.donor_state;
        await shim.next((m) => donorState(m) === 'Pending');
        const seen = shim.messages.length;

        // Replica r1 stores the cordon, answers, and is gone before it could push anything.
        const store = await createStore({ kind: 'redis', url: 'redis://127.0.0.1:6379', prefix });
        const r1 = new Core({
          store,
          ca: { certPem: r2.caCertPem } as never,
          brokerId: 'r1',
          logger: silentLogger(),
        });
        r1.start();
        const view = await r1.patchCluster('donor-a', { cordoned: true });
        expect(view.policy.cordoned).toBe(true);
        await r1.stop();
        await store.close();

        await shim.next((m) => donorState(m) === 'Cordoned', 5_000, seen);
      } finally {
        shim.close();
        client.close();
      }
    } finally {
      await r2.stop();
      running.splice(0);
      const keys = await redis.keys(`${prefix.slice(0, -1)}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
  });

  it("two Redis replicas: a cordon answered by r1, then r1 stopping, reaches r2's shims; r1 restarts without errors", async () => {
    const prefix = `spillway-test-${randomUUID().slice(0, 8)}:`;
    const dirs2 = [
      mkdtempSync(join(tmpdir(), 'spillway-broker-')),
      mkdtempSync(join(tmpdir(), 'spillway-broker-')),
    ];
    dirs.push(...dirs2);
    const pkiDir = join(dirs2[0]!, 'pki');
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const cfg1 = config(dirs2[0]!, {
      store: 'redis',
      redisPrefix: prefix,
      pkiDir,
      brokerId: 'r1',
      logLevel: 'info',
    });
    const r1log = createLogger({
      level: 'info',
      bindings: { component: 'broker', brokerId: 'r1' },
      destination,
    });
    let r1 = await startBroker(cfg1, r1log);
    const r2 = await start(
      config(dirs2[1]!, { store: 'redis', redisPrefix: prefix, pkiDir, brokerId: 'r2' }),
    );
    const redis = new Redis('redis://127.0.0.1:6379');
    try {
      const labKeys = generateKeyPair();
      const lab = await joinOverGrpc(r2, await joinToken(r2, 'lab'), 'lab', labKeys);
      await joinOverGrpc(r2, await joinToken(r2, 'donor-a'), 'donor-a');
      expect(
        (await api(r2, 'POST', '/api/v1/peerings', { origin: 'lab', donor: 'donor-a' })).status,
      ).toBe(201);
      const v1 = loadSpillwayV1();
      const client = new v1.ClusterService(
        `localhost:${r2.grpcPort}`,
        grpc.credentials.createSsl(
          Buffer.from(r2.caCertPem),
          Buffer.from(labKeys.privateKeyPem),
          Buffer.from(lab.certificate_pem),
        ),
        CHANNEL_OPTIONS,
      );
      const shim = new StreamProbe(client.Connect());
      try {
        shim.send({ hello: { component: 'COMPONENT_VIRTUAL_NODE', version: 'test' } });
        const donorState = (m: BrokerMessage__Output): string | undefined =>
          m.peerings?.as_origin.find((p) => p.donor_cluster === 'donor-a')?.donor_state;
        await shim.next((m) => donorState(m) === 'Pending');
        const seen = shim.messages.length;
        const patched = await api(r1, 'PATCH', '/api/v1/clusters/donor-a', { cordoned: true });
        expect(patched.status).toBe(200);
        await r1.stop();
        await shim.next((m) => donorState(m) === 'Cordoned', 5_000, seen);
        r1 = await startBroker(cfg1, r1log);
        expect((await api(r1, 'GET', '/api/v1/clusters')).status).toBe(200);
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        shim.close();
        client.close();
      }
    } finally {
      await r1.stop();
      await r2.stop();
      running.splice(0);
      const keys = await redis.keys(`${prefix.slice(0, -1)}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    const errors = lines.filter((l) => /"level":"(error|fatal)"/.test(l));
    expect(errors).toEqual([]);
  });

  it('stops what it started when a later step fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as AddressInfo).port;
    const grpcPort = await freePort();
    try {
      await expect(
        startBroker(config(dir, { grpcPort, httpPort: taken }), silentLogger()),
      ).rejects.toThrow(/EADDRINUSE|in use/);
      // gRPC had been listening; the rollback closed it again.
      expect(await refused(grpcPort)).toBe(true);
    } finally {
      blocker.close();
    }
    const again = await start(config(dir, { grpcPort }));
    expect(again.grpcPort).toBe(grpcPort);
  });

  it('imports api-tokens.json from the PKI dir and answers readyz', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const { token, record } = newApiToken('viewer', 'written by spillctl broker init');
    mkdirSync(join(dir, 'pki'), { recursive: true });
    writeFileSync(pkiPaths(join(dir, 'pki')).apiTokens, JSON.stringify({ tokens: [record] }), {
      mode: 0o600,
    });
    const cfg = config(dir);
    delete cfg.adminToken;
    const b = await start(cfg);
    const base = `http://127.0.0.1:${b.httpPort}`;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/api/v1/clusters`, { headers })).status).toBe(200);
    const write = await fetch(`${base}/api/v1/peerings`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ origin: 'a', donor: 'b' }),
    });
    expect(write.status).toBe(403);
    // The old bootstrap admin token is not configured on this broker.
    expect((await api(b, 'GET', '/api/v1/clusters')).status).toBe(401);
  });

  it('runs on Redis with the Redis router, and stops without leaving connections open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
    dirs.push(dir);
    const prefix = `spillway-test-${randomUUID().slice(0, 8)}:`;
    const b = await start(config(dir, { store: 'redis', redisPrefix: prefix }));
    const ready = await fetch(`http://127.0.0.1:${b.httpPort}/readyz`);
    expect(await ready.json()).toEqual({ status: 'ready', store: 'redis' });
    const token = await joinToken(b, 'redis-1');
    const joined = await joinOverGrpc(b, token, 'redis-1');
    expect(joined.cluster_id).toBe('redis-1');
    const metrics = await (await fetch(`http://127.0.0.1:${b.httpPort}/metrics`)).text();
    expect(metrics).toContain('spillway_streams_open{component="agent"} 0');
    expect(metrics).toContain('process_cpu_user_seconds_total');
    await b.stop();
    // stop() is idempotent and the data is in Redis, not in the data dir.
    await b.stop();
    expect(existsSync(join(dir, 'broker.db'))).toBe(false);
    const redis = new Redis('redis://127.0.0.1:6379');
    try {
      const keys = await redis.keys(`${prefix.slice(0, -1)}*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
    } finally {
      await redis.quit();
    }
  });
});
