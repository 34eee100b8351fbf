import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  SpillwayError,
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  inspectCertificate,
  silentLogger,
  verifyCertificate,
  type CertificateAuthority,
} from '@spillway/common';
import type { ClusterRole, NodeInventory } from '../model.js';
import { openSqliteStore } from '../store/sqlite.js';
import { RedisStore } from '../store/redis.js';
import type { Store } from '../store/store.js';
import { Metrics } from '../metrics.js';
import type { PlacementRequest } from './api.js';
import { Core, type CoreOptions } from './broker-core.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const GPU = 'nvidia.com/gpu';
const A100 = 'NVIDIA-A100-SXM4-80GB';

let ca: CertificateAuthority;
let keyPem: string;
let csr: string;

beforeAll(() => {
  ca = createCertificateAuthority({ commonName: 'Spillway test CA' });
  keyPem = generateKeyPair().privateKeyPem;
  // The CSR claims another identity; the broker must ignore it.
  csr = createCsr(keyPem, 'cluster:impostor');
});

/** A store backend under test, with as many connections to the same data as asked. */
interface Backend {
  name: string;
  open(): Promise<Store>;
  cleanup(): Promise<void>;
  /** How many keys the backend holds, where that means something (Redis). */
  keys?(): Promise<number>;
}

function sqliteBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-core-'));
  const path = join(dir, 'broker.db');
  return {
    name: 'sqlite',
    open: async () => openSqliteStore({ path }),
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

function redisBackend(): Backend {
  const prefix = `spillway-test:core:${process.pid}:${randomUUID()}:`;
  return {
    name: 'redis',
    open: () => Promise.resolve(new RedisStore(REDIS_URL, { prefix })),
    async keys() {
      const admin = new Redis(REDIS_URL);
      try {
        let n = 0;
        let cursor = '0';
        do {
          const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          n += keys.length;
          cursor = next;
        } while (cursor !== '0');
        return n;
      } finally {
        await admin.quit();
      }
    },
    async cleanup() {
      const admin = new Redis(REDIS_URL);
      try {
        let cursor = '0';
        do {
          const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          if (keys.length > 0) await admin.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } finally {
        await admin.quit();
      }
    },
  };
}

function gpuNode(name: string, free: number, over: Partial<NodeInventory> = {}): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: Math.max(8, free), free } },
    gpuProduct: A100,
    gpuMemoryMiB: 81920,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 60_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 500 * 2 ** 30,
    offloadedPodUids: [],
    ...over,
  };
}

function placement(uid: string, gpus = 1, over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    pod: { originCluster: 'lab', namespace: 'ml', name: `pod-${uid}`, uid },
    resource: GPU,
    gpus,
    nodeRequirements: [],
    tolerations: [],
    cpuMillis: 1000,
    memoryBytes: 2 ** 30,
    donors: [],
    ...over,
  };
}

async function caught(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a SpillwayError');
}

/** A controllable clock starting now, so issued certificates verify against real time too. */
function fakeClock(): { clock: () => Date; advance(ms: number): void } {
  let t = Date.now();
  return { clock: () => new Date(t), advance: (ms) => void (t += ms) };
}

async function joinAs(core: Core, clusterId: string, role: ClusterRole): Promise<string> {
  const { token } = await core.createJoinToken({ clusterId, role });
  return (await core.join(token, csr)).certificatePem;
}

for (const makeBackend of [sqliteBackend, redisBackend]) {
  describe(`Core on ${makeBackend().name}`, () => {
    let backend: Backend;
    const stores: Store[] = [];
    const cores: Core[] = [];
    let time: ReturnType<typeof fakeClock>;

    async function newCore(opts: Partial<CoreOptions> = {}): Promise<Core> {
      const store = await backend.open();
      stores.push(store);
      const core = new Core({
        store,
        ca,
        brokerId: `broker-${cores.length}`,
        logger: silentLogger(),
        clock: time.clock,
        lendingDebounceMs: 10,
        ...opts,
      });
      cores.push(core);
      return core;
    }

    /** lab borrows from donor-a (2 nodes: 8 and 4 free A100s), agent connected and reporting. */
    async function peeredLab(core: Core, peeringMaxGpus = 0): Promise<void> {
      await joinAs(core, 'lab', 'origin');
      await joinAs(core, 'donor-a', 'donor');
      await core.connected('donor-a', 'agent');
      await core.applyCapacity('donor-a', {
        full: true,
        nodes: [gpuNode('n1', 8), gpuNode('n2', 4)],
        removedNodes: [],
        sequence: 1,
      });
      await core.createPeering({ origin: 'lab', donor: 'donor-a', maxGpus: peeringMaxGpus });
    }

    beforeAll(() => {
      backend = makeBackend();
    });
    afterEach(async () => {
      await Promise.all(cores.splice(0).map((c) => c.stop()));
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await backend.cleanup();
      backend = makeBackend();
    });
    afterAll(async () => {
      await backend.cleanup();
    });
    beforeAll(() => {
      time = fakeClock();
    });

    describe('join', () => {
      it('exchanges a token once for a certificate whose identity the broker chose', async () => {
        const core = await newCore();
        const issued = await core.createJoinToken({ clusterId: 'gpu-east', role: 'donor' });
        expect(issued.token).toMatch(/^[a-z0-9]{16}\.[A-Za-z0-9_-]{43}$/);
        expect(issued.token.startsWith(`${issued.id}.`)).toBe(true);

        const res = await core.join(issued.token, csr);
        expect(res.clusterId).toBe('gpu-east');
        expect(res.caPem).toBe(ca.certPem);
        const info = verifyCertificate(res.certificatePem, { caCertPem: ca.certPem });
        expect(info.identity).toEqual({ kind: 'cluster', name: 'gpu-east' });
        expect(info.commonName).toBe('cluster:gpu-east');
        expect(info.commonName).not.toContain('impostor');

        const record = await core.getClusterRecord('gpu-east');
        expect(record).toMatchObject({ id: 'gpu-east', role: 'donor', certSerial: info.serial });
        expect(record?.certNotAfter).toBe(res.notAfter);
        // 30 days by default.
        expect(Date.parse(res.notAfter) - Date.now()).toBeGreaterThan(29 * 86_400_000);

        // The secret itself is never stored.
        const stored = await stores[0]!.listJoinTokens();
        const secret = issued.token.split('.')[1]!;
        expect(JSON.stringify(stored)).not.toContain(secret);

        const again = await caught(core.join(issued.token, csr));
        expect(again.code).toBe('TOKEN_INVALID');
      });

      it('refuses expired, unknown, tampered and malformed tokens alike', async () => {
        const core = await newCore();
        const short = await core.createJoinToken({ clusterId: 'c1', role: 'donor', ttlMs: 1000 });
        const good = await core.createJoinToken({ clusterId: 'c2', role: 'donor' });
        time.advance(1001);
        const tampered = `${good.id}.${'A'.repeat(43)}`;
        for (const token of [
          short.token,
          tampered,
          `deadbeefdeadbeef.${'B'.repeat(43)}`,
          'nonsense',
          '',
        ]) {
          const err = await caught(core.join(token, csr));
          expect(err.code).toBe('TOKEN_INVALID');
          expect(err.field).toBe('token');
        }
        // None of it burnt the good token.
        expect((await core.join(good.token, csr)).clusterId).toBe('c2');
        expect(await core.getClusterRecord('c1')).toBeUndefined();
      });

      it('a bad CSR does not use up the token', async () => {
        const core = await newCore();
        const { token } = await core.createJoinToken({ clusterId: 'c1', role: 'both' });
        const err = await caught(core.join(token, 'not a csr'));
        expect(err.code).toBe('CERT_INVALID');
        expect(err.field).toBe('csr_pem');
        expect(await core.getClusterRecord('c1')).toBeUndefined();
        expect((await core.join(token, csr)).clusterId).toBe('c1');
      });

      it('validates token input naming the field', async () => {
        const core = await newCore();
        for (const [input, field] of [
          [{ clusterId: 'Bad_ID', role: 'donor' }, 'clusterId'],
          [{ clusterId: 'ok', role: 'lender' }, 'role'],
          [{ clusterId: 'ok', role: 'donor', ttlMs: 25 * 3_600_000 }, 'ttlMs'],
          [{ clusterId: 'ok', role: 'donor', ttlMs: 0 }, 'ttlMs'],
        ] as const) {
          const err = await caught(core.createJoinToken(input as never));
          expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', field]);
        }
        expect(await stores[0]!.listJoinTokens()).toEqual([]);
      });

      it('re-joining rotates the certificate, revokes the old one and keeps policy; renew needs a live cluster', async () => {
        const core = await newCore();
        const first = inspectCertificate(await joinAs(core, 'c1', 'donor'));
        await core.patchCluster('c1', { policy: { maxGpus: 3 } });
        const second = inspectCertificate(await joinAs(core, 'c1', 'both'));
        expect(second.serial).not.toBe(first.serial);
        // A new identity for the same cluster: the old certificate stops working.
        expect(await core.isRevoked(first.serial)).toBe(true);
        expect(await core.isRevoked(second.serial)).toBe(false);
        const rec = await core.getClusterRecord('c1');
        expect(rec).toMatchObject({ role: 'both', certSerial: second.serial });
        expect(rec?.policy.maxGpus).toBe(3);

        const renewed = await core.renew('c1', csr);
        const third = verifyCertificate(renewed.certificatePem, { caCertPem: ca.certPem });
        expect(third.identity).toEqual({ kind: 'cluster', name: 'c1' });
        expect((await core.getClusterRecord('c1'))?.certSerial).toBe(third.serial);

        expect((await caught(core.renew('ghost', csr))).code).toBe('NOT_FOUND');
        await core.removeCluster('c1');
        expect((await caught(core.renew('c1', csr))).code).toBe('PERMISSION_DENIED');
      });
    });

    describe('removal and revocation', () => {
      it('revokes the certificate, drops peerings and inventory, and other replicas converge', async () => {
        const a = await newCore();
        const b = await newCore({ revocationRefreshMs: 50 });
        await peeredLab(a);
        const serial = (await a.getClusterRecord('donor-a'))!.certSerial!;
        expect(await b.isRevoked(serial)).toBe(false);
        const revoked: string[] = [];
        const changed: string[][] = [];
        a.events.on('clusterRevoked', (id) => revoked.push(id));
        a.events.on('peeringsChanged', (ids) => changed.push(ids));

        await a.removeCluster('donor-a');
        expect(revoked).toEqual(['donor-a']);
        expect(changed).toContainEqual(['lab']);
        expect(await a.isRevoked(serial)).toBe(true);
        await new Promise((r) => setTimeout(r, 60));
        expect(await b.isRevoked(serial)).toBe(true);
        expect(await a.listPeerings()).toEqual([]);
        expect(await a.getInventory('donor-a')).toBeUndefined();
        const view = (await a.listClusters()).find((c) => c.id === 'donor-a');
        expect(view?.state).toBe('Revoked');
        expect((await caught(a.connected('donor-a', 'agent'))).code).toBe('PERMISSION_DENIED');
        expect((await caught(a.removeCluster('ghost'))).code).toBe('NOT_FOUND');
      });
    });

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
        expect((await core.drainPeering('lab', 'donor-a')).deletingSince).toBe(
          drained.deletingSince,
        );
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
        expect(res.verdicts.filter((v) => v.reason === '').map((v) => v.node)).toEqual([
          'n2',
          'n1',
        ]);

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
        expect(
          (await core.offloads({ origin: 'lab', states: ['ended'] })).map((r) => r.id),
        ).toEqual([res.reservation.id]);
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
          (await caught(core.patchCluster('donor-a', { policy: { colour: 'red' } as never })))
            .field,
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
        expect(all.rows.map((r) => `${r.cluster}:${r.gpuProduct}:${r.resource}:${r.free}`)).toEqual(
          [
            `donor-a:${A100}:${GPU}:12`,
            `donor-b:${A100}:nvidia.com/mig-1g.10gb:7`,
            `donor-b:Tesla-T4:${GPU}:4`,
          ],
        );
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
        expect((await core.getInventory('donor-a'))?.nodes.map((n) => n.name)).toEqual([
          'n1',
          'n2',
        ]);
      });
    });

    describe('races', () => {
      it('one token, two concurrent joins: exactly one certificate', async () => {
        const a = await newCore();
        const b = await newCore();
        const { token } = await a.createJoinToken({ clusterId: 'c1', role: 'donor' });
        const results = await Promise.allSettled([a.join(token, csr), b.join(token, csr)]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const failed = results.find((r) => r.status === 'rejected');
        expect((failed as PromiseRejectedResult).reason).toMatchObject({ code: 'TOKEN_INVALID' });
      });

      it('the same pod placed concurrently on two replicas gets one reservation', async () => {
        const a = await newCore();
        const b = await newCore();
        await peeredLab(a);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? a : b).place('lab', placement('same-pod', 2)),
          ),
        );
        const ids = new Set(
          results.map((r) => (r.placed ? r.reservation.id : `refused:${r.code}`)),
        );
        expect(ids.size).toBe(1);
        expect([...ids][0]).not.toMatch(/^refused/);
        expect(await a.offloads({ states: ['open'] })).toHaveLength(1);
      });

      it('a peering limit holds under concurrent places across replicas', async () => {
        const a = await newCore();
        const b = await newCore();
        await peeredLab(a, 5);
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 ? a : b).place('lab', placement(`q-${i}`, 1)),
          ),
        );
        expect(results.filter((r) => r.placed)).toHaveLength(5);
        for (const r of results) if (!r.placed) expect(r.code).toBe('QUOTA_EXCEEDED');
        expect((await a.offloads({ origin: 'lab', states: ['open'] })).length).toBe(5);
      });
    });

    it('churn: 10,000 reservations placed and finished leave the store bounded by retention', async () => {
      const retentionMs = 60_000;
      const stepMs = 100;
      const core = await newCore({ reservationRetentionMs: retentionMs, pruneIntervalMs: 0 });
      await peeredLab(core);
      // One wide node, so fifty placements can run at once.
      await core.applyCapacity('donor-a', {
        full: true,
        nodes: [gpuNode('n1', 64)],
        removedNodes: [],
        sequence: 2,
      });
      const finished = async (): Promise<number> =>
        (await stores[0]!.listReservations({ states: ['released', 'expired', 'ended'] })).length;
      let most = 0;
      const batch = 100;
      for (let done = 0; done < 10_000; done += batch) {
        await Promise.all(
          Array.from({ length: 50 }, async (_, w) => {
            for (let i = w; i < batch; i += 50) {
              const r = await core.place('lab', placement(`churn-${done + i}`));
              if (!r.placed) throw new Error(r.reason);
              await core.release('lab', r.reservation.id, 'churn');
            }
          }),
        );
        time.advance(batch * stepMs);
        // Heartbeats keep the donor Ready while the fake clock runs ahead.
        await core.heartbeat('donor-a', 'agent');
        await core.tick();
        most = Math.max(most, await finished());
      }
      // What finished within the retention stays (one batch more: pruned at its tick).
      const bound = retentionMs / stepMs + batch;
      expect(most).toBeLessThanOrEqual(bound);
      expect(await finished()).toBeGreaterThan(0);
      expect(await finished()).toBeLessThanOrEqual(bound);
      expect(await stores[0]!.listReservations()).toHaveLength(await finished());
      if (backend.keys) expect(await backend.keys()).toBeLessThan(bound * 3 + 100);
    }, 180_000);

    it('concurrency: 1,000 places for 1 GPU each against 100 free GPUs on several replicas', async () => {
      // Redis: four replicas with their own connections; SQLite: two connections to one file.
      const replicas = backend.name === 'redis' ? 4 : 2;
      const all: Core[] = [];
      for (let i = 0; i < replicas; i++) all.push(await newCore());
      const first = all[0]!;
      await joinAs(first, 'lab', 'origin');
      // 100 free GPUs over 4 donors and 23 nodes of different sizes.
      const layout: Record<string, number[]> = {
        'donor-a': [8, 8, 8, 8],
        'donor-b': [8, 8, 8, 4],
        'donor-c': [4, 4, 4, 4, 4],
        'donor-d': [2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
      };
      let total = 0;
      for (const [donor, sizes] of Object.entries(layout)) {
        await joinAs(first, donor, 'donor');
        await first.connected(donor, 'agent');
        await first.applyCapacity(donor, {
          full: true,
          nodes: sizes.map((free, i) => gpuNode(`node-${i}`, free)),
          removedNodes: [],
          sequence: 1,
        });
        await first.createPeering({ origin: 'lab', donor });
        total += sizes.reduce((a, b) => a + b, 0);
      }
      expect(total).toBe(100);

      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          all[i % replicas]!.place('lab', placement(`pod-${i}`, 1)),
        ),
      );
      const elapsedMs = performance.now() - started;
      console.log(
        `[${backend.name}] 1000 concurrent place() on ${replicas} replicas: ${elapsedMs.toFixed(0)} ms`,
      );

      const placed = results.filter((r) => r.placed);
      expect(placed).toHaveLength(100);
      for (const r of results) if (!r.placed) expect(r.code).toBe('NO_FIT');

      const open = await stores[0]!.listReservations({ states: ['open'] });
      expect(open).toHaveLength(100);
      expect(new Set(open.map((r) => r.pod.uid)).size).toBe(100);
      const perNode = new Map<string, number>();
      for (const r of open)
        perNode.set(`${r.donor}/${r.node}`, (perNode.get(`${r.donor}/${r.node}`) ?? 0) + r.gpus);
      for (const [donor, sizes] of Object.entries(layout)) {
        sizes.forEach((free, i) => {
          expect(perNode.get(`${donor}/node-${i}`) ?? 0).toBeLessThanOrEqual(free);
        });
      }
      expect([...perNode.values()].reduce((a, b) => a + b, 0)).toBe(100);
      expect((await first.capacity({ origin: 'lab' })).totals.free).toBe(0);
    });
  });
}
