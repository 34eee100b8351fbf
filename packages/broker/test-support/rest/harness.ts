import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  issueKeyAndCertificate,
  silentLogger,
  type CertificateAuthority,
} from '@spillway/common';
import { Core } from '../../src/core/broker-core.js';
import type { BrokerCore } from '../../src/core/api.js';
import { Metrics } from '../../src/metrics.js';
import type { NodeInventory } from '../../src/model.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildRestApp } from '../../src/rest/app.js';
import { RestAuth } from '../../src/rest/auth.js';

/** The setup the REST suites (src/rest/rest.*.int.test.ts) share: the real core on SQLite. */

export const ADMIN = 'admin-token-0123456789abcdef';
export const VIEWER = 'viewer-token-0123456789abcdef';
export const GPU = 'nvidia.com/gpu';
export const A100 = 'NVIDIA-A100-SXM4-80GB';

export const admin = { authorization: `Bearer ${ADMIN}` };
export const viewer = { authorization: `Bearer ${VIEWER}` };

export function gpuNode(name: string, free: number, allocatable = 8): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable, free } },
    gpuProduct: A100,
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': A100, 'kubernetes.io/hostname': name },
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 256 * 2 ** 30,
    offloadedPodUids: [],
  };
}

export interface Harness {
  dir: string;
  store: Store;
  core: BrokerCore;
  metrics: Metrics;
  app: FastifyInstance;
}

let sharedCa: CertificateAuthority | undefined;
/** The CA of this test file's brokers, made on first use. */
export function testCa(): CertificateAuthority {
  sharedCa ??= createCertificateAuthority();
  return sharedCa;
}

export async function harness(
  opts: { failureLimit?: number; tls?: boolean } = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-rest-'));
  const logger = silentLogger();
  const store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  const metrics = new Metrics();
  metrics.bindStore(store);
  const core = new Core({
    store,
    ca: testCa(),
    logger,
    brokerId: 'rest-test',
    placementPolicy: 'binpack',
    metrics,
  });
  const auth = new RestAuth({
    store,
    adminToken: ADMIN,
    viewerToken: VIEWER,
    failureLimit: opts.failureLimit ?? 1000,
    caCertPem: testCa().certPem,
    isRevoked: (serial) => core.isRevoked(serial),
    metrics,
  });
  let tls: { keyPem: string; certPem: string; caPem: string } | undefined;
  if (opts.tls) {
    const server = issueKeyAndCertificate({
      ca: testCa(),
      profile: 'server',
      identity: { kind: 'broker', name: 'test' },
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      validSeconds: 3600,
    });
    tls = { keyPem: server.keyPem, certPem: server.certPem, caPem: testCa().certPem };
  }
  const app = buildRestApp({ core, store, logger, auth, metrics, ...(tls ? { tls } : {}) });
  await app.ready();
  return { dir, store, core, metrics, app };
}

export async function close(h: Harness): Promise<void> {
  await h.app.close();
  await h.core.stop();
  await h.store.close();
  rmSync(h.dir, { recursive: true, force: true });
}

/** A cluster that joined with a real CSR, holds a stream and reported its nodes. */
export async function joinCluster(
  core: BrokerCore,
  id: string,
  role: 'origin' | 'donor' | 'both',
  nodes: NodeInventory[] = [],
): Promise<void> {
  const issued = await core.createJoinToken({ clusterId: id, role });
  const keys = generateKeyPair();
  await core.join(issued.token, createCsr(keys.privateKeyPem, id));
  await core.connected(id, 'agent');
  await core.applyCapacity(id, { full: true, nodes, removedNodes: [], sequence: 1 });
}

/** inject() as an admin by default; a string payload goes as raw JSON. */
export type Inject = (
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  headers?: Record<string, string>,
  payload?: unknown,
) => Promise<Awaited<ReturnType<FastifyInstance['inject']>>>;

export interface SeededApi {
  /** The file's harness (made in beforeAll). */
  readonly h: Harness;
  inject: Inject;
  /** Everything an admin can see; compared before and after refused requests. */
  snapshot(): Promise<unknown>;
}

/**
 * One harness for the file with origin-a, and donors donor-b (gpu-1: 6 free, gpu-2: 2) and
 * donor-c (gpu-9: 1), each joined with a real CSR, connected and reporting.
 */
export function seededApi(): SeededApi {
  let h: Harness | undefined;
  beforeAll(async () => {
    h = await harness();
    await joinCluster(h.core, 'origin-a', 'origin');
    await joinCluster(h.core, 'donor-b', 'donor', [gpuNode('gpu-1', 6), gpuNode('gpu-2', 2)]);
    await joinCluster(h.core, 'donor-c', 'donor', [gpuNode('gpu-9', 1)]);
  });
  afterAll(async () => {
    if (h) await close(h);
  });
  const api: SeededApi = {
    get h() {
      if (!h) throw new Error('the harness is made in beforeAll');
      return h;
    },
    inject: (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      headers = admin,
      payload?: unknown,
    ) =>
      api.h.app.inject({
        method,
        url,
        headers,
        ...(payload === undefined
          ? {}
          : typeof payload === 'string'
            ? { payload, headers: { ...headers, 'content-type': 'application/json' } }
            : { payload: payload as Record<string, unknown> }),
      }),

    async snapshot() {
      const urls = [
        '/api/v1/clusters',
        '/api/v1/clusters/donor-b',
        '/api/v1/peerings',
        '/api/v1/offloads',
        '/api/v1/capacity',
        '/api/v1/api-tokens',
      ];
      const out: Record<string, unknown> = {};
      for (const u of urls) {
        const res = await api.inject('GET', u);
        expect(res.statusCode, u).toBe(200);
        out[u] = res.json();
      }
      // lastSeenAt moves with heartbeats, not with requests; leave it out of the comparison.
      return JSON.parse(
        JSON.stringify(out, (k, v: unknown) => (k === 'lastSeenAt' ? undefined : v)),
      ) as unknown;
    },
  };
  return api;
}
