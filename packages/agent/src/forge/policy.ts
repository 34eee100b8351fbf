import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  ErrorCode,
  SpillwayError,
  isServiceAccountTokenVolume,
  podReferences,
} from '@spillway/common';

/** What a donor allows offloaded pods to do. */
export interface DonorPodPolicy {
  /** Capabilities a container may add (the Pod Security "baseline" set by default). */
  allowedCapabilities: readonly string[];
  /** Whether offloaded pods may mount a service-account token of the tenant namespace. */
  allowServiceAccountToken: boolean;
}

/** Pod Security Standards "baseline" allows adding exactly these capabilities. */
export const BASELINE_CAPABILITIES = [
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
] as const;

export const DEFAULT_DONOR_POD_POLICY: DonorPodPolicy = {
  allowedCapabilities: BASELINE_CAPABILITIES,
  allowServiceAccountToken: false,
};

function refuse(message: string, field: string): never {
  throw new SpillwayError(ErrorCode.POD_REFUSED, message, { field });
}

function allContainers(pod: V1Pod): { c: V1Container; path: string }[] {
  const spec = pod.spec;
  return [
    ...(spec?.initContainers ?? []).map((c, i) => ({ c, path: `spec.initContainers[${i}]` })),
    ...(spec?.containers ?? []).map((c, i) => ({ c, path: `spec.containers[${i}]` })),
    ...((spec?.ephemeralContainers ?? []) as V1Container[]).map((c, i) => ({
      c,
      path: `spec.ephemeralContainers[${i}]`,
    })),
  ];
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
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    refuse('pod has no containers', 'spec.containers');
  }
  if (spec.hostNetwork) refuse('hostNetwork is not allowed on a donor', 'spec.hostNetwork');
  if (spec.hostPID) refuse('hostPID is not allowed on a donor', 'spec.hostPID');
  if (spec.hostIPC) refuse('hostIPC is not allowed on a donor', 'spec.hostIPC');
  const sa = spec.serviceAccountName ?? spec.serviceAccount;
  if (sa && (sa.startsWith('system:') || sa.includes(':') || sa.includes('/'))) {
    refuse(
      `serviceAccountName "${sa}" names an account outside the tenant namespace`,
      'spec.serviceAccountName',
    );
  }
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    const field = `spec.volumes[${i}]`;
    if (v.hostPath)
      refuse(`hostPath volume "${v.name}" is not allowed on a donor`, `${field}.hostPath`);
    if (v.persistentVolumeClaim) {
      refuse(
        `PersistentVolumeClaim volume "${v.name}" cannot be offloaded: the claim exists only in the origin`,
        `${field}.persistentVolumeClaim`,
      );
    }
    const other = [
      'nfs',
      'iscsi',
      'rbd',
      'cephfs',
      'glusterfs',
      'flexVolume',
      'csi',
      'ephemeral',
    ] as const;
    for (const k of other) {
      if ((v as unknown as Record<string, unknown>)[k] !== undefined) {
        refuse(`${k} volume "${v.name}" is not allowed on a donor`, `${field}.${k}`);
      }
    }
    for (const [j, s] of (v.projected?.sources ?? []).entries()) {
      if (
        s.serviceAccountToken &&
        !isServiceAccountTokenVolume(v.name) &&
        !policy.allowServiceAccountToken
      ) {
        refuse(
          `projected service-account token in volume "${v.name}" is not allowed`,
          `${field}.projected.sources[${j}]`,
        );
      }
    }
  }
  for (const { c, path } of allContainers(pod)) {
    const sc = c.securityContext;
    if (sc?.privileged)
      refuse(`container "${c.name}" is privileged`, `${path}.securityContext.privileged`);
    if (sc?.allowPrivilegeEscalation === true && sc.capabilities?.add?.includes('SYS_ADMIN')) {
      refuse(`container "${c.name}" escalates with SYS_ADMIN`, `${path}.securityContext`);
    }
    if (sc?.procMount && sc.procMount !== 'Default') {
      refuse(
        `container "${c.name}" asks for procMount ${sc.procMount}`,
        `${path}.securityContext.procMount`,
      );
    }
    for (const cap of sc?.capabilities?.add ?? []) {
      const name = cap.toUpperCase().replace(/^CAP_/, '');
      if (!policy.allowedCapabilities.includes(name)) {
        refuse(
          `container "${c.name}" adds capability ${cap}, which this donor does not allow`,
          `${path}.securityContext.capabilities.add`,
        );
      }
    }
    for (const [p, port] of (c.ports ?? []).entries()) {
      if (port.hostPort)
        refuse(
          `container "${c.name}" binds hostPort ${port.hostPort}`,
          `${path}.ports[${p}].hostPort`,
        );
    }
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
