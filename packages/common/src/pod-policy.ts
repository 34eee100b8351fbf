import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { isServiceAccountTokenVolume } from './podrefs.js';

/**
 * The donor's pod policy, as pure checks: the donor's agent refuses what they name, and the
 * origin's shim uses the same checks to keep a pod home that every donor would refuse.
 */

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

/** Why a donor refuses a pod, and the field that makes it refuse. */
export interface PodRefusal {
  message: string;
  field: string;
}

/** Volume kinds whose storage lives in, or is reached from, the origin's own infrastructure. */
const FOREIGN_VOLUMES = [
  'nfs',
  'iscsi',
  'rbd',
  'cephfs',
  'glusterfs',
  'flexVolume',
  'csi',
  'ephemeral',
] as const;

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
 * The first thing in a pod that a donor never runs for a tenant: host namespaces, host paths,
 * volumes only the origin has (claims, network storage, CSI), privileged or escalating
 * containers, non-default procMount, host ports, and — when `policy` is given — capabilities
 * and service-account tokens beyond it. Without a policy only the checks every donor applies
 * are made: the origin does not know how far a donor's own policy goes.
 */
export function donorPolicyRefusal(pod: V1Pod, policy?: DonorPodPolicy): PodRefusal | undefined {
  const spec = pod.spec;
  if (spec?.hostNetwork)
    return { message: 'hostNetwork is not allowed on a donor', field: 'spec.hostNetwork' };
  if (spec?.hostPID) return { message: 'hostPID is not allowed on a donor', field: 'spec.hostPID' };
  if (spec?.hostIPC) return { message: 'hostIPC is not allowed on a donor', field: 'spec.hostIPC' };
  for (const [i, v] of (spec?.volumes ?? []).entries()) {
    const field = `spec.volumes[${i}]`;
    if (v.hostPath)
      return {
        message: `hostPath volume "${v.name}" is not allowed on a donor`,
        field: `${field}.hostPath`,
      };
    if (v.persistentVolumeClaim)
      return {
        message: `PersistentVolumeClaim volume "${v.name}" cannot be offloaded: the claim exists only in the origin`,
        field: `${field}.persistentVolumeClaim`,
      };
    for (const k of FOREIGN_VOLUMES) {
      if ((v as unknown as Record<string, unknown>)[k] !== undefined)
        return {
          message: `${k} volume "${v.name}" is not allowed on a donor`,
          field: `${field}.${k}`,
        };
    }
    if (!policy || policy.allowServiceAccountToken) continue;
    for (const [j, s] of (v.projected?.sources ?? []).entries()) {
      if (s.serviceAccountToken && !isServiceAccountTokenVolume(v.name))
        return {
          message: `projected service-account token in volume "${v.name}" is not allowed`,
          field: `${field}.projected.sources[${j}]`,
        };
    }
  }
  for (const { c, path } of allContainers(pod)) {
    const sc = c.securityContext;
    if (sc?.privileged)
      return {
        message: `container "${c.name}" is privileged`,
        field: `${path}.securityContext.privileged`,
      };
    if (sc?.allowPrivilegeEscalation === true && sc.capabilities?.add?.includes('SYS_ADMIN'))
      return {
        message: `container "${c.name}" escalates with SYS_ADMIN`,
        field: `${path}.securityContext`,
      };
    if (sc?.procMount && sc.procMount !== 'Default')
      return {
        message: `container "${c.name}" asks for procMount ${sc.procMount}`,
        field: `${path}.securityContext.procMount`,
      };
    if (policy) {
      for (const cap of sc?.capabilities?.add ?? []) {
        const name = cap.toUpperCase().replace(/^CAP_/, '');
        if (!policy.allowedCapabilities.includes(name))
          return {
            message: `container "${c.name}" adds capability ${cap}, which this donor does not allow`,
            field: `${path}.securityContext.capabilities.add`,
          };
      }
    }
    for (const [p, port] of (c.ports ?? []).entries()) {
      if (port.hostPort)
        return {
          message: `container "${c.name}" binds hostPort ${port.hostPort}`,
          field: `${path}.ports[${p}].hostPort`,
        };
    }
  }
  return undefined;
}
