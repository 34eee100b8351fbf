import type { V1Pod } from '@kubernetes/client-node';
import {
  DEFAULT_DONOR_POD_POLICY,
  ErrorCode,
  SpillwayError,
  donorPolicyRefusal,
  isServiceAccountTokenVolume,
  podReferences,
  type DonorPodPolicy,
} from '@spillway/common';

export {
  BASELINE_CAPABILITIES,
  DEFAULT_DONOR_POD_POLICY,
  type DonorPodPolicy,
} from '@spillway/common';

function refuse(message: string, field: string): never {
  throw new SpillwayError(ErrorCode.POD_REFUSED, message, { field });
}

type JsonKind = 'object' | 'array' | 'string';

function kindOf(v: unknown): JsonKind | 'other' {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object' && v !== null) return 'object';
  return typeof v === 'string' ? 'string' : 'other';
}

/** `v` is absent (undefined or null) or of `kind`; an array's items are of `items`. */
function expectKind(v: unknown, kind: JsonKind, field: string, items?: JsonKind): void {
  if (v === undefined || v === null) return;
  if (kindOf(v) !== kind)
    refuse(`${field} must be ${kind === 'array' ? 'a list' : `a ${kind}`}`, field);
  if (items && Array.isArray(v)) {
    v.forEach((item, i) => {
      if (kindOf(item) !== items)
        refuse(
          `${field}[${i}] must be ${items === 'string' ? 'a string' : 'an object'}`,
          `${field}[${i}]`,
        );
    });
  }
}

/** A reference to a Secret or ConfigMap: an object whose name is a string. */
function expectRef(v: unknown, nameKey: string, field: string): void {
  expectKind(v, 'object', field);
  if (v !== undefined && v !== null)
    expectKind((v as Record<string, unknown>)[nameKey], 'string', `${field}.${nameKey}`);
}

/**
 * pod_json is whatever an origin sent: refuse wrongly typed fields the checks below read,
 * so a malformed pod gets a reason instead of an internal error.
 */
function assertPodShape(pod: unknown): asserts pod is V1Pod {
  if (kindOf(pod) !== 'object') refuse('pod must be an object', 'pod');
  const spec = (pod as { spec?: unknown }).spec;
  if (kindOf(spec) !== 'object') refuse('spec must be an object', 'spec');
  const s = spec as Record<string, unknown>;
  for (const f of ['serviceAccountName', 'serviceAccount']) expectKind(s[f], 'string', `spec.${f}`);
  for (const f of [
    'containers',
    'initContainers',
    'ephemeralContainers',
    'volumes',
    'imagePullSecrets',
    'tolerations',
  ])
    expectKind(s[f], 'array', `spec.${f}`, 'object');
  for (const f of ['nodeSelector', 'securityContext', 'affinity'])
    expectKind(s[f], 'object', `spec.${f}`);
  for (const f of ['containers', 'initContainers', 'ephemeralContainers']) {
    for (const [i, c] of ((s[f] as Record<string, unknown>[] | null) ?? []).entries()) {
      const path = `spec.${f}[${i}]`;
      expectKind(c.securityContext, 'object', `${path}.securityContext`);
      const sc = (c.securityContext ?? {}) as Record<string, unknown>;
      expectKind(sc.capabilities, 'object', `${path}.securityContext.capabilities`);
      const caps = (sc.capabilities ?? {}) as Record<string, unknown>;
      expectKind(caps.add, 'array', `${path}.securityContext.capabilities.add`, 'string');
      expectKind(sc.procMount, 'string', `${path}.securityContext.procMount`);
      for (const k of ['ports', 'env', 'envFrom', 'volumeMounts'])
        expectKind(c[k], 'array', `${path}.${k}`, 'object');
      for (const [j, e] of ((c.env as Record<string, unknown>[] | null) ?? []).entries()) {
        expectKind(e.valueFrom, 'object', `${path}.env[${j}].valueFrom`);
        const vf = (e.valueFrom ?? {}) as Record<string, unknown>;
        for (const k of ['secretKeyRef', 'configMapKeyRef'])
          expectRef(vf[k], 'name', `${path}.env[${j}].valueFrom.${k}`);
      }
      for (const [j, e] of ((c.envFrom as Record<string, unknown>[] | null) ?? []).entries()) {
        for (const k of ['secretRef', 'configMapRef'])
          expectRef(e[k], 'name', `${path}.envFrom[${j}].${k}`);
      }
    }
  }
  for (const [i, v] of ((s.volumes as Record<string, unknown>[] | null) ?? []).entries()) {
    expectKind(v.name, 'string', `spec.volumes[${i}].name`);
    expectRef(v.secret, 'secretName', `spec.volumes[${i}].secret`);
    expectRef(v.configMap, 'name', `spec.volumes[${i}].configMap`);
    expectKind(v.projected, 'object', `spec.volumes[${i}].projected`);
    const sources = ((v.projected ?? {}) as Record<string, unknown>).sources;
    expectKind(sources, 'array', `spec.volumes[${i}].projected.sources`, 'object');
    for (const [j, src] of ((sources as Record<string, unknown>[] | null) ?? []).entries()) {
      for (const k of ['secret', 'configMap'])
        expectRef(src[k], 'name', `spec.volumes[${i}].projected.sources[${j}].${k}`);
    }
  }
  for (const [i, r] of ((s.imagePullSecrets as unknown[] | null) ?? []).entries())
    expectRef(r, 'name', `spec.imagePullSecrets[${i}]`);
}

/**
 * Throws POD_REFUSED, naming the field, for anything a donor never runs for a tenant:
 * host namespaces, host paths, privileged or escalating containers, capabilities beyond
 * the policy, service accounts of the donor, volumes the donor cannot provide, and
 * references to Secrets or ConfigMaps the origin did not send.
 */
export function assertPodAllowed(
  pod: V1Pod,
  sent: { configMaps: readonly string[]; secrets: readonly string[] },
  policy: DonorPodPolicy = DEFAULT_DONOR_POD_POLICY,
): void {
  assertPodShape(pod);
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    refuse('pod has no containers', 'spec.containers');
  }
  // The checks the origin makes as well before it offloads (one home, in @spillway/common).
  const refusal = donorPolicyRefusal(pod, policy);
  if (refusal) refuse(refusal.message, refusal.field);
  const sa = spec.serviceAccountName ?? spec.serviceAccount;
  if (sa && (sa.startsWith('system:') || sa.includes(':') || sa.includes('/'))) {
    refuse(
      `serviceAccountName "${sa}" names an account outside the tenant namespace`,
      'spec.serviceAccountName',
    );
  }
  // The API server's injected token volume references kube-root-ca.crt; the donor's own
  // admission injects its equivalent, so it is not the origin's to send.
  const refs = podReferences({
    spec: {
      ...spec,
      volumes: (spec.volumes ?? []).filter((v) => !isServiceAccountTokenVolume(v.name)),
    },
  });
  for (const r of refs.secrets) {
    if (!r.optional && !sent.secrets.includes(r.name)) {
      refuse(`pod references Secret "${r.name}", which the origin did not send`, 'secrets');
    }
  }
  for (const r of refs.configMaps) {
    if (!r.optional && !sent.configMaps.includes(r.name)) {
      refuse(`pod references ConfigMap "${r.name}", which the origin did not send`, 'configMaps');
    }
  }
}
