import { SpillwayError, invalid, validateClusterId } from '@spillway/common';
import { MAX_GANG_MEMBERS } from '../store/gang.js';
import type {
  CapacityFilter,
  ClusterPatch,
  JoinTokenInput,
  LabelRequirement,
  PeeringInput,
  GangPlacementRequest,
  PlacementRequest,
  PodStatusReport,
  Toleration,
} from './api.js';
import type {
  CapacityUpdate,
  ClusterRole,
  DonorPolicy,
  PlacementPolicy,
  PodSecurityLevel,
} from '../model.js';
import { MAX_GPUS_PER_POD, labelRequirement } from '../placement/constraints.js';

/**
 * Input checks the core applies before it touches the store, whichever layer called it:
 * a bad field is refused with INVALID_ARGUMENT naming it, and nothing changes.
 */

// Defined once in @spillway/common; re-exported for the core's existing imports.
export { invalid } from '@spillway/common';

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function text(v: unknown, field: string, opts: { max?: number; empty?: boolean } = {}): string {
  if (typeof v !== 'string') throw invalid(field, `must be a string, got ${typeof v}`);
  if (!opts.empty && v.length === 0) throw invalid(field, 'must not be empty');
  if (v.length > (opts.max ?? 1024))
    throw invalid(field, `must be at most ${opts.max ?? 1024} characters`);
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(field, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function stringList(v: unknown, field: string, max: number): string[] {
  if (!Array.isArray(v)) throw invalid(field, 'must be a list of strings');
  if (v.length > max) throw invalid(field, `must have at most ${max} entries`);
  return v.map((s, i) => text(s, `${field}[${i}]`));
}

function noUnknownKeys(o: Record<string, unknown>, allowed: readonly string[], base: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw invalid(
        base === '' ? k : `${base}.${k}`,
        `unknown field (expected one of ${allowed.join(', ')})`,
      );
    }
  }
}

const ROLES: readonly ClusterRole[] = ['origin', 'donor', 'both'];
const POLICIES: readonly PlacementPolicy[] = ['binpack', 'spread', 'cost'];
const POD_SECURITY: readonly PodSecurityLevel[] = ['restricted', 'baseline'];
export const MAX_JOIN_TOKEN_TTL_MS = 24 * 3_600_000;
/** No donor lends more GPUs than this; bigger limits are typos. */
const MAX_LIMIT = 1_000_000;

export function validateRole(v: unknown, field = 'role'): ClusterRole {
  if (!ROLES.includes(v as ClusterRole)) {
    throw invalid(field, `${JSON.stringify(v)} is not one of ${ROLES.join(', ')}`);
  }
  return v as ClusterRole;
}

export function validateJoinTokenInput(
  input: JoinTokenInput,
  defaultTtlMs: number,
): Required<JoinTokenInput> {
  if (!isObject(input)) throw invalid('body', 'must be an object');
  const ttlMs = input.ttlMs ?? defaultTtlMs;
  if (
    typeof ttlMs !== 'number' ||
    !Number.isInteger(ttlMs) ||
    ttlMs <= 0 ||
    ttlMs > MAX_JOIN_TOKEN_TTL_MS
  ) {
    throw invalid(
      'ttlMs',
      `must be a whole number of milliseconds from 1 to ${MAX_JOIN_TOKEN_TTL_MS} (24h), got ${JSON.stringify(ttlMs)}`,
    );
  }
  return { clusterId: validateClusterId(input.clusterId), role: validateRole(input.role), ttlMs };
}

export function validatePlacementPolicy(v: unknown, field = 'policy'): PlacementPolicy {
  if (!POLICIES.includes(v as PlacementPolicy)) {
    throw invalid(field, `${JSON.stringify(v)} is not one of ${POLICIES.join(', ')}`);
  }
  return v as PlacementPolicy;
}

/** A normalized copy of the request; the pod's origin must be the caller. */
export function validatePlacementRequest(
  origin: string,
  r: PlacementRequest,
  /** 0 for a gang member that goes with its gang (a Ray head, a launcher). */
  minGpus = 1,
): PlacementRequest {
  if (!isObject(r)) throw invalid('request', 'must be an object');
  if (!isObject(r.pod)) throw invalid('pod', 'is required');
  const pod = {
    originCluster:
      r.pod.originCluster === '' || r.pod.originCluster === undefined
        ? origin
        : r.pod.originCluster,
    namespace: text(r.pod.namespace, 'pod.namespace', { max: 253 }),
    name: text(r.pod.name, 'pod.name', { max: 253 }),
    uid: text(r.pod.uid, 'pod.uid', { max: 128 }),
  };
  if (pod.originCluster !== origin) {
    throw invalid(
      'pod.originCluster',
      `is ${JSON.stringify(pod.originCluster)} but the caller is ${origin}; a cluster places only its own pods`,
    );
  }
  const resource = text(r.resource, 'resource', { max: 253 });
  if (typeof r.gpus !== 'number' || !Number.isInteger(r.gpus)) {
    throw invalid('gpus', `must be a whole number of GPUs, got ${JSON.stringify(r.gpus)}`);
  }
  if (r.gpus < minGpus || r.gpus > MAX_GPUS_PER_POD) {
    throw invalid('gpus', `must be from ${minGpus} to ${MAX_GPUS_PER_POD}, got ${r.gpus}`);
  }
  const cpuMillis = int(r.cpuMillis ?? 0, 'cpuMillis', 0, Number.MAX_SAFE_INTEGER);
  const memoryBytes = int(r.memoryBytes ?? 0, 'memoryBytes', 0, Number.MAX_SAFE_INTEGER);
  const reqs = r.nodeRequirements ?? [];
  if (!Array.isArray(reqs) || reqs.length > 64)
    throw invalid('nodeRequirements', 'must be a list of at most 64 requirements');
  const nodeRequirements = reqs.map((q, i): LabelRequirement => {
    const f = `nodeRequirements[${i}]`;
    if (!isObject(q)) throw invalid(f, 'must be an object');
    const key = text(q.key, `${f}.key`, { max: 317 });
    return labelRequirement(key, q.operator, stringList(q.values ?? [], `${f}.values`, 256), f);
  });
  const tols = r.tolerations ?? [];
  if (!Array.isArray(tols) || tols.length > 64)
    throw invalid('tolerations', 'must be a list of at most 64 tolerations');
  const tolerations = tols.map((t, i): Toleration => {
    const f = `tolerations[${i}]`;
    if (!isObject(t)) throw invalid(f, 'must be an object');
    const operator = (t.operator as string | undefined) || 'Equal';
    if (operator !== 'Equal' && operator !== 'Exists')
      throw invalid(`${f}.operator`, `${JSON.stringify(t.operator)} is not Equal or Exists`);
    const key = text(t.key ?? '', `${f}.key`, { empty: true, max: 317 });
    if (key === '' && operator !== 'Exists')
      throw invalid(`${f}.key`, 'an empty key needs operator Exists');
    return {
      key,
      operator,
      value: text(t.value ?? '', `${f}.value`, { empty: true, max: 63 }),
      effect: text(t.effect ?? '', `${f}.effect`, { empty: true, max: 32 }),
    };
  });
  const donors = stringList(r.donors ?? [], 'donors', 256).map((d, i) =>
    validateClusterId(d, `donors[${i}]`),
  );
  return {
    pod,
    resource,
    gpus: r.gpus,
    nodeRequirements,
    tolerations,
    cpuMillis,
    memoryBytes,
    donors,
    ...(r.policy === undefined ? {} : { policy: validatePlacementPolicy(r.policy) }),
  };
}

const POLICY_KEYS: readonly (keyof DonorPolicy)[] = [
  'maxGpus',
  'maxGpusPerOrigin',
  'nodeSelector',
  'cordoned',
  'costPerGpuHour',
  'podSecurity',
];

/** Checks a PATCH of a cluster; every field is validated before anything is written. */
export function validateClusterPatch(patch: ClusterPatch): ClusterPatch {
  if (!isObject(patch)) throw invalid('body', 'must be an object');
  noUnknownKeys(patch, ['cordoned', 'policy'], '');
  const out: ClusterPatch = {};
  if (patch.cordoned !== undefined) {
    if (typeof patch.cordoned !== 'boolean') throw invalid('cordoned', 'must be true or false');
    out.cordoned = patch.cordoned;
  }
  if (patch.policy !== undefined) {
    const p = patch.policy as Record<string, unknown>;
    if (!isObject(p)) throw invalid('policy', 'must be an object');
    noUnknownKeys(p, POLICY_KEYS, 'policy');
    const policy: Partial<DonorPolicy> = {};
    if (p.maxGpus !== undefined) policy.maxGpus = int(p.maxGpus, 'policy.maxGpus', 0, MAX_LIMIT);
    if (p.maxGpusPerOrigin !== undefined) {
      policy.maxGpusPerOrigin = int(p.maxGpusPerOrigin, 'policy.maxGpusPerOrigin', 0, MAX_LIMIT);
    }
    if (p.nodeSelector !== undefined) {
      if (!isObject(p.nodeSelector))
        throw invalid('policy.nodeSelector', 'must be an object of label key to value');
      const sel: Record<string, string> = {};
      for (const [k, v] of Object.entries(p.nodeSelector)) {
        text(k, 'policy.nodeSelector', { max: 317 });
        sel[k] = text(v, `policy.nodeSelector[${k}]`, { empty: true, max: 63 });
      }
      policy.nodeSelector = sel;
    }
    if (p.cordoned !== undefined) {
      if (typeof p.cordoned !== 'boolean')
        throw invalid('policy.cordoned', 'must be true or false');
      policy.cordoned = p.cordoned;
    }
    if (p.costPerGpuHour !== undefined) {
      if (
        typeof p.costPerGpuHour !== 'number' ||
        !Number.isFinite(p.costPerGpuHour) ||
        p.costPerGpuHour < 0
      ) {
        throw invalid(
          'policy.costPerGpuHour',
          `must be a non-negative number, got ${JSON.stringify(p.costPerGpuHour)}`,
        );
      }
      policy.costPerGpuHour = p.costPerGpuHour;
    }
    if (p.podSecurity !== undefined) {
      if (!POD_SECURITY.includes(p.podSecurity as PodSecurityLevel)) {
        throw invalid(
          'policy.podSecurity',
          `${JSON.stringify(p.podSecurity)} is not one of ${POD_SECURITY.join(', ')}`,
        );
      }
      policy.podSecurity = p.podSecurity as PodSecurityLevel;
    }
    out.policy = policy;
  }
  return out;
}

export function validatePeeringInput(input: PeeringInput): Required<PeeringInput> {
  if (!isObject(input)) throw invalid('body', 'must be an object');
  const origin = validateClusterId(input.origin, 'origin');
  const donor = validateClusterId(input.donor, 'donor');
  if (origin === donor) throw invalid('donor', `a cluster cannot peer with itself (${origin})`);
  const maxGpus = int(input.maxGpus ?? 0, 'maxGpus', 0, MAX_LIMIT);
  const gpuProducts = [...new Set(stringList(input.gpuProducts ?? [], 'gpuProducts', 64))];
  return { origin, donor, maxGpus, gpuProducts };
}

/**
 * The one check of a capacity report, run by the core before it reaches the store and by
 * each store before it applies one: the shape, the amounts the engine's arithmetic relies
 * on, a sequence, and no node named twice. Throws INVALID_ARGUMENT naming the first bad field.
 */
export function validateCapacityUpdate(update: CapacityUpdate): void {
  if (!isObject(update)) throw invalid('capacity', 'must be an object');
  if (typeof update.full !== 'boolean') throw invalid('full', 'must be true or false');
  if (!Array.isArray(update.nodes)) throw invalid('nodes', 'must be a list');
  if (!Array.isArray(update.removedNodes)) throw invalid('removedNodes', 'must be a list');
  update.nodes.forEach((n, i) => {
    const f = `nodes[${i}]`;
    if (!isObject(n)) throw invalid(f, 'must be an object');
    text(n.name, `${f}.name`, { max: 253 });
    if (!isObject(n.gpus)) throw invalid(`${f}.gpus`, 'must map resource names to amounts');
    for (const [res, amt] of Object.entries(n.gpus)) {
      const g = `${f}.gpus[${res}]`;
      if (!isObject(amt)) throw invalid(g, 'must be {allocatable, free}');
      int(amt.allocatable, `${g}.allocatable`, 0, MAX_LIMIT);
      int(amt.free, `${g}.free`, 0, MAX_LIMIT);
      if (amt.free > amt.allocatable) {
        throw invalid(
          `${g}.free`,
          `${amt.free} free is more than the ${amt.allocatable} allocatable`,
        );
      }
    }
    for (const k of [
      'cpuAllocatableMillis',
      'cpuFreeMillis',
      'memoryAllocatableBytes',
      'memoryFreeBytes',
      'gpuMemoryMiB',
    ] as const) {
      int(n[k], `${f}.${k}`, 0, Number.MAX_SAFE_INTEGER);
    }
    if (typeof n.ready !== 'boolean') throw invalid(`${f}.ready`, 'must be true or false');
    if (typeof n.cordoned !== 'boolean') throw invalid(`${f}.cordoned`, 'must be true or false');
    if (!Array.isArray(n.offloadedPodUids))
      throw invalid(`${f}.offloadedPodUids`, 'must be a list');
    if (!Array.isArray(n.taints)) throw invalid(`${f}.taints`, 'must be a list');
    if (!isObject(n.labels)) throw invalid(`${f}.labels`, 'must be an object');
  });
  if (!Number.isInteger(update.sequence) || update.sequence < 0) {
    throw invalid('sequence', `must be a non-negative integer, got ${String(update.sequence)}`);
  }
  const seen = new Set<string>();
  update.nodes.forEach((n, i) => {
    if (seen.has(n.name)) throw invalid(`nodes[${i}].name`, `node ${n.name} appears twice`);
    seen.add(n.name);
  });
}

export function validatePodStatusReport(r: PodStatusReport): void {
  if (!isObject(r) || !isObject(r.pod)) throw invalid('pod', 'is required');
  text(r.pod.uid, 'pod.uid', { max: 128 });
  if (typeof r.deleted !== 'boolean') throw invalid('deleted', 'must be true or false');
  text(r.phase ?? '', 'phase', { empty: true, max: 64 });
}

export function validateCapacityFilter(f: CapacityFilter): CapacityFilter {
  if (!isObject(f)) throw invalid('filter', 'must be an object');
  const out: CapacityFilter = {};
  if (f.origin !== undefined) out.origin = validateClusterId(f.origin, 'origin');
  if (f.gpuProduct !== undefined) out.gpuProduct = text(f.gpuProduct, 'gpuProduct', { max: 253 });
  if (f.resource !== undefined) out.resource = text(f.resource, 'resource', { max: 253 });
  if (f.minGpuMemoryMiB !== undefined) {
    out.minGpuMemoryMiB = int(f.minGpuMemoryMiB, 'minGpuMemoryMiB', 0, Number.MAX_SAFE_INTEGER);
  }
  return out;
}

/** A gang request's checks: a name, 1 to MAX_GANG_MEMBERS valid members, no pod twice. */
export function validateGangPlacementRequest(
  origin: string,
  r: GangPlacementRequest,
): GangPlacementRequest {
  if (!isObject(r)) throw invalid('request', 'must be an object');
  const gang = text(r.gang, 'gang', { max: 253 });
  if (!Array.isArray(r.members) || r.members.length === 0) {
    throw invalid('members', 'must list at least one member');
  }
  if (r.members.length > MAX_GANG_MEMBERS) {
    throw invalid(
      'members',
      `must list at most ${MAX_GANG_MEMBERS} members, got ${r.members.length}`,
    );
  }
  const uids = new Set<string>();
  const members = r.members.map((m, i) => {
    let out: PlacementRequest;
    try {
      out = validatePlacementRequest(origin, { ...m, donors: [] }, 0);
    } catch (err) {
      if (!(err instanceof SpillwayError)) throw err;
      throw invalid(`members[${i}].${err.field ?? 'request'}`, err.message.replace(/^[^:]*: /, ''));
    }
    if (uids.has(out.pod.uid))
      throw invalid(`members[${i}].pod.uid`, `pod uid ${out.pod.uid} appears twice`);
    uids.add(out.pod.uid);
    return out;
  });
  if (members.every((m) => m.gpus === 0)) {
    throw invalid('members', 'at least one member must ask for GPUs');
  }
  const donors = stringList(r.donors ?? [], 'donors', 256).map((d, i) =>
    validateClusterId(d, `donors[${i}]`),
  );
  return {
    gang,
    members,
    donors,
    ...(r.policy === undefined ? {} : { policy: validatePlacementPolicy(r.policy) }),
  };
}
