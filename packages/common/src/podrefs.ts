/**
 * The ConfigMaps and Secrets a pod spec references, found the same way on the origin
 * (which sends them) and on the donor (which checks that it got everything it needs).
 */

export interface ObjectReference {
  name: string;
  /** An optional reference may be missing without failing the pod. */
  optional: boolean;
}

export interface PodReferences {
  configMaps: ObjectReference[];
  secrets: ObjectReference[];
}

interface EnvFromSource {
  configMapRef?: { name?: string; optional?: boolean };
  secretRef?: { name?: string; optional?: boolean };
}
interface EnvVar {
  valueFrom?: {
    configMapKeyRef?: { name?: string; optional?: boolean };
    secretKeyRef?: { name?: string; optional?: boolean };
  };
}
interface ContainerLike {
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
}
interface ProjectionLike {
  configMap?: { name?: string; optional?: boolean };
  secret?: { name?: string; optional?: boolean };
}
interface VolumeLike {
  configMap?: { name?: string; optional?: boolean };
  secret?: { secretName?: string; optional?: boolean };
  projected?: { sources?: ProjectionLike[] };
}
export interface PodRefsShape {
  spec?: {
    containers?: ContainerLike[];
    initContainers?: ContainerLike[];
    ephemeralContainers?: ContainerLike[];
    volumes?: VolumeLike[];
    imagePullSecrets?: { name?: string }[];
  };
}

function add(
  list: Map<string, boolean>,
  name: string | undefined,
  optional: boolean | undefined,
): void {
  if (!name) return;
  // Required anywhere means required.
  const prev = list.get(name);
  list.set(name, prev === undefined ? optional === true : prev && optional === true);
}

export function podReferences(pod: PodRefsShape): PodReferences {
  const cms = new Map<string, boolean>();
  const secrets = new Map<string, boolean>();
  const spec = pod.spec ?? {};
  for (const c of [
    ...(spec.containers ?? []),
    ...(spec.initContainers ?? []),
    ...(spec.ephemeralContainers ?? []),
  ]) {
    for (const e of c.envFrom ?? []) {
      add(cms, e.configMapRef?.name, e.configMapRef?.optional);
      add(secrets, e.secretRef?.name, e.secretRef?.optional);
    }
    for (const e of c.env ?? []) {
      add(cms, e.valueFrom?.configMapKeyRef?.name, e.valueFrom?.configMapKeyRef?.optional);
      add(secrets, e.valueFrom?.secretKeyRef?.name, e.valueFrom?.secretKeyRef?.optional);
    }
  }
  for (const v of spec.volumes ?? []) {
    add(cms, v.configMap?.name, v.configMap?.optional);
    add(secrets, v.secret?.secretName, v.secret?.optional);
    for (const s of v.projected?.sources ?? []) {
      add(cms, s.configMap?.name, s.configMap?.optional);
      add(secrets, s.secret?.name, s.secret?.optional);
    }
  }
  for (const s of spec.imagePullSecrets ?? []) add(secrets, s.name, false);
  const toList = (m: Map<string, boolean>): ObjectReference[] =>
    [...m.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, optional]) => ({ name, optional }));
  return { configMaps: toList(cms), secrets: toList(secrets) };
}

/** The projected service-account volume every API server injects; never offloaded. */
export function isServiceAccountTokenVolume(name: string | undefined): boolean {
  return typeof name === 'string' && name.startsWith('kube-api-access-');
}
