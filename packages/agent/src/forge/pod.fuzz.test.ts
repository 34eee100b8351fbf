import type { V1Container, V1Pod } from '@kubernetes/client-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  LABEL_ORIGIN_CLUSTER,
  LABEL_ORIGIN_UID,
  isSpillwayError,
  podReferences,
} from '@spillway/common';
import { reflectedName, translatePod, type OriginPodIdentity } from './pod.js';
import { assertPodAllowed } from './policy.js';

/**
 * Hostile input to the donor's pod translation: whatever JSON an origin sends as pod_json,
 * the donor's policy either refuses it with a POD_REFUSED naming the field, or the pod it
 * would create stays inside the tenant namespace with no way out to the host, no donor
 * account and no Secret the origin did not send. SPILLWAY_FUZZ_RUNS sets the cases per
 * property (500 by default; the full run in docs/security.md uses 10,000).
 */

const RUNS = Number(process.env.SPILLWAY_FUZZ_RUNS ?? 500);
const TENANT = 'spillway-origin-a';
const ID: OriginPodIdentity = {
  originCluster: 'origin-a',
  namespace: 'ml',
  name: 'train-0',
  uid: '0f3c8a2e-0000-4000-8000-000000000001',
};
const SENT = { configMaps: ['settings'], secrets: ['creds'] };
/** Generous: the full run shares two cores with everything else. */
const TIMEOUT_MS = 30_000 + RUNS * 10;

// ---- arbitraries --------------------------------------------------------------------------

/** Anything JSON.parse can hand the donor. */
const json = fc.jsonValue({ maxDepth: 3 });

/** Sometimes the right shape, sometimes any JSON value at all. */
const maybe = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 150, arbitrary: good }, { weight: 1, arbitrary: json });

/** Mostly false: a hostile flag should be the exception, so some pods get through. */
const flag = fc.oneof(
  { weight: 20, arbitrary: fc.constant(false) },
  { weight: 1, arbitrary: fc.constant(true) },
);

const name = fc.constantFrom('creds', 'settings', 'donor-token', 'kube-root-ca.crt', 'other', '');
const labelKey = fc.oneof(
  fc.constantFrom(
    LABEL_ORIGIN_CLUSTER,
    LABEL_ORIGIN_UID,
    'spillway.io/tenant',
    'spillway.io/reflected',
    'app.kubernetes.io/managed-by',
    'app',
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ maxLength: 8 }).map((s) => `spillway.io/${s}`),
);
const labels = fc.dictionary(labelKey, fc.oneof(fc.string({ maxLength: 8 }), json), {
  maxKeys: 4,
});

const capability = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('CHOWN', 'KILL', 'NET_BIND_SERVICE', 'CAP_SETUID') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('SYS_ADMIN', 'CAP_SYS_ADMIN', 'NET_ADMIN', 'sys_ptrace', 'ALL'),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

const securityContext = fc.record(
  {
    privileged: maybe(flag),
    allowPrivilegeEscalation: maybe(flag),
    procMount: maybe(fc.constantFrom('Default', 'Default', 'Unmasked')),
    capabilities: maybe(fc.record({ add: maybe(fc.array(maybe(capability), { maxLength: 3 })) })),
    runAsUser: maybe(fc.integer()),
  },
  { requiredKeys: [] },
);

const envFrom = fc.record(
  {
    secretRef: maybe(fc.record({ name: maybe(name), optional: maybe(flag) })),
    configMapRef: maybe(fc.record({ name: maybe(name), optional: maybe(flag) })),
  },
  { requiredKeys: [] },
);

const env = fc.record(
  {
    name: fc.constantFrom('A', 'B'),
    value: maybe(fc.string({ maxLength: 4 })),
    valueFrom: maybe(
      fc.record(
        {
          secretKeyRef: maybe(fc.record({ name: maybe(name), key: fc.constant('k') })),
          configMapKeyRef: maybe(fc.record({ name: maybe(name), key: fc.constant('k') })),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: ['name'] },
);

const container = fc.record(
  {
    name: maybe(fc.constantFrom('main', 'side', '')),
    image: maybe(fc.constantFrom('trainer:1', '')),
    securityContext: maybe(securityContext),
    ports: maybe(
      fc.array(
        maybe(
          fc.record({
            containerPort: fc.integer(),
            hostPort: maybe(fc.constantFrom(0, 0, 0, 0, 0, 0, 22, 65535)),
          }),
        ),
        {
          maxLength: 2,
        },
      ),
    ),
    env: maybe(fc.array(maybe(env), { maxLength: 3 })),
    envFrom: maybe(fc.array(maybe(envFrom), { maxLength: 2 })),
    volumeMounts: maybe(
      fc.array(
        maybe(
          fc.record({
            name: maybe(fc.constantFrom('v', 'kube-api-access-x')),
            mountPath: fc.constant('/m'),
          }),
        ),
        { maxLength: 2 },
      ),
    ),
    resources: maybe(
      fc.record({ limits: maybe(fc.dictionary(fc.constantFrom('nvidia.com/gpu', 'cpu'), json)) }),
    ),
  },
  { requiredKeys: [] },
);

const volumeName = maybe(fc.constantFrom('v', 'w', 'kube-api-access-x'));
const projectedSource = fc.oneof(
  fc.record({ secret: maybe(fc.record({ name: maybe(name) })) }),
  fc.record({ configMap: maybe(fc.record({ name: maybe(name) })) }),
  fc.record({ serviceAccountToken: maybe(fc.record({ path: fc.constant('token') })) }),
);
/** One volume source each, as Kubernetes requires, now and then with a second one smuggled in. */
const volumeSource = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      secret: maybe(fc.record({ secretName: maybe(name), optional: maybe(flag) })),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      configMap: maybe(fc.record({ name: maybe(name), optional: maybe(flag) })),
    }),
  },
  { weight: 6, arbitrary: fc.record({ emptyDir: fc.constant({}) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      projected: maybe(
        fc.record({ sources: maybe(fc.array(maybe(projectedSource), { maxLength: 3 })) }),
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      hostPath: maybe(fc.record({ path: fc.constantFrom('/', '/var/run/docker.sock') })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ persistentVolumeClaim: fc.record({ claimName: fc.constant('data') }) }),
  },
  { weight: 1, arbitrary: fc.record({ csi: fc.record({ driver: fc.constant('x') }) }) },
);
const volume = fc
  .tuple(volumeName, volumeSource, fc.option(volumeSource, { freq: 8 }))
  .map(([n, a, b]) => ({ ...(b ?? {}), ...a, name: n }));

const spec = fc.record(
  {
    containers: maybe(fc.array(maybe(container), { minLength: 1, maxLength: 3 })),
    initContainers: maybe(fc.array(maybe(container), { maxLength: 2 })),
    ephemeralContainers: maybe(fc.array(maybe(container), { maxLength: 1 })),
    volumes: maybe(fc.array(maybe(volume), { maxLength: 3 })),
    hostNetwork: maybe(flag),
    hostPID: maybe(flag),
    hostIPC: maybe(flag),
    serviceAccountName: maybe(
      fc.constantFrom(
        'default',
        'trainer',
        'default',
        'trainer',
        'default',
        'trainer',
        '',
        'system:serviceaccount:kube-system:admin',
        'kube-system/spillway-agent',
      ),
    ),
    serviceAccount: maybe(
      fc.constantFrom('default', 'trainer', 'default', 'trainer', 'system:admin'),
    ),
    nodeName: maybe(fc.constantFrom('donor-gpu-0', 'control-plane')),
    nodeSelector: maybe(fc.dictionary(fc.string({ maxLength: 20 }), json, { maxKeys: 2 })),
    tolerations: maybe(
      fc.array(
        maybe(
          fc.record({
            key: fc.constantFrom(
              'spillway.io/virtual-node',
              'nvidia.com/gpu',
              'node.kubernetes.io/not-ready',
            ),
            operator: fc.constant('Exists'),
          }),
        ),
        { maxLength: 2 },
      ),
    ),
    imagePullSecrets: maybe(fc.array(maybe(fc.record({ name: maybe(name) })), { maxLength: 2 })),
    securityContext: maybe(fc.record({ runAsUser: fc.integer() }, { requiredKeys: [] })),
    affinity: maybe(
      fc.constant({
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100'] },
                  { key: 'kubernetes.io/hostname', operator: 'In', values: ['control-plane'] },
                ],
              },
            ],
          },
        },
      }),
    ),
    restartPolicy: maybe(fc.constantFrom('Never', 'Always')),
    automountServiceAccountToken: maybe(flag),
    priorityClassName: maybe(fc.constant('system-node-critical')),
  },
  { requiredKeys: ['containers'] },
);

/**
 * Pod-like objects: Pod-shaped with hostile and wrongly typed parts anywhere below the top.
 * The executor's parse step already refuses what is not a JSON object with a
 * metadata.name and kind Pod (if any), so that is where the fuzzing starts.
 */
/** Pods the donor should run: sent references, optional ones to anything, hostile labels. */
const benignPod = fc
  .record({
    labels,
    annotations: labels,
    containers: fc.array(
      fc.record({
        name: fc.constantFrom('main', 'side'),
        image: fc.constant('trainer:1'),
        envFrom: fc.constantFrom(
          [{ secretRef: { name: 'creds' } }],
          [{ configMapRef: { name: 'settings' } }],
          [{ secretRef: { name: 'donor-token', optional: true } }],
          [],
        ),
        securityContext: fc.constantFrom(
          {},
          { capabilities: { add: ['CHOWN'] } },
          { runAsUser: 1000 },
        ),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    volumes: fc.array(
      fc.tuple(fc.constantFrom('v', 'w', 'kube-api-access-abcde'), volumeSource).map(([n, v]) => ({
        ...v,
        name: n,
      })),
      { maxLength: 2 },
    ),
    serviceAccountName: fc.constantFrom(undefined, 'default', 'trainer'),
    nodeName: fc.constantFrom(undefined, 'control-plane'),
    nodeSelector: fc.dictionary(
      fc.constantFrom('nvidia.com/gpu.product', 'kubernetes.io/hostname', 'zone'),
      fc.constant('x'),
    ),
  })
  .map(({ labels: l, annotations: a, serviceAccountName: sa, nodeName: node, ...spec }) => ({
    kind: 'Pod',
    metadata: { name: 'p', labels: l, annotations: a },
    spec: {
      ...spec,
      ...(sa === undefined ? {} : { serviceAccountName: sa }),
      ...(node === undefined ? {} : { nodeName: node }),
    },
  }));

const podLike: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: benignPod },
  {
    weight: 9,
    arbitrary: fc.record(
      {
        kind: fc.constant('Pod'),
        metadata: fc.record(
          { name: fc.constant('p'), labels: maybe(labels), annotations: maybe(labels) },
          { requiredKeys: ['name'] },
        ),
        spec: maybe(spec),
      },
      { requiredKeys: ['metadata', 'spec'] },
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .dictionary(fc.constantFrom('spec', 'status', 'apiVersion', 'x'), json, { maxKeys: 3 })
      .map((o) => ({ ...o, metadata: { name: 'p' } })),
  },
);

// ---- what must hold of anything the donor would create -------------------------------------

/** Every container, init container and ephemeral container of a pod. */
function containersOf(p: V1Pod): V1Container[] {
  const s = p.spec;
  return [
    ...(s?.containers ?? []),
    ...(s?.initContainers ?? []),
    ...((s?.ephemeralContainers ?? []) as V1Container[]),
  ];
}

function assertContained(out: V1Pod, input: unknown): void {
  const s = out.spec!;
  expect(out.metadata?.namespace).toBe(TENANT);
  expect(s.hostNetwork ?? false).toBe(false);
  expect(s.hostPID ?? false).toBe(false);
  expect(s.hostIPC ?? false).toBe(false);
  expect(s.serviceAccountName).toBeUndefined();
  expect(s.serviceAccount).toBeUndefined();
  expect(s.nodeName).toBeUndefined();
  expect(s.priorityClassName).toBeUndefined();
  expect(s.automountServiceAccountToken).toBe(false);
  for (const v of s.volumes ?? []) {
    expect(v.hostPath).toBeUndefined();
    expect(v.persistentVolumeClaim).toBeUndefined();
  }
  for (const c of containersOf(out)) {
    expect(c.securityContext?.privileged ?? false).toBe(false);
    for (const port of c.ports ?? []) expect(port.hostPort ?? 0).toBe(0);
  }
  // Spillway's own labels and annotations come from the broker's identity, never the input.
  const labels = out.metadata?.labels ?? {};
  const annotations = out.metadata?.annotations ?? {};
  for (const k of Object.keys(labels)) {
    if (k.startsWith('spillway.io/')) expect([LABEL_ORIGIN_CLUSTER, LABEL_ORIGIN_UID]).toContain(k);
  }
  expect(labels[LABEL_ORIGIN_CLUSTER]).toBe(ID.originCluster);
  expect(labels[LABEL_ORIGIN_UID]).toBe(ID.uid);
  for (const k of Object.keys(annotations)) {
    if (k.startsWith('spillway.io/'))
      expect(['spillway.io/origin-namespace', 'spillway.io/origin-name']).toContain(k);
  }
  // Every required Secret and ConfigMap the donor pod mounts is a reflection of one sent.
  const refs = podReferences(out);
  const allowedSecrets = SENT.secrets.map((n) => reflectedName(ID.namespace, n));
  const allowedCms = SENT.configMaps.map((n) => reflectedName(ID.namespace, n));
  for (const r of refs.secrets) {
    // An optional reference may name anything, but only inside the tenant namespace.
    if (!r.optional) expect(allowedSecrets, JSON.stringify(input)).toContain(r.name);
  }
  for (const r of refs.configMaps) if (!r.optional) expect(allowedCms).toContain(r.name);
}

/** Runs the donor's two steps; returns the pod or the SpillwayError. Anything else fails. */
function donorSide(input: unknown): { pod?: V1Pod; refused?: { code: string; field?: string } } {
  try {
    assertPodAllowed(input as V1Pod, SENT);
    return {
      pod: translatePod(input as V1Pod, ID, { tenantNamespace: TENANT, node: 'donor-gpu-0' }),
    };
  } catch (err) {
    if (!isSpillwayError(err))
      throw new Error(`non-Spillway error for ${JSON.stringify(input)}: ${String(err)}`, {
        cause: err,
      });
    return {
      refused: { code: err.code, ...(err.field === undefined ? {} : { field: err.field }) },
    };
  }
}

describe('pod translation under hostile input', () => {
  it(
    `refuses or contains every pod-like object (${RUNS} cases)`,
    () => {
      let refused = 0;
      fc.assert(
        fc.property(podLike, (input) => {
          // The donor receives pod_json: the object as it survives JSON.
          const wire: unknown = JSON.parse(JSON.stringify(input) ?? 'null');
          const r = donorSide(wire);
          if (r.refused) {
            refused++;
            expect(['POD_REFUSED', 'INVALID_ARGUMENT']).toContain(r.refused.code);
            expect(r.refused.field, JSON.stringify(wire)).toBeTruthy();
          } else {
            assertContained(r.pod!, wire);
          }
        }),
        { numRuns: RUNS },
      );
      // Both outcomes were exercised, so neither branch above is vacuous.
      expect(refused).toBeGreaterThan(0);
      expect(refused).toBeLessThan(RUNS);
    },
    TIMEOUT_MS,
  );

  const ok = (): V1Pod => ({
    metadata: { name: 'p' },
    spec: {
      containers: [
        {
          name: 'main',
          image: 'trainer:1',
          envFrom: [{ secretRef: { name: 'creds' } }],
          resources: { limits: { 'nvidia.com/gpu': '1' } },
        },
      ],
      volumes: [{ name: 'settings', configMap: { name: 'settings' } }],
    },
  });

  const escapes: [string, (p: V1Pod) => void, RegExp][] = [
    [
      'privileged',
      (p) => (p.spec!.containers[0]!.securityContext = { privileged: true }),
      /securityContext\.privileged$/,
    ],
    [
      'hostPath',
      (p) => p.spec!.volumes!.push({ name: 'root', hostPath: { path: '/' } }),
      /hostPath$/,
    ],
    ['hostNetwork', (p) => (p.spec!.hostNetwork = true), /^spec\.hostNetwork$/],
    ['hostPID', (p) => (p.spec!.hostPID = true), /^spec\.hostPID$/],
    ['hostIPC', (p) => (p.spec!.hostIPC = true), /^spec\.hostIPC$/],
    [
      'a donor system service account',
      (p) => (p.spec!.serviceAccountName = 'system:serviceaccount:kube-system:spillway-agent'),
      /^spec\.serviceAccountName$/,
    ],
    [
      'a Secret it did not send',
      (p) => p.spec!.volumes!.push({ name: 'tok', secret: { secretName: 'spillway-identity' } }),
      /^secrets$/,
    ],
    [
      'a hostPort',
      (p) => (p.spec!.containers[0]!.ports = [{ containerPort: 22, hostPort: 22 }]),
      /hostPort$/,
    ],
  ];

  it(
    `refuses each escape wherever it hides in an otherwise valid pod (${RUNS} cases)`,
    () => {
      expect(donorSide(ok()).pod).toBeDefined();
      fc.assert(
        fc.property(
          fc.constantFrom(...escapes),
          fc.integer({ min: 0, max: 2 }),
          fc.boolean(),
          ([, escape, field], position, asInit) => {
            const p = ok();
            escape(p);
            // Hide the container that carries the escape among harmless ones, or make it an
            // init container: the check must look at every container, not the first.
            const carrier = p.spec!.containers.shift()!;
            p.spec!.containers = [
              { name: 'a', image: 'x' },
              { name: 'b', image: 'x' },
            ];
            if (asInit) p.spec!.initContainers = [{ name: 'i', image: 'x' }, carrier];
            else p.spec!.containers.splice(position, 0, carrier);
            const r = donorSide(p);
            expect(r.refused?.code, JSON.stringify(p)).toBe('POD_REFUSED');
            expect(r.refused?.field).toMatch(field);
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT_MS,
  );
});
