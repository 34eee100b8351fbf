import { randomUUID } from 'node:crypto';
import { BrokerClient, type JoinedIdentity, type PlaceGangRequest } from '@spillway/api';
import { SpillwayError } from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SERVER_NAME,
  joinAs,
  startBroker,
  type BrokerUnderTest,
} from '../../test-support/grpc/harness.js';
import type { NodeInventory } from '../model.js';

const GPU = 'nvidia.com/gpu';
let b: BrokerUnderTest;
let origin: JoinedIdentity;
let other: JoinedIdentity;
const opened: BrokerClient[] = [];

function gpuNode(name: string, free: number): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: 8, free } },
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 60_000,
    memoryAllocatableBytes: 2 ** 39,
    memoryFreeBytes: 2 ** 39,
    offloadedPodUids: [],
  };
}

function client(id: JoinedIdentity): BrokerClient {
  const c = new BrokerClient({
    address: b.address,
    caPem: b.ca.certPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    serverName: SERVER_NAME,
    callTimeoutMs: 10_000,
  });
  opened.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

function gang(name: string, gpus: number[], originId = 'gg-o'): PlaceGangRequest {
  const run = randomUUID().slice(0, 8);
  return {
    gang: `ml/${name}`,
    members: gpus.map((g, i) => ({
      pod: { origin_cluster: originId, namespace: 'ml', name: `${name}-${i}`, uid: `${run}-${i}` },
      resource_name: GPU,
      gpus: g,
    })),
  };
}

beforeAll(async () => {
  // Donors are made Ready through the core; placement reads no stream.
  b = await startBroker({ heartbeatTimeoutMs: 600_000 });
  origin = await joinAs(b, 'gg-o', 'origin');
  other = await joinAs(b, 'gg-x', 'origin');
  for (const [id, nodes] of [
    ['gg-a', [gpuNode('gpu-1', 4), gpuNode('gpu-2', 4)]],
    ['gg-b', [gpuNode('gpu-1', 3)]],
  ] as const) {
    await joinAs(b, id, 'donor');
    await b.core.connected(id, 'agent');
    await b.core.applyCapacity(id, {
      full: true,
      nodes: [...nodes],
      removedNodes: [],
      sequence: 1,
    });
    await b.core.createPeering({ origin: 'gg-o', donor: id });
  }
}, 60_000);

afterAll(async () => {
  for (const c of opened) await c.close();
  await b.stop();
});

describe('PlacementService.PlaceGang over mTLS gRPC', () => {
  it('reserves all members on the one donor that can hold them, across its nodes', async () => {
    const c = client(origin);
    const req = gang('train', [2, 2, 2, 2]);
    const res = await c.placeGang(req);
    expect(res.placed).toBe(true);
    expect(res.donor_cluster).toBe('gg-a');
    expect(res.reservations.map((r) => `${r.donor_cluster}/${r.node}:${r.gpus}`)).toEqual([
      'gg-a/gpu-1:2',
      'gg-a/gpu-1:2',
      'gg-a/gpu-2:2',
      'gg-a/gpu-2:2',
    ]);
    expect(res.reservations.map((r) => r.pod?.uid)).toEqual(req.members!.map((m) => m.pod!.uid));
    // Asking again (a lost answer, a restarted shim) gets the same reservations back.
    const again = await c.placeGang(req);
    expect(again.reservations.map((r) => r.id)).toEqual(res.reservations.map((r) => r.id));
    for (const r of res.reservations) {
      expect(await c.release({ reservation_id: r.id, reason: 'test' })).toEqual({ released: true });
    }
  });

  it('refuses a gang no donor can hold with the reason, and reserves nothing', async () => {
    const c = client(origin);
    const req = gang('huge', [4, 4, 4]);
    const res = await c.placeGang(req);
    expect(res.placed).toBe(false);
    expect(res.reason_code).toBe('NO_FIT');
    expect(res.reason).toMatch(
      /no peered donor can hold all of gang ml\/huge \(3 members, 12 nvidia.com\/gpu\); the largest free donor, gg-a, has 8 nvidia.com\/gpu free: 2 of 3 members fit/,
    );
    expect(res.verdicts.map((v) => v.donor_cluster)).toEqual(
      expect.arrayContaining(['gg-a', 'gg-b']),
    );
    for (const m of req.members!) {
      expect(await b.store.findReservationByPod(m.pod!.uid!)).toBeUndefined();
    }
  });

  it('many gangs racing for the same GPUs: each placed whole or not at all', async () => {
    const c = client(origin);
    // 11 GPUs free in all; 12 gangs of 2 + 1 GPUs.
    const reqs = Array.from({ length: 12 }, (_, i) => gang(`race-${i}`, [2, 1]));
    const results = await Promise.all(reqs.map((r) => c.placeGang(r)));
    const won = results.filter((r) => r.placed);
    expect(won.length).toBeGreaterThanOrEqual(2);
    for (const [i, r] of results.entries()) {
      const held = await Promise.all(
        reqs[i]!.members!.map((m) => b.store.findReservationByPod(m.pod!.uid!)),
      );
      expect(held.filter(Boolean).length, reqs[i]!.gang).toBe(r.placed ? 2 : 0);
      if (r.placed) expect(new Set(held.map((h) => h!.donor)).size).toBe(1);
    }
    for (const donor of ['gg-a', 'gg-b']) {
      const inv = await b.store.getInventory(donor);
      const live = await b.store.listReservations({ donor, states: ['open', 'bound'] });
      for (const n of inv!.nodes) {
        const held = live.filter((r) => r.node === n.name).reduce((s, r) => s + r.gpus, 0);
        expect(held, `${donor}/${n.name}`).toBeLessThanOrEqual(n.gpus[GPU]!.free);
      }
    }
    for (const r of won) for (const x of r.reservations) await c.release({ reservation_id: x.id });
  });

  it('lets no origin place another’s pods, and names the bad member field', async () => {
    const c = client(other);
    const foreign = await rejection(c.placeGang(gang('foreign', [1, 1], 'gg-o')));
    expect(foreign.code).toBe('PERMISSION_DENIED');
    expect(foreign.field).toBe('members[0].pod.origin_cluster');
    const bad = gang('bad', [1, -1]);
    const e = await rejection(client(origin).placeGang(bad));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.field).toBe('members[1].gpus');
    const none = await rejection(client(origin).placeGang(gang('none', [0, 0])));
    expect(none.field).toBe('members');
  });
});
