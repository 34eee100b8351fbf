import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import {
  AppsV1Api,
  type V1Deployment,
  type V1Job,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { ANNOTATION_DONOR, ANNOTATION_REMOTE_POD, MERGE_PATCH } from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuNode, gpuNode, podOutcome } from '../testbed/index.js';
import {
  LOG_LINES,
  WORK_NAMESPACE,
  eventsOf,
  gpuPodSpec,
  podsIn,
  remotePods,
  seconds,
  startSpillway,
  waitFor,
  type SpillwayBed,
} from './harness.js';

// One origin without GPUs, two donors with different GPU products: a user's GPU work that
// cannot run at home runs on a donor, and looks in the origin as if it ran there.
const H100 = 'NVIDIA-H100-80GB-HBM3';

let bed: SpillwayBed;

/** GET on the shim's kubelet port over TLS, optionally with a client certificate. */
function kubeletGet(
  port: number,
  path: string,
  client: { cert?: string; key?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'GET', rejectUnauthorized: false, ...client },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
const apps = (): AppsV1Api => bed.origin.kubeConfig.makeApiClient(AppsV1Api);

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    originNodes: [cpuNode('origin-cpu-0'), cpuNode('origin-cpu-1')],
    donorNodes: {
      'donor-a': [0, 1, 2, 3].map((i) => gpuNode(`donor-a-gpu-${i}`, 8, 'A100-80GB')),
      'donor-b': [
        gpuNode('donor-b-gpu-0', 4, 'H100-80GB'),
        gpuNode('donor-b-gpu-1', 4, 'H100-80GB'),
      ],
    },
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
}, 240_000);

afterAll(async () => {
  await bed?.stop();
});

describe('transparent offloading', () => {
  it('runs a 2-completion Job asking for 4 H100s on donor-b, the only donor that has them', async () => {
    const t0 = Date.now();
    // The virtual nodes are there, labelled with what each donor lends.
    const nodeB = await waitFor('virtual node spillway-donor-b Ready with 8 GPUs', async () => {
      const n = await bed.origin.core.readNode({ name: 'spillway-donor-b' }).catch(() => undefined);
      const ready = n?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      return ready && n?.status?.allocatable?.['nvidia.com/gpu'] === '8' ? n : undefined;
    });
    expect(nodeB.metadata?.labels).toMatchObject({
      type: 'virtual-kubelet',
      'nvidia.com/gpu.product': H100,
    });
    expect(nodeB.spec?.taints).toContainEqual(
      expect.objectContaining({ key: 'spillway.io/virtual-node', effect: 'NoSchedule' }),
    );
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'train-h100', namespace: WORK_NAMESPACE },
      spec: {
        completions: 2,
        backoffLimit: 0,
        template: {
          metadata: { annotations: podOutcome('succeed', { runFor: '2s' }) },
          spec: gpuPodSpec(4, { nodeSelector: { 'nvidia.com/gpu.product': H100 } }),
        },
      },
    };
    await bed.origin.batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    await waitFor(
      'job train-h100 to complete in the origin',
      async () => {
        const j = await bed.origin.batch.readNamespacedJob({
          name: 'train-h100',
          namespace: WORK_NAMESPACE,
        });
        return j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')
          ? j
          : undefined;
      },
      90_000,
    );
    console.log(`job completed in ${seconds(t0)}`);
    const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=train-h100');
    expect(pods).toHaveLength(2);
    const remote = await remotePods(bed.donors['donor-b']!);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBe('spillway-donor-b');
      expect(p.status?.phase).toBe('Succeeded');
      expect(p.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
      expect(p.metadata?.annotations?.[ANNOTATION_DONOR]).toBe('donor-b');
      const [ns, name] = p.metadata!.annotations![ANNOTATION_REMOTE_POD]!.split('/');
      const copy = remote.find((r) => r.metadata?.name === name && r.metadata?.namespace === ns);
      expect(copy?.spec?.nodeName).toMatch(/^donor-b-gpu-/);
      expect(copy?.status?.phase).toBe('Succeeded');
      const events = await eventsOf(bed.origin, p);
      expect(events.map((e) => e.reason)).toContain('Offloaded');
      expect(events.find((e) => e.reason === 'Offloaded')?.message).toContain(
        'Offloaded to donor-b',
      );
    }
    expect(await remotePods(bed.donors['donor-a']!)).toHaveLength(0);
    const wide = await bed.origin.kubectl('get', 'pods', '-n', WORK_NAMESPACE, '-o', 'wide');
    const rows = wide.split('\n').filter((l) => l.startsWith('train-h100-'));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(/\bCompleted\b.*\bspillway-donor-b\b/);
  });

  it("mirrors the donor's status within a second and copies its events", async () => {
    // What the pod references goes with it.
    await bed.origin.core.createNamespacedConfigMap({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'probe-config' }, data: { EPOCHS: '3' } },
    });
    await bed.origin.core.createNamespacedSecret({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'probe-token' }, stringData: { token: 's3cret' } },
    });
    const spec = gpuPodSpec(1);
    spec.containers[0]!.envFrom = [{ configMapRef: { name: 'probe-config' } }];
    spec.containers[0]!.volumeMounts = [{ name: 'token', mountPath: '/var/run/token' }];
    spec.volumes = [{ name: 'token', secret: { secretName: 'probe-token' } }];
    await bed.origin.core.createNamespacedPod({
      namespace: WORK_NAMESPACE,
      body: {
        metadata: { name: 'probe', annotations: podOutcome('succeed', { runFor: '3s' }) },
        spec,
      },
    });
    // Both sides watched at once: when each first shows a phase.
    const seen = { origin: new Map<string, number>(), remote: new Map<string, number>() };
    const donors = Object.values(bed.donors);
    await waitFor(
      'the probe Succeeded on both sides',
      async () => {
        const [o, ...rs] = await Promise.all([
          bed.origin.core.readNamespacedPod({ name: 'probe', namespace: WORK_NAMESPACE }),
          ...donors.map((d) => remotePods(d)),
        ]);
        const r = rs
          .flat()
          .find((p) => p.metadata?.labels?.['spillway.io/origin-uid'] === o.metadata?.uid);
        const t = Date.now();
        for (const [side, phase] of [
          ['origin', o.status?.phase],
          ['remote', r?.status?.phase],
        ] as const) {
          if (phase && !seen[side].has(phase)) seen[side].set(phase, t);
        }
        return seen.origin.has('Succeeded') && seen.remote.has('Succeeded') ? true : undefined;
      },
      60_000,
      25,
    );
    for (const phase of ['Running', 'Succeeded']) {
      const lag = seen.origin.get(phase)! - seen.remote.get(phase)!;
      console.log(`probe ${phase}: origin ${lag} ms after the donor`);
      expect(lag).toBeLessThan(1_000);
    }
    const probe = await bed.origin.core.readNamespacedPod({
      name: 'probe',
      namespace: WORK_NAMESPACE,
    });
    const copied = await waitFor('a donor event copied to the probe', async () => {
      const e = (await eventsOf(bed.origin, probe)).find((x) => x.reason === 'Scheduled');
      return e;
    });
    expect(copied.message).toMatch(/^on donor donor-[ab]: Successfully assigned spillway-origin\//);
    const donor = bed.donors[probe.metadata!.annotations![ANNOTATION_DONOR]!]!;
    const cm = await donor.core.readNamespacedConfigMap({
      name: 'ml.probe-config',
      namespace: 'spillway-origin',
    });
    expect(cm.data).toEqual({ EPOCHS: '3' });
    const secret = await donor.core.readNamespacedSecret({
      name: 'ml.probe-token',
      namespace: 'spillway-origin',
    });
    expect(Buffer.from(secret.data!.token!, 'base64').toString()).toBe('s3cret');
    await bed.origin.core.deleteNamespacedPod({ name: 'probe', namespace: WORK_NAMESPACE });
  });

  it('runs exactly as many 1-GPU pods as there are free remote GPUs, and the rest as soon as GPUs free up', async () => {
    const t0 = Date.now();
    const names = Array.from({ length: 50 }, (_, i) => `burst-${i}`);
    await Promise.all(
      names.map((name) =>
        bed.origin.core.createNamespacedPod({
          namespace: WORK_NAMESPACE,
          body: {
            metadata: { name, labels: { app: 'burst' }, annotations: podOutcome('run') },
            spec: gpuPodSpec(1),
          },
        }),
      ),
    );
    const phases = async (): Promise<{ running: V1Pod[]; pending: V1Pod[] }> => {
      const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      return {
        running: pods.filter(
          (p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp,
        ),
        pending: pods.filter((p) => p.status?.phase === 'Pending'),
      };
    };
    await waitFor('40 burst pods Running and 10 Pending', async () => {
      const { running, pending } = await phases();
      return running.length === 40 && pending.length === 10 ? true : undefined;
    });
    console.log(`40 of 50 running in ${seconds(t0)}`);
    // Nothing is promised twice: a while later, still exactly 40, and 40 remote copies.
    await new Promise((r) => setTimeout(r, 4_000));
    const { running, pending } = await phases();
    expect(running).toHaveLength(40);
    expect(pending).toHaveLength(10);
    const remoteRunning = [
      ...(await remotePods(bed.donors['donor-a']!)),
      ...(await remotePods(bed.donors['donor-b']!)),
    ].filter((p) => p.metadata?.labels?.app === 'burst' && p.status?.phase === 'Running');
    expect(remoteRunning).toHaveLength(40);
    for (const p of pending) {
      expect(p.spec?.nodeName).toBeUndefined();
      const events = await eventsOf(bed.origin, p);
      const why = events.find((e) => e.reason === 'NotOffloaded');
      expect(why?.type).toBe('Warning');
      expect(why?.message).toMatch(/no donor can run this pod now \(NO_FIT\)/);
    }

    // Deleting an origin pod deletes its remote copy; the freed GPUs go to the pending pods.
    const t1 = Date.now();
    const victims = running.slice(0, 10);
    const victimRemote = victims.map((p) => p.metadata!.annotations![ANNOTATION_REMOTE_POD]!);
    await Promise.all(
      victims.map((p) =>
        bed.origin.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: WORK_NAMESPACE }),
      ),
    );
    await waitFor('the deleted pods gone from the origin and their donors', async () => {
      const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      const remote = [
        ...(await remotePods(bed.donors['donor-a']!)),
        ...(await remotePods(bed.donors['donor-b']!)),
      ].map((p) => `${p.metadata!.namespace!}/${p.metadata!.name!}`);
      const left = victims.filter((v) => origin.some((o) => o.metadata?.uid === v.metadata?.uid));
      return left.length === 0 && !victimRemote.some((r) => remote.includes(r)) ? true : undefined;
    });
    console.log(`10 deleted pods gone here and there in ${seconds(t1)}`);
    await waitFor('the 10 pending pods Running', async () => {
      const now = await phases();
      const started = pending.filter((p) =>
        now.running.some((r) => r.metadata?.uid === p.metadata?.uid),
      );
      return started.length === 10 && now.running.length === 40 ? true : undefined;
    });
    console.log(`pending pods running ${seconds(t1)} after GPUs were freed`);

    await bed.origin.core.deleteCollectionNamespacedPod({
      namespace: WORK_NAMESPACE,
      labelSelector: 'app=burst',
    });
    await waitFor('every burst pod gone on both sides', async () => {
      const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      const remote = [
        ...(await remotePods(bed.donors['donor-a']!)),
        ...(await remotePods(bed.donors['donor-b']!)),
      ].filter((p) => p.metadata?.labels?.app === 'burst');
      return origin.length === 0 && remote.length === 0 ? true : undefined;
    });
  });

  it("fails a pod its donor refuses, and a Job whose remote pod fails, with the donor's reasons", async () => {
    // A capability beyond the donor's policy: only the donor knows its policy, so the origin
    // offloads it (what every donor refuses, like hostNetwork, never leaves the origin).
    const refusedSpec = gpuPodSpec(1);
    refusedSpec.containers[0]!.securityContext = { capabilities: { add: ['NET_ADMIN'] } };
    await bed.origin.core.createNamespacedPod({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'refused' }, spec: refusedSpec },
    });
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'crash', namespace: WORK_NAMESPACE },
      spec: {
        backoffLimit: 0,
        template: {
          metadata: { annotations: podOutcome('fail', { runFor: '1s', exitCode: 3 }) },
          spec: gpuPodSpec(1),
        },
      },
    };
    await bed.origin.batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    const refused = await waitFor('the refused pod Failed', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'refused',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Failed' ? p : undefined;
    });
    expect(refused.status?.reason).toBe('PodRefused');
    expect(refused.status?.message).toMatch(/^donor donor-[ab] refused the pod: .*NET_ADMIN/);
    expect((await eventsOf(bed.origin, refused)).map((e) => e.reason)).toContain('OffloadRefused');
    await waitFor('job crash Failed in the origin', async () => {
      const j = await bed.origin.batch.readNamespacedJob({
        name: 'crash',
        namespace: WORK_NAMESPACE,
      });
      return j.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True')
        ? true
        : undefined;
    });
    const [crashed] = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=crash');
    expect(crashed?.spec?.nodeName).toMatch(/^spillway-donor-/);
    expect(crashed?.status?.phase).toBe('Failed');
    expect(crashed?.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 3,
      reason: 'Error',
    });
    await bed.origin.core.deleteNamespacedPod({ name: 'refused', namespace: WORK_NAMESPACE });

    // A ConfigMap that does not exist yet: the pod waits, saying why, and runs once it exists.
    const spec = gpuPodSpec(1);
    spec.containers[0]!.env = [
      { name: 'LR', valueFrom: { configMapKeyRef: { name: 'late-config', key: 'lr' } } },
    ];
    await bed.origin.core.createNamespacedPod({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'needs-config', annotations: podOutcome('run') }, spec },
    });
    const waiting = await waitFor('needs-config to say what it waits for', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'needs-config',
        namespace: WORK_NAMESPACE,
      });
      const e = (await eventsOf(bed.origin, p)).find((x) => x.reason === 'OffloadFailed');
      return e ? { p, e } : undefined;
    });
    expect(waiting.e.message).toMatch(/configmap "late-config" not found in namespace ml/);
    expect(waiting.p.status?.phase).toBe('Pending');
    await bed.origin.core.createNamespacedConfigMap({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'late-config' }, data: { lr: '0.001' } },
    });
    await waitFor('needs-config Running once its ConfigMap exists', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'needs-config',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Running' ? true : undefined;
    });
    await bed.origin.core.deleteNamespacedPod({ name: 'needs-config', namespace: WORK_NAMESPACE });
    await bed.origin.batch.deleteNamespacedJob({
      name: 'crash',
      namespace: WORK_NAMESPACE,
      propagationPolicy: 'Background',
    });
  });

  it('replaces the pods of a donor whose agent dies, and removes their copies there when it returns', async () => {
    const node = (name: string): Promise<V1Node> => bed.origin.core.readNode({ name });
    const ready = (n: V1Node): string | undefined =>
      n.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    // Only donor-a takes new pods for now: donor-b is cordoned, and its virtual node follows.
    await bed.broker.core.patchCluster('donor-b', { cordoned: true });
    await waitFor('spillway-donor-b cordoned', async () =>
      (await node('spillway-donor-b')).spec?.unschedulable ? true : undefined,
    );
    const deployment: V1Deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'serve', namespace: WORK_NAMESPACE },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: 'serve' } },
        template: {
          metadata: { labels: { app: 'serve' }, annotations: podOutcome('run') },
          spec: { ...gpuPodSpec(1), restartPolicy: 'Always' },
        },
      },
    };
    await apps().createNamespacedDeployment({ namespace: WORK_NAMESPACE, body: deployment });
    const serving = async (nodeName: string): Promise<V1Pod[]> =>
      (await podsIn(bed.origin, WORK_NAMESPACE, 'app=serve')).filter(
        (p) =>
          p.spec?.nodeName === nodeName &&
          p.status?.phase === 'Running' &&
          !p.metadata?.deletionTimestamp,
      );
    const first = await waitFor('3 serve pods Running on spillway-donor-a', async () => {
      const pods = await serving('spillway-donor-a');
      return pods.length === 3 ? pods : undefined;
    });
    await bed.broker.core.patchCluster('donor-b', { cordoned: false });
    await waitFor('spillway-donor-b schedulable again', async () =>
      (await node('spillway-donor-b')).spec?.unschedulable ? undefined : true,
    );

    const t0 = Date.now();
    await bed.stopAgent('donor-a');
    await waitFor('spillway-donor-a NotReady', async () =>
      ready(await node('spillway-donor-a')) === 'False' ? true : undefined,
    );
    console.log(`spillway-donor-a NotReady ${seconds(t0)} after its agent stopped`);
    const replaced = await waitFor(
      '3 replacement serve pods Running on spillway-donor-b',
      async () => {
        const pods = await serving('spillway-donor-b');
        return pods.length === 3 ? pods : undefined;
      },
      90_000,
    );
    console.log(`pods replaced on donor-b ${seconds(t0)} after donor-a's agent stopped`);
    const firstUids = new Set(first.map((p) => p.metadata!.uid!));
    expect(replaced.some((p) => firstUids.has(p.metadata!.uid!))).toBe(false);
    const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=serve');
    expect(origin.filter((p) => firstUids.has(p.metadata!.uid!))).toHaveLength(0);
    // Nothing could reach donor-a meanwhile: the evicted pods' copies still run there.
    const stranded = (await remotePods(bed.donors['donor-a']!)).filter(
      (p) => p.metadata?.labels?.app === 'serve' && !p.metadata.deletionTimestamp,
    );
    expect(stranded).toHaveLength(3);

    const t1 = Date.now();
    await bed.startAgent('donor-a');
    await waitFor('spillway-donor-a Ready again', async () =>
      ready(await node('spillway-donor-a')) === 'True' ? true : undefined,
    );
    await waitFor('the orphaned copies removed from donor-a', async () => {
      const left = (await remotePods(bed.donors['donor-a']!)).filter(
        (p) => p.metadata?.labels?.app === 'serve',
      );
      return left.length === 0 ? true : undefined;
    });
    console.log(`orphans on donor-a removed ${seconds(t1)} after its agent came back`);
    const onB = (await remotePods(bed.donors['donor-b']!)).filter(
      (p) => p.metadata?.labels?.app === 'serve' && p.status?.phase === 'Running',
    );
    expect(onB).toHaveLength(3);
  });

  it('rebuilds its state after a restart and changes nothing remote', async () => {
    const snapshot = async (): Promise<string[]> => {
      const remote = [
        ...(await remotePods(bed.donors['donor-a']!)),
        ...(await remotePods(bed.donors['donor-b']!)),
      ].map(
        (p) =>
          `remote ${p.metadata!.namespace!}/${p.metadata!.name!} ${p.metadata!.uid!} ${p.status?.phase ?? ''}`,
      );
      const origin = (await podsIn(bed.origin, WORK_NAMESPACE)).map(
        (p) =>
          `origin ${p.metadata!.name!} ${p.metadata!.uid!} ${p.spec?.nodeName ?? ''} ${p.status?.phase ?? ''}`,
      );
      return [...remote, ...origin].sort();
    };
    const before = await snapshot();
    expect(before.filter((l) => l.startsWith('remote ') && l.includes('Running'))).toHaveLength(3);
    const t0 = Date.now();
    const shim = await bed.restartShim();
    // The new instance re-posts each node with its own kubelet port once it has the donors.
    for (const name of ['spillway-donor-a', 'spillway-donor-b']) {
      await waitFor(`${name} re-posted by the restarted shim`, async () => {
        const n = await bed.origin.core.readNode({ name });
        return n.status?.daemonEndpoints?.kubeletEndpoint?.Port === shim.kubeletPort
          ? true
          : undefined;
      });
    }
    console.log(`restarted shim took over in ${seconds(t0)}`);
    await new Promise((r) => setTimeout(r, 5_000));
    expect(await snapshot()).toEqual(before);

    // And it still acts on what it rebuilt: a replica scaled away is deleted remotely.
    await apps().patchNamespacedDeploymentScale(
      { name: 'serve', namespace: WORK_NAMESPACE, body: { spec: { replicas: 2 } } },
      MERGE_PATCH,
    );
    await waitFor('2 serve pods left here and on donor-b', async () => {
      const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=serve');
      const remote = (await remotePods(bed.donors['donor-b']!)).filter(
        (p) => p.metadata?.labels?.app === 'serve',
      );
      return origin.length === 2 && remote.length === 2 ? true : undefined;
    });

    // Restarted again while pods are being offloaded: each ends up with exactly one copy.
    await Promise.all(
      [0, 1, 2, 3].map((i) =>
        bed.origin.core.createNamespacedPod({
          namespace: WORK_NAMESPACE,
          body: {
            metadata: {
              name: `midrun-${i}`,
              labels: { app: 'midrun' },
              annotations: podOutcome('run'),
            },
            spec: gpuPodSpec(1),
          },
        }),
      ),
    );
    await waitFor('a midrun pod bound to a virtual node', async () => {
      const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'app=midrun');
      return pods.some((p) => p.spec?.nodeName) ? true : undefined;
    });
    await bed.restartShim();
    const settled = await waitFor('4 midrun pods Running', async () => {
      const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'app=midrun');
      return pods.filter((p) => p.status?.phase === 'Running').length === 4 ? pods : undefined;
    });
    const copies = [
      ...(await remotePods(bed.donors['donor-a']!)),
      ...(await remotePods(bed.donors['donor-b']!)),
    ].filter((p) => p.metadata?.labels?.app === 'midrun');
    expect(copies.map((c) => c.metadata!.labels!['spillway.io/origin-uid']).sort()).toEqual(
      settled.map((p) => p.metadata!.uid!).sort(),
    );
    await bed.origin.core.deleteCollectionNamespacedPod({
      namespace: WORK_NAMESPACE,
      labelSelector: 'app=midrun',
    });
  });

  it('serves kubectl logs of an offloaded pod from its donor', async () => {
    const [pod] = (await podsIn(bed.origin, WORK_NAMESPACE, 'app=serve')).filter(
      (p) => p.status?.phase === 'Running',
    );
    expect(pod?.spec?.nodeName).toBe('spillway-donor-b');
    const name = pod!.metadata!.name!;
    const all = await bed.origin.kubectl(
      'logs',
      '--request-timeout=30s',
      '-n',
      WORK_NAMESPACE,
      name,
    );
    expect(all.trimEnd().split('\n')).toEqual(LOG_LINES);
    const tail = await bed.origin.kubectl(
      'logs',
      '--request-timeout=30s',
      '-n',
      WORK_NAMESPACE,
      name,
      '-c',
      'train',
      '--tail=1',
    );
    expect(tail.trimEnd()).toBe(LOG_LINES[2]);
    // The endpoint the API server dials: only for the cluster's kubelet client, and it says
    // plainly what a virtual node cannot do.
    const pki = bed.origin.pki;
    const [cert, key] = await Promise.all([
      readFile(pki.kubeletClientCertFile, 'utf8'),
      readFile(pki.kubeletClientKeyFile, 'utf8'),
    ]);
    const exec = await kubeletGet(
      bed.shim.kubeletPort,
      `/exec/${WORK_NAMESPACE}/${name}/train?command=true`,
      { cert, key },
    );
    expect(exec.status).toBe(501);
    expect(exec.body).toMatch(/exec is not supported on Spillway virtual nodes/);
    await expect(kubeletGet(bed.shim.kubeletPort, '/healthz', {})).rejects.toThrow();
  });

  it('serves a pod that tolerates the taint and selects a virtual node itself', async () => {
    await bed.origin.core.createNamespacedPod({
      namespace: WORK_NAMESPACE,
      body: {
        metadata: { name: 'pinned', annotations: podOutcome('run') },
        spec: {
          ...gpuPodSpec(1, { nodeSelector: { 'spillway.io/donor': 'donor-a' } }),
          tolerations: [
            { key: 'spillway.io/virtual-node', operator: 'Exists', effect: 'NoSchedule' },
          ],
        },
      },
    });
    const pinned = await waitFor('pinned Running', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'pinned',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    // The scheduler put it there; the shim got it a reservation on that donor and ran it.
    expect(pinned.spec?.nodeName).toBe('spillway-donor-a');
    expect(pinned.metadata?.annotations?.['spillway.io/reservation']).toBeTruthy();
    const copy = (await remotePods(bed.donors['donor-a']!)).find(
      (p) => p.metadata?.labels?.['spillway.io/origin-uid'] === pinned.metadata?.uid,
    );
    expect(copy?.status?.phase).toBe('Running');
    expect(copy?.spec?.nodeName).toMatch(/^donor-a-gpu-/);
  });

  it('lets a local GPU node with free GPUs win over offloading', async () => {
    await bed.origin.addNodes([gpuNode('origin-gpu-0', 2, 'L4')]);
    const names = ['local-0', 'local-1', 'local-2'];
    for (const name of names) {
      await bed.origin.core.createNamespacedPod({
        namespace: WORK_NAMESPACE,
        body: {
          metadata: { name, labels: { app: 'local' }, annotations: podOutcome('run') },
          spec: gpuPodSpec(1),
        },
      });
    }
    const pods = await waitFor('3 local-* pods Running', async () => {
      const list = await podsIn(bed.origin, WORK_NAMESPACE, 'app=local');
      return list.filter((p) => p.status?.phase === 'Running').length === 3 ? list : undefined;
    });
    // Well past the grace period: what runs locally stays local.
    await new Promise((r) => setTimeout(r, bed.shimConfig.gracePeriod + 2_000));
    const now = await podsIn(bed.origin, WORK_NAMESPACE, 'app=local');
    const local = now.filter((p) => p.spec?.nodeName === 'origin-gpu-0');
    const away = now.filter((p) => p.spec?.nodeName?.startsWith('spillway-'));
    expect(local).toHaveLength(2);
    expect(away).toHaveLength(1);
    for (const p of local) {
      expect(pods.find((q) => q.metadata?.uid === p.metadata?.uid)?.spec?.nodeName).toBe(
        'origin-gpu-0',
      );
      expect(p.metadata?.annotations?.[ANNOTATION_DONOR]).toBeUndefined();
      expect((await eventsOf(bed.origin, p)).map((e) => e.reason)).not.toContain('Offloaded');
    }
    expect(away[0]?.metadata?.annotations?.[ANNOTATION_DONOR]).toMatch(/^donor-[ab]$/);
  });

  it('removes the virtual node of a removed peering after failing the pods it held', async () => {
    const pinned = await bed.origin.core.readNamespacedPod({
      name: 'pinned',
      namespace: WORK_NAMESPACE,
    });
    expect(pinned.status?.phase).toBe('Running');
    await bed.broker.core.deletePeering('origin', 'donor-a');
    const failed = await waitFor('pinned Failed', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'pinned',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Failed' ? p : undefined;
    });
    expect(failed.status?.reason).toBe('PeeringRemoved');
    await waitFor('spillway-donor-a removed', async () => {
      const nodes = await bed.origin.core.listNode();
      return nodes.items.some((n) => n.metadata?.name === 'spillway-donor-a') ? undefined : true;
    });
    // donor-b still serves this origin.
    const b = await bed.origin.core.readNode({ name: 'spillway-donor-b' });
    expect(b.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  });
});
