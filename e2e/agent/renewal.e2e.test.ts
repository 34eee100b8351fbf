import { IdentityStore } from '@spillway/agent';
import { inspectCertificate, silentLogger } from '@spillway/common';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSpillway, type SpillwayBed } from '../harness/spillway.js';
import { gpuNode, poll, startTestbed, type TestCluster, type Testbed } from '../testbed/index.js';

// Certificates that live 20 s: the agent must renew at two thirds of that, store the new
// one in its Secret, and stay connected after the first certificate has expired.
let testbed: Testbed;
let bed: SpillwayBed;
let donor: TestCluster;

beforeAll(async () => {
  testbed = await startTestbed({
    clusters: [{ name: 'donor', nodes: [gpuNode('donor-gpu-0', 4, 'L4')] }],
  });
  donor = testbed.cluster('donor');
  bed = await startSpillway({ broker: { clusterCertValidity: 20_000 } });
});

afterAll(async () => {
  await bed?.stop();
  await testbed?.stop();
});

it('renews its certificate before it expires and keeps its stream', async () => {
  await bed.joinAgent(donor, 'donor', { renewCheckInterval: 1000 });
  const ids = new IdentityStore(
    donor.kubeConfig,
    'kube-system',
    'spillway-identity',
    silentLogger(),
  );
  const first = inspectCertificate((await ids.load())!.certPem);
  const renewed = await poll(
    async () => {
      const cur = inspectCertificate((await ids.load())!.certPem);
      return cur.serial !== first.serial ? cur : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: 'the agent to store a renewed certificate' },
  );
  // Renewed in the last third of the first certificate's life, not earlier and not late.
  // The new certificate's notBefore is backdated by a tenth of its validity (2 s) and
  // truncated to whole seconds, hence the margin.
  const life = first.notAfter.getTime() - first.notBefore.getTime();
  expect(renewed.notBefore.getTime()).toBeGreaterThan(
    first.notBefore.getTime() + (life * 2) / 3 - 4000,
  );
  expect(renewed.notBefore.getTime()).toBeLessThan(first.notAfter.getTime());
  expect(renewed.identity).toEqual({ kind: 'cluster', name: 'donor' });
  const record = await bed.broker.core.getClusterRecord('donor');
  expect(record?.certSerial).toBe(renewed.serial);

  // Past the first certificate's expiry the broker ends any stream still on it; the agent
  // must be back, on the new certificate, and its inventory current.
  await new Promise((r) =>
    setTimeout(r, Math.max(0, first.notAfter.getTime() - Date.now()) + 3000),
  );
  await bed.agents.get('donor')!.stream.waitConnected(15_000);
  await poll(
    async () => {
      const c = await bed.broker.core.getCluster('donor');
      return c.state === 'Ready' && c.gpus['nvidia.com/gpu']?.free === 4 ? true : undefined;
    },
    { timeoutMs: 15_000, what: 'the donor to be Ready with its 4 GPUs after renewal' },
  );
});
