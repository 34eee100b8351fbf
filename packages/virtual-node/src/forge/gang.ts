import type { V1Pod } from '@kubernetes/client-node';

/**
 * Pure: which gang a pod belongs to, and how big that gang is. Pods that only work
 * together are offloaded whole to one donor or not at all (controllers/gang.ts); this
 * module only reads labels, annotations, owner references and the owning object.
 */

export const LABEL_GANG = 'spillway.io/gang';
export const LABEL_GANG_SIZE = 'spillway.io/gang-size';

export const JOBSET_NAME_LABEL = 'jobset.sigs.k8s.io/jobset-name';
export const KUBEFLOW_JOB_LABEL = 'training.kubeflow.org/job-name';
export const TRAINJOB_LABEL = 'trainer.kubeflow.org/trainjob-name';
export const RAY_CLUSTER_LABEL = 'ray.io/cluster';
export const COSCHEDULING_POD_GROUP_LABEL = 'scheduling.x-k8s.io/pod-group';
export const VOLCANO_GROUP_ANNOTATION = 'scheduling.k8s.io/group-name';
export const VOLCANO_GROUP_ANNOTATION_NEW = 'scheduling.volcano.sh/group-name';
export const KAI_POD_GROUP_ANNOTATION = 'pod-group-name';
export const JOB_COMPLETION_INDEX_ANNOTATION = 'batch.kubernetes.io/job-completion-index';

export type GangSource =
  | 'spillway'
  | 'coscheduling'
  | 'volcano'
  | 'kai'
  | 'jobset'
  | 'trainer'
  | 'kubeflow'
  | 'ray'
  | 'indexed-job';

/** The object whose spec says how big the gang is, as the API addresses it. */
export interface GangOwnerRef {
  group: string;
  version: string;
  plural: string;
  kind: string;
  name: string;
}

export interface GangKey {
  source: GangSource;
  /** The gang's name within the namespace (the object or label value). */
  name: string;
  /** namespace/source/name: one key per gang. */
  key: string;
  /** The label or annotation the pod was recognised by. */
  label: string;
  /** Read this for the size; absent when only the pod's labels say it. */
  owner?: GangOwnerRef;
  /** The pod's spillway.io/gang-size, when set. */
  sizeLabel?: number;
}

export interface GangProblem {
  /** The label or annotation that is wrong. */
  label: string;
  message: string;
}

/** The gang's size: from the owning object where there is one, else the size label. */
export type GangSize = { size: number; from: string } | { error: GangProblem } | { notGang: true };

function positiveInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^[1-9]\d{0,5}$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

const POD_GROUP_APIS: Record<'coscheduling' | 'volcano' | 'kai', Omit<GangOwnerRef, 'name'>> = {
  coscheduling: {
    group: 'scheduling.x-k8s.io',
    version: 'v1alpha1',
    plural: 'podgroups',
    kind: 'PodGroup',
  },
  volcano: {
    group: 'scheduling.volcano.sh',
    version: 'v1beta1',
    plural: 'podgroups',
    kind: 'PodGroup',
  },
  kai: { group: 'scheduling.run.ai', version: 'v2alpha2', plural: 'podgroups', kind: 'PodGroup' },
};

const JOBSET_API = {
  group: 'jobset.x-k8s.io',
  version: 'v1alpha2',
  plural: 'jobsets',
  kind: 'JobSet',
};
const RAY_API = { group: 'ray.io', version: 'v1', plural: 'rayclusters', kind: 'RayCluster' };
const JOB_API = { group: 'batch', version: 'v1', plural: 'jobs', kind: 'Job' };

/**
 * The gang a pod belongs to, by the first source that names one: spillway.io/gang, a
 * PodGroup (coscheduling label, Volcano or KAI annotation), a JobSet (a Kubeflow TrainJob
 * runs as one), a Kubeflow training job, a RayCluster, an Indexed Job's pod. Undefined for a
 * pod of no gang; a problem when spillway.io/gang-size is not a positive integer.
 */
export function gangKeyOf(pod: V1Pod): GangKey | { error: GangProblem } | undefined {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  const ns = pod.metadata?.namespace ?? 'default';
  const rawSize = labels[LABEL_GANG_SIZE] ?? annotations[LABEL_GANG_SIZE];
  const sizeLabel = positiveInt(rawSize);
  if (rawSize !== undefined && sizeLabel === undefined) {
    return {
      error: {
        label: LABEL_GANG_SIZE,
        message: `${LABEL_GANG_SIZE} must be a positive integer, got ${JSON.stringify(rawSize)}`,
      },
    };
  }
  const make = (
    source: GangSource,
    label: string,
    name: string,
    owner?: Omit<GangOwnerRef, 'name'>,
    ownerName = name,
  ): GangKey => ({
    source,
    name,
    key: `${ns}/${source}/${name}`,
    label,
    ...(owner ? { owner: { ...owner, name: ownerName } } : {}),
    ...(sizeLabel !== undefined ? { sizeLabel } : {}),
  });
  const explicit = labels[LABEL_GANG] ?? annotations[LABEL_GANG];
  if (explicit) return make('spillway', LABEL_GANG, explicit);
  const cosched = labels[COSCHEDULING_POD_GROUP_LABEL];
  if (cosched)
    return make('coscheduling', COSCHEDULING_POD_GROUP_LABEL, cosched, POD_GROUP_APIS.coscheduling);
  for (const a of [VOLCANO_GROUP_ANNOTATION_NEW, VOLCANO_GROUP_ANNOTATION]) {
    const v = annotations[a];
    if (v) return make('volcano', a, v, POD_GROUP_APIS.volcano);
  }
  const kai = annotations[KAI_POD_GROUP_ANNOTATION];
  if (kai) return make('kai', KAI_POD_GROUP_ANNOTATION, kai, POD_GROUP_APIS.kai);
  const jobset = labels[JOBSET_NAME_LABEL];
  const trainjob = labels[TRAINJOB_LABEL];
  if (trainjob) {
    return jobset
      ? make('trainer', TRAINJOB_LABEL, trainjob, JOBSET_API, jobset)
      : make('trainer', TRAINJOB_LABEL, trainjob);
  }
  if (jobset) return make('jobset', JOBSET_NAME_LABEL, jobset, JOBSET_API);
  const kubeflow = labels[KUBEFLOW_JOB_LABEL];
  if (kubeflow) {
    // The training operator's job kinds (PyTorchJob, TFJob, MPIJob, ...) live in kubeflow.org.
    const ref = pod.metadata?.ownerReferences?.find(
      (o) => o.controller && o.apiVersion.startsWith('kubeflow.org/'),
    );
    const api = ref
      ? {
          group: 'kubeflow.org',
          version: ref.apiVersion.split('/')[1] ?? 'v1',
          plural: `${ref.kind.toLowerCase()}s`,
          kind: ref.kind,
        }
      : undefined;
    return make('kubeflow', KUBEFLOW_JOB_LABEL, kubeflow, api, ref?.name ?? kubeflow);
  }
  const ray = labels[RAY_CLUSTER_LABEL];
  if (ray) return make('ray', RAY_CLUSTER_LABEL, ray, RAY_API);
  const job = pod.metadata?.ownerReferences?.find(
    (o) => o.controller && o.kind === 'Job' && o.apiVersion === 'batch/v1',
  );
  if (job && annotations[JOB_COMPLETION_INDEX_ANNOTATION] !== undefined) {
    return make('indexed-job', JOB_COMPLETION_INDEX_ANNOTATION, job.name, JOB_API);
  }
  return undefined;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: unknown, dflt: number): number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : dflt;

/** The size the owning object's spec gives, or why it gives none. */
function sizeOfOwner(
  key: GangKey,
  owner: Obj,
): { size: number; from: string } | { notGang: true } | string {
  const spec = isObj(owner.spec) ? owner.spec : {};
  const ref = key.owner!;
  const what = `${ref.kind} ${ref.name}`;
  switch (key.source) {
    case 'coscheduling':
    case 'volcano':
    case 'kai': {
      const min = count(spec.minMember, 0);
      return min > 0 ? { size: min, from: `${what} minMember` } : `${what} has no minMember`;
    }
    case 'jobset':
    case 'trainer': {
      const jobs = Array.isArray(spec.replicatedJobs) ? spec.replicatedJobs : [];
      let size = 0;
      for (const rj of jobs) {
        if (!isObj(rj)) continue;
        const template = isObj(rj.template) ? rj.template : {};
        const jobSpec = isObj(template.spec) ? template.spec : {};
        size += count(rj.replicas, 1) * count(jobSpec.parallelism, 1);
      }
      return size > 0
        ? { size, from: `${what} replicas × parallelism` }
        : `${what} has no replicated jobs`;
    }
    case 'kubeflow': {
      let size = 0;
      for (const [field, specs] of Object.entries(spec)) {
        if (!field.endsWith('ReplicaSpecs') || !isObj(specs)) continue;
        for (const r of Object.values(specs)) if (isObj(r)) size += count(r.replicas, 1);
      }
      return size > 0 ? { size, from: `${what} replicas` } : `${what} has no replica specs`;
    }
    case 'ray': {
      const groups = Array.isArray(spec.workerGroupSpecs) ? spec.workerGroupSpecs : [];
      let size = 1; // the head
      for (const g of groups) if (isObj(g)) size += count(g.replicas, 0) * count(g.numOfHosts, 1);
      return { size, from: `${what}: head + workers` };
    }
    case 'indexed-job': {
      const parallelism = count(spec.parallelism, 1);
      if (spec.completionMode !== 'Indexed' || parallelism <= 1) return { notGang: true };
      return { size: parallelism, from: `${what} parallelism` };
    }
    default:
      return `${what} does not say how big the gang is`;
  }
}

/**
 * The gang's size. `owner` is the owning object as read (undefined when there is none or it
 * could not be read; `readError` says why). The size label must agree with the object.
 */
export function gangSize(key: GangKey, owner: unknown, readError?: string): GangSize {
  if (!key.owner) {
    if (key.sizeLabel !== undefined) return { size: key.sizeLabel, from: LABEL_GANG_SIZE };
    return {
      error: {
        label: LABEL_GANG_SIZE,
        message: `pods of gang ${key.name} (${key.label}) need ${LABEL_GANG_SIZE}: nothing else says how many pods it has`,
      },
    };
  }
  if (!isObj(owner)) {
    if (key.sizeLabel !== undefined) return { size: key.sizeLabel, from: LABEL_GANG_SIZE };
    return {
      error: {
        label: key.label,
        message: `cannot read ${key.owner.kind} ${key.owner.name} to learn the size of gang ${key.name}${readError ? ` (${readError})` : ''}; set ${LABEL_GANG_SIZE} on its pods`,
      },
    };
  }
  const got = sizeOfOwner(key, owner);
  if (typeof got === 'string') {
    if (key.sizeLabel !== undefined) return { size: key.sizeLabel, from: LABEL_GANG_SIZE };
    return { error: { label: key.label, message: `${got}; set ${LABEL_GANG_SIZE} on its pods` } };
  }
  if ('notGang' in got) return got;
  if (key.sizeLabel !== undefined && key.sizeLabel !== got.size) {
    return {
      error: {
        label: LABEL_GANG_SIZE,
        message: `${LABEL_GANG_SIZE} is ${key.sizeLabel} but ${got.from} is ${got.size}`,
      },
    };
  }
  return got;
}

/** How the binder sees one member of a gang right now. */
export type MemberState =
  /** Unbound, Pending, and Spillway may offload it now (Unschedulable past its grace, or no GPU). */
  | { kind: 'ready' }
  /** Unbound and Pending, but not yet offloadable (the scheduler has not given up, grace). */
  | { kind: 'not-yet'; why: string; retryMs?: number }
  /** Unbound, but no donor would run it (origin-only volumes, privileges): the gang stays home. */
  | { kind: 'refused'; why: string }
  /** Bound to a donor's virtual node. */
  | { kind: 'on-donor'; donor: string }
  /** Bound to an origin node. */
  | { kind: 'on-origin'; node: string; asksGpu: boolean }
  | { kind: 'succeeded' }
  /** Failed or being deleted: its controller replaces it, or it is gone. */
  | { kind: 'gone' };

export interface GangMember {
  pod: V1Pod;
  state: MemberState;
  sizeLabel?: number | undefined;
}

export type GangVerdict =
  /** Nothing to place: every member still there is bound (or the gang is done). */
  | { kind: 'done' }
  | { kind: 'wait'; message: string; retryMs?: number }
  /** The gang is not offloaded; each member is told why (one Event per pod). */
  | { kind: 'keep-home'; label?: string; message: string }
  /** Place these members together, on `donors` (the donor members run on already) or any. */
  | { kind: 'place'; members: V1Pod[]; donors: string[] };

const podName = (p: V1Pod): string => p.metadata?.name ?? '';

/**
 * What the binder does for a gang of `size` pods: wait until every member that should exist
 * is there and offloadable, then place the unbound ones together on one donor. Members that
 * run on a donor already pin the rest to it; a GPU member on an origin node keeps the whole
 * gang home (a gang is never split between clusters). 0-GPU members bound at home stay there.
 */
export function gangVerdict(
  gang: string,
  size: number,
  members: readonly GangMember[],
): GangVerdict {
  const labelled = new Set(
    members.flatMap((m) => (m.sizeLabel === undefined ? [] : [m.sizeLabel])),
  );
  if (labelled.size > 1) {
    return {
      kind: 'keep-home',
      label: LABEL_GANG_SIZE,
      message: `pods of gang ${gang} disagree on ${LABEL_GANG_SIZE} (${[...labelled].sort((a, b) => a - b).join(', ')})`,
    };
  }
  const refused = members.find((m) => m.state.kind === 'refused');
  if (refused && refused.state.kind === 'refused') {
    return {
      kind: 'keep-home',
      message: `gang ${gang} is offloaded whole or not at all, and no donor would run its pod ${podName(refused.pod)}: ${refused.state.why}`,
    };
  }
  const home = members.filter((m) => m.state.kind === 'on-origin' && m.state.asksGpu);
  if (home.length > 0) {
    return {
      kind: 'keep-home',
      message: `${home.length} GPU pods of gang ${gang} run on the origin (${home.map((m) => podName(m.pod)).join(', ')}); a gang is never split between clusters`,
    };
  }
  const donors = [
    ...new Set(members.flatMap((m) => (m.state.kind === 'on-donor' ? [m.state.donor] : []))),
  ];
  if (donors.length > 1) {
    return {
      kind: 'keep-home',
      message: `pods of gang ${gang} run on several donors (${donors.sort().join(', ')}); the rest is not offloaded`,
    };
  }
  const succeeded = members.filter((m) => m.state.kind === 'succeeded').length;
  const present = members.filter((m) => m.state.kind !== 'succeeded' && m.state.kind !== 'gone');
  const unbound = present.filter((m) => ['ready', 'not-yet'].includes(m.state.kind));
  if (unbound.length === 0) return { kind: 'done' };
  // Members that finished are not created again: the gang still running is the rest.
  const needed = Math.max(0, size - succeeded);
  if (present.length < needed) {
    return {
      kind: 'wait',
      message: `waiting for ${needed - present.length} of ${size} pods of gang ${gang} (${present.length} there)`,
    };
  }
  const notYet = unbound.filter((m) => m.state.kind === 'not-yet');
  if (notYet.length > 0) {
    const retries = notYet.flatMap((m) =>
      m.state.kind === 'not-yet' && m.state.retryMs !== undefined ? [m.state.retryMs] : [],
    );
    const first = notYet[0]!.state;
    return {
      kind: 'wait',
      message: `waiting for ${notYet.length} of ${size} pods of gang ${gang} to be offloadable (${podName(notYet[0]!.pod)}: ${first.kind === 'not-yet' ? first.why : ''})`,
      ...(retries.length > 0 ? { retryMs: Math.max(...retries) } : {}),
    };
  }
  return { kind: 'place', members: unbound.map((m) => m.pod), donors };
}
