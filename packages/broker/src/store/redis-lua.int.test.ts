import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeInventory } from '../model.js';
import { reservableGpus, type NodeClaim } from './internal.js';
import { RESERVABLE_GPUS_LUA } from './redis-lua.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const RESOURCES = ['nvidia.com/gpu', 'nvidia.com/mig-1g.10gb', 'amd.com/gpu'];
const UIDS = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];

// The reserve script's own function, called on decoded ARGV instead of keys: no key is touched.
const PROBE = `${RESERVABLE_GPUS_LUA}
local n = false
if ARGV[1] ~= '' then n = cjson.decode(ARGV[1]) end
return reservable_gpus(n, ARGV[2], cjson.decode(ARGV[3]))
`;

const nodeArb: fc.Arbitrary<NodeInventory> = fc
  .record({
    gpus: fc.dictionary(
      fc.constantFrom(...RESOURCES),
      fc
        .tuple(fc.nat({ max: 64 }), fc.nat({ max: 64 }))
        .map(([a, b]) => ({ allocatable: Math.max(a, b), free: Math.min(a, b) })),
    ),
    ready: fc.boolean(),
    cordoned: fc.boolean(),
    offloadedPodUids: fc.uniqueArray(fc.constantFrom(...UIDS)),
  })
  .map((r) => ({
    name: 'n1',
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: {},
    taints: [],
    cpuAllocatableMillis: 0,
    cpuFreeMillis: 0,
    memoryAllocatableBytes: 0,
    memoryFreeBytes: 0,
    ...r,
  }));

// What the store passes: the open reservations on that node.
const claimsArb: fc.Arbitrary<NodeClaim[]> = fc.array(
  fc.record({
    state: fc.constant('open' as const),
    node: fc.constant('n1'),
    resource: fc.constantFrom(...RESOURCES),
    gpus: fc.integer({ min: 1, max: 16 }),
    pod: fc.record({ uid: fc.constantFrom(...UIDS) }),
  }),
  { maxLength: 8 },
);

describe('reserve script free-GPU arithmetic', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('equals reservableGpus on the same node, resource and open reservations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.option(nodeArb, { nil: undefined }),
        fc.constantFrom(...RESOURCES),
        claimsArb,
        async (node, resource, claims) => {
          const lua = await redis.eval(
            PROBE,
            0,
            node ? JSON.stringify(node) : '',
            resource,
            JSON.stringify(claims.map((c) => [c.resource, c.gpus, c.pod.uid])),
          );
          expect(lua).toBe(reservableGpus(node, resource, claims));
        },
      ),
      { numRuns: 300 },
    );
  });
});
