import { bytesOf, cpuMillisOf, invalid, parseQuantity } from '@spillway/common';
import type { LabelRequirement, PlacementRequest, Toleration } from '../core/api.js';
import type { PlacementPolicy } from '../model.js';

/**
 * Turns a Kubernetes pod into what the placement engine needs. Only the fields read here
 * are typed, so a V1Pod from @kubernetes/client-node or plain pod JSON both fit.
 */

type QuantityMap = Record<string, string | number | undefined>;

export interface ContainerLike {
  name?: string | undefined;
  /** "Always" on an init container makes it a sidecar that runs alongside the app. */
  restartPolicy?: string | undefined;
  resources?: { requests?: QuantityMap | undefined; limits?: QuantityMap | undefined } | undefined;
}

export interface NodeSelectorRequirementLike {
  key?: string | undefined;
  operator?: string | undefined;
  values?: string[] | undefined;
}

export interface NodeSelectorTermLike {
  matchExpressions?: NodeSelectorRequirementLike[] | undefined;
  matchFields?: NodeSelectorRequirementLike[] | undefined;
}

export interface TolerationLike {
  key?: string | undefined;
  operator?: string | undefined;
  value?: string | undefined;
  effect?: string | undefined;
  tolerationSeconds?: number | undefined;
}

export interface PodLike {
  metadata?:
    | { name?: string | undefined; namespace?: string | undefined; uid?: string | undefined }
    | undefined;
  spec?:
    | {
        containers?: ContainerLike[] | undefined;
        initContainers?: ContainerLike[] | undefined;
        overhead?: QuantityMap | undefined;
        nodeSelector?: Record<string, string> | undefined;
        affinity?:
          | {
              nodeAffinity?:
                | {
                    requiredDuringSchedulingIgnoredDuringExecution?:
                      { nodeSelectorTerms?: NodeSelectorTermLike[] | undefined } | undefined;
                  }
                | undefined;
            }
          | undefined;
        tolerations?: TolerationLike[] | undefined;
      }
    | undefined;
}

/** GPU resources Spillway tracks by default; a trailing `*` matches a prefix. */
export const DEFAULT_GPU_RESOURCES: readonly string[] = [
  'nvidia.com/gpu',
  'nvidia.com/mig-*',
  'amd.com/gpu',
];

/** More GPUs than any one node holds is a typo, not a request. */
export const MAX_GPUS_PER_POD = 64;

export function isGpuResource(name: string, resources: readonly string[]): boolean {
  return resources.some((r) => (r.endsWith('*') ? name.startsWith(r.slice(0, -1)) : name === r));
}

/** One resource's amount per container, and the field it came from for error messages. */
interface Amount {
  value: number;
  field: string;
}

/**
 * A container's effective request of `resource`: the request, or the limit when no request
 * is given (the API server defaults requests to limits).
 */
function containerAmount(
  c: ContainerLike,
  path: string,
  resource: string,
  parse: (q: unknown, field: string) => number,
): Amount | undefined {
  const req = c.resources?.requests?.[resource];
  const lim = c.resources?.limits?.[resource];
  if (req !== undefined) {
    return {
      value: parse(req, `${path}.resources.requests[${resource}]`),
      field: `${path}.resources.requests[${resource}]`,
    };
  }
  if (lim !== undefined) {
    return {
      value: parse(lim, `${path}.resources.limits[${resource}]`),
      field: `${path}.resources.limits[${resource}]`,
    };
  }
  return undefined;
}

/**
 * The pod's request of one resource the way the scheduler computes it: app containers and
 * sidecars add up; each classic init container runs alone (next to the sidecars started
 * before it), so the pod needs the larger of the two; pod overhead comes on top.
 */
function podAmount(
  pod: PodLike,
  resource: string,
  parse: (q: unknown, field: string) => number,
): number {
  let sum = 0;
  (pod.spec?.containers ?? []).forEach((c, i) => {
    sum += containerAmount(c, `spec.containers[${i}]`, resource, parse)?.value ?? 0;
  });
  let sidecars = 0;
  let initPeak = 0;
  (pod.spec?.initContainers ?? []).forEach((c, i) => {
    const v = containerAmount(c, `spec.initContainers[${i}]`, resource, parse)?.value ?? 0;
    if (c.restartPolicy === 'Always') {
      sidecars += v;
      initPeak = Math.max(initPeak, sidecars);
    } else {
      initPeak = Math.max(initPeak, sidecars + v);
    }
  });
  const overhead = pod.spec?.overhead?.[resource];
  const extra = overhead === undefined ? 0 : parse(overhead, `spec.overhead[${resource}]`);
  return Math.max(sum + sidecars, initPeak) + extra;
}

function gpuCount(q: unknown, field: string): number {
  const n = parseQuantity(q, field);
  if (!Number.isInteger(n))
    throw invalid(field, `GPU count must be a whole number, got ${JSON.stringify(q)}`);
  if (n < 0) throw invalid(field, `GPU count must not be negative, got ${JSON.stringify(q)}`);
  if (n > MAX_GPUS_PER_POD) {
    throw invalid(field, `${n} GPUs is more than the ${MAX_GPUS_PER_POD} a pod may request`);
  }
  return n;
}

export interface GpuRequest {
  resource: string;
  gpus: number;
}

/**
 * The single GPU resource a pod requests and how many, or undefined if it requests none.
 * Refuses pods mixing GPU resources, non-integer or absurd counts, and request/limit pairs
 * that differ (extended resources cannot be overcommitted).
 */
export function gpuRequestOf(
  pod: PodLike,
  resources: readonly string[] = DEFAULT_GPU_RESOURCES,
): GpuRequest | undefined {
  let found: { resource: string; field: string } | undefined;
  const visit = (c: ContainerLike, path: string): void => {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    for (const name of new Set([...Object.keys(req), ...Object.keys(lim)])) {
      if (!isGpuResource(name, resources)) continue;
      const r = req[name];
      const l = lim[name];
      const rf = `${path}.resources.requests[${name}]`;
      const lf = `${path}.resources.limits[${name}]`;
      const rv = r === undefined ? undefined : gpuCount(r, rf);
      const lv = l === undefined ? undefined : gpuCount(l, lf);
      if (rv !== undefined && lv !== undefined && rv !== lv) {
        throw invalid(
          rf,
          `request ${rv} differs from limit ${lv}; GPU requests must equal their limits`,
        );
      }
      if ((rv ?? lv ?? 0) === 0) continue;
      if (found && found.resource !== name) {
        throw invalid(
          rv !== undefined ? rf : lf,
          `pod requests both ${found.resource} and ${name}; Spillway places pods that use one GPU resource`,
        );
      }
      found ??= { resource: name, field: rv !== undefined ? rf : lf };
    }
  };
  (pod.spec?.containers ?? []).forEach((c, i) => visit(c, `spec.containers[${i}]`));
  (pod.spec?.initContainers ?? []).forEach((c, i) => visit(c, `spec.initContainers[${i}]`));
  if (!found) return undefined;
  const gpus = podAmount(pod, found.resource, gpuCount);
  if (gpus > MAX_GPUS_PER_POD) {
    throw invalid(
      found.field,
      `the pod requests ${gpus} ${found.resource} in all, more than the ${MAX_GPUS_PER_POD} a pod may request`,
    );
  }
  return gpus === 0 ? undefined : { resource: found.resource, gpus };
}

/** The node selector operators Kubernetes defines: the one list every layer checks against. */
export const LABEL_OPERATORS = [
  'In',
  'NotIn',
  'Exists',
  'DoesNotExist',
  'Gt',
  'Lt',
] as const satisfies readonly LabelRequirement['operator'][];
const OPERATORS: ReadonlySet<string> = new Set(LABEL_OPERATORS);

/**
 * The one home of the label-requirement rule every layer applies (pods read by the shim,
 * the core's PlacementRequest, the gRPC PlaceRequest; the REST schema lists LABEL_OPERATORS):
 * a known operator, and the values it takes as the API server has it. The callers check
 * the key and that `values` are strings within their own limits; `field` names the
 * requirement.
 */
export function labelRequirement(
  key: string,
  operator: unknown,
  values: readonly string[],
  field: string,
): LabelRequirement {
  const op = operator as LabelRequirement['operator'];
  if (typeof operator !== 'string' || !OPERATORS.has(op)) {
    throw invalid(
      `${field}.operator`,
      `${JSON.stringify(operator)} is not one of ${LABEL_OPERATORS.join(', ')}`,
    );
  }
  if ((op === 'In' || op === 'NotIn') && values.length === 0) {
    throw invalid(`${field}.values`, `operator ${op} needs at least one value`);
  }
  if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) {
    throw invalid(`${field}.values`, `operator ${op} takes no values`);
  }
  if ((op === 'Gt' || op === 'Lt') && (values.length !== 1 || !/^-?\d+$/.test(values[0]!))) {
    throw invalid(`${field}.values`, `operator ${op} needs exactly one integer value`);
  }
  return { key, operator: op, values: [...values] };
}

/** Checks one requirement of a pod's node affinity, naming `field` when wrong. */
export function validateRequirement(
  r: NodeSelectorRequirementLike,
  field: string,
): LabelRequirement {
  if (typeof r.key !== 'string' || r.key === '')
    throw invalid(`${field}.key`, 'a label key is required');
  const values = r.values ?? [];
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
    throw invalid(`${field}.values`, 'values must be a list of strings');
  }
  return labelRequirement(r.key, r.operator, values, field);
}

/**
 * nodeSelector plus the required node affinity as one ANDed list of requirements.
 *
 * Kubernetes ORs nodeSelectorTerms. A PlacementRequest carries one ANDed list (so does the
 * gRPC contract), so exactly one term is supported and several are refused with
 * INVALID_ARGUMENT rather than silently narrowed to one of them.
 */
export function nodeRequirementsOf(
  pod: PodLike,
  ignoreLabelKeys: readonly string[] = [],
): LabelRequirement[] {
  const ignore = new Set(ignoreLabelKeys);
  const out: LabelRequirement[] = [];
  for (const [key, value] of Object.entries(pod.spec?.nodeSelector ?? {})) {
    if (typeof value !== 'string')
      throw invalid(`spec.nodeSelector[${key}]`, 'value must be a string');
    if (!ignore.has(key)) out.push({ key, operator: 'In', values: [value] });
  }
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required !== undefined) {
    const base =
      'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms';
    const terms = required.nodeSelectorTerms ?? [];
    if (terms.length === 0) throw invalid(base, 'at least one node selector term is required');
    if (terms.length > 1) {
      throw invalid(
        base,
        `${terms.length} alternative terms given; Spillway supports exactly one required node selector term (merge them into one)`,
      );
    }
    const term = terms[0]!;
    if ((term.matchFields ?? []).length > 0) {
      throw invalid(
        `${base}[0].matchFields`,
        "matchFields select the origin's own nodes by name and cannot be honoured on a donor",
      );
    }
    const exprs = term.matchExpressions ?? [];
    if (exprs.length === 0)
      throw invalid(`${base}[0].matchExpressions`, 'an empty term matches no node');
    exprs.forEach((e, i) => {
      const r = validateRequirement(e, `${base}[0].matchExpressions[${i}]`);
      if (!ignore.has(r.key)) out.push(r);
    });
  }
  return out;
}

export function tolerationsOf(pod: PodLike): Toleration[] {
  return (pod.spec?.tolerations ?? []).map((t, i) => {
    const field = `spec.tolerations[${i}]`;
    const operator = t.operator ?? 'Equal';
    if (operator !== 'Equal' && operator !== 'Exists') {
      throw invalid(`${field}.operator`, `${JSON.stringify(t.operator)} is not Equal or Exists`);
    }
    const key = t.key ?? '';
    if (key === '' && operator !== 'Exists')
      throw invalid(`${field}.key`, 'an empty key needs operator Exists');
    if (operator === 'Exists' && (t.value ?? '') !== '')
      throw invalid(`${field}.value`, 'operator Exists takes no value');
    return { key, operator, value: t.value ?? '', effect: t.effect ?? '' };
  });
}

export interface PlacementRequestOptions {
  origin: string;
  gpuResources?: readonly string[];
  /** Label keys the origin matches locally (e.g. the virtual node's own labels); not sent on. */
  ignoreLabelKeys?: readonly string[];
  donors?: readonly string[];
  policy?: PlacementPolicy;
}

/** The PlacementRequest for an origin pod; INVALID_ARGUMENT naming the field when it cannot be placed. */
export function placementRequestFromPod(
  pod: PodLike,
  opts: PlacementRequestOptions,
): PlacementRequest {
  const uid = pod.metadata?.uid;
  const name = pod.metadata?.name;
  if (typeof uid !== 'string' || uid === '') throw invalid('metadata.uid', 'the pod has no uid');
  if (typeof name !== 'string' || name === '')
    throw invalid('metadata.name', 'the pod has no name');
  const resources = opts.gpuResources ?? DEFAULT_GPU_RESOURCES;
  const gpu = gpuRequestOf(pod, resources);
  if (!gpu) {
    throw invalid(
      'spec.containers',
      `the pod requests none of the GPU resources ${resources.join(', ')}`,
    );
  }
  const nonNegative =
    (parse: (q: unknown, field: string) => number) =>
    (q: unknown, field: string): number => {
      const n = parse(q, field);
      if (n < 0) throw invalid(field, `must not be negative, got ${JSON.stringify(q)}`);
      return n;
    };
  return {
    pod: { originCluster: opts.origin, namespace: pod.metadata?.namespace ?? 'default', name, uid },
    resource: gpu.resource,
    gpus: gpu.gpus,
    nodeRequirements: nodeRequirementsOf(pod, opts.ignoreLabelKeys),
    tolerations: tolerationsOf(pod),
    cpuMillis: podAmount(pod, 'cpu', nonNegative(cpuMillisOf)),
    memoryBytes: podAmount(pod, 'memory', nonNegative(bytesOf)),
    donors: [...(opts.donors ?? [])],
    ...(opts.policy === undefined ? {} : { policy: opts.policy }),
  };
}
