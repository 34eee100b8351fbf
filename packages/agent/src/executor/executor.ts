import {
  CoreV1Api,
  type KubeConfig,
  type V1ConfigMap,
  type V1Pod,
  type V1Secret,
  type V1Toleration,
} from '@kubernetes/client-node';
import type {
  Command__Output,
  CommandResult,
  CreatePodRequest__Output,
  DeletePodRequest__Output,
  LogChunk,
  LogsRequest__Output,
  OffloadSync__Output,
  RemotePod,
} from '@spillway/api';
import {
  ErrorCode,
  invalid,
  LABEL_ORIGIN_CLUSTER,
  LABEL_ORIGIN_UID,
  LABEL_REFLECTED,
  SpillwayError,
  apiMessage,
  apiStatus,
  grpcStatusOf,
  isAlreadyExists,
  isNotFound,
  podReferences,
  podRequests,
  toSpillwayError,
  type Logger,
} from '@spillway/common';
import {
  originOf,
  reflectConfigMap,
  reflectSecret,
  reflectedName,
  remotePodName,
  translatePod,
} from '../forge/pod.js';
import { assertPodAllowed, type DonorPodPolicy } from '../forge/policy.js';
import { openDonorLog } from './donor-log.js';
import type { GuestPriorityClass } from './priority.js';
import type { TenantManager } from './tenants.js';

export interface ExecutorOptions {
  kc: KubeConfig;
  tenants: TenantManager;
  logger: Logger;
  policy: DonorPodPolicy;
  gpuResources: readonly string[];
  /** Tolerations added so offloaded pods land on this cluster's tainted GPU nodes. */
  gpuTolerations: readonly V1Toleration[];
  /**
   * The guests' PriorityClass (the donor's reclaim policy): installed before the first pod
   * and set on every pod. Without it pods run at the donor's default priority.
   */
  guestPriority?: GuestPriorityClass;
  /** Largest accepted object in a command, bytes. */
  maxObjectBytes?: number;
  /**
   * The agent's cache of the pods it created (the status reflector's informer), once synced:
   * answers "does this origin pod's copy exist" without a List call on the hot path. A pod
   * the cache does not (yet) show is looked up in the API server as before.
   */
  offloadedPods?: () => OffloadedPodCache | undefined;
}

/** Read access to a cache of offloaded pods. */
export interface OffloadedPodCache {
  get(name: string, namespace?: string): V1Pod | undefined;
  list(namespace?: string): readonly V1Pod[];
}

function parseObject<T>(json: string, field: string, kind: string, max: number): T {
  if (json.length > max) throw invalid(field, `${kind} is larger than ${max} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw invalid(field, 'not valid JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw invalid(field, `expected a ${kind} object`);
  const o = v as { kind?: unknown; metadata?: { name?: unknown } };
  if (o.kind !== undefined && o.kind !== kind)
    throw invalid(field, `expected kind ${kind}, got ${JSON.stringify(o.kind)}`);
  if (typeof o.metadata?.name !== 'string' || o.metadata.name === '')
    throw invalid(field, 'metadata.name is required');
  return v as T;
}

/**
 * The donor side of offloading: runs the narrow set of operations an origin may ask for,
 * inside that origin's tenant namespace only.
 */
export class Executor {
  private readonly core: CoreV1Api;
  private readonly maxObjectBytes: number;

  constructor(private readonly opts: ExecutorOptions) {
    this.core = opts.kc.makeApiClient(CoreV1Api);
    this.maxObjectBytes = opts.maxObjectBytes ?? 1024 * 1024;
  }

  /** Runs one command and returns its result; never throws. */
  async handle(
    cmd: Command__Output,
    sendChunk: (chunk: LogChunk) => void,
    signal?: AbortSignal,
  ): Promise<CommandResult | undefined> {
    const base = { request_id: cmd.request_id };
    try {
      switch (cmd.op) {
        case 'create_pod':
          return {
            ...base,
            code: 0,
            create_pod: await this.createPod(cmd.origin_cluster, cmd.create_pod!),
          };
        case 'delete_pod':
          return {
            ...base,
            code: 0,
            delete_pod: await this.deletePod(cmd.origin_cluster, cmd.delete_pod!),
          };
        case 'list_pods':
          return { ...base, code: 0, list_pods: { pods: await this.listPods(cmd.origin_cluster) } };
        case 'offload_sync':
          await this.offloadSync(cmd.origin_cluster, cmd.offload_sync!);
          return { ...base, code: 0 };
        case 'logs':
          // Logs answer with LogChunks (the last one has eof), not a CommandResult.
          await this.streamLogs(cmd.origin_cluster, cmd.request_id, cmd.logs!, sendChunk, signal);
          return undefined;
        default:
          throw invalid('op', `unknown command ${String(cmd.op)}`);
      }
    } catch (err) {
      const e = toKubeAwareError(err);
      if (e.code === ErrorCode.INTERNAL)
        this.opts.logger.error({ err, requestId: cmd.request_id, op: cmd.op }, 'command failed');
      else
        this.opts.logger.info(
          { code: e.code, reason: e.message, op: cmd.op, origin: cmd.origin_cluster },
          'command refused',
        );
      if (cmd.op === 'logs') {
        sendChunk({ request_id: cmd.request_id, eof: true, error: e.message });
        return undefined;
      }
      return { ...base, code: grpcStatusOf(e), message: e.message, reason: e.code };
    }
  }

  private tenantFor(origin: string): string {
    const t = this.opts.tenants.get(origin);
    if (!t)
      throw new SpillwayError(
        ErrorCode.NO_PEERING,
        `origin ${origin} is not peered with this donor`,
      );
    return t.namespace;
  }

  async createPod(
    origin: string,
    req: CreatePodRequest__Output,
  ): Promise<{ remote_namespace: string; remote_name: string; already_existed: boolean }> {
    const ref = req.pod;
    if (!ref?.uid || !ref.name || !ref.namespace)
      throw invalid('pod', 'namespace, name and uid are required');
    if (ref.origin_cluster !== origin)
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `pod.origin_cluster ${ref.origin_cluster} is not the caller ${origin}`,
        { field: 'pod.origin_cluster' },
      );
    const tenant = this.opts.tenants.get(origin);
    if (!tenant)
      throw new SpillwayError(
        ErrorCode.NO_PEERING,
        `origin ${origin} is not peered with this donor`,
      );
    if (tenant.draining)
      throw new SpillwayError(
        ErrorCode.NO_PEERING,
        `the peering of ${origin} with this donor is being removed`,
      );
    const pod = parseObject<V1Pod>(req.pod_json, 'pod_json', 'Pod', this.maxObjectBytes);
    const cms = req.config_maps_json.map((j, i) =>
      parseObject<V1ConfigMap>(j, `config_maps_json[${i}]`, 'ConfigMap', this.maxObjectBytes),
    );
    const secrets = req.secrets_json.map((j, i) =>
      parseObject<V1Secret>(j, `secrets_json[${i}]`, 'Secret', this.maxObjectBytes),
    );
    const sent = {
      configMaps: cms.map((c) => c.metadata!.name!),
      secrets: secrets.map((s) => s.metadata!.name!),
    };
    assertPodAllowed(pod, sent, this.opts.policy);
    const id = { originCluster: origin, namespace: ref.namespace, name: ref.name, uid: ref.uid };
    const remote = translatePod(pod, id, {
      tenantNamespace: tenant.namespace,
      ...(req.node_name ? { node: req.node_name } : {}),
      ...(req.reservation_id ? { reservationId: req.reservation_id } : {}),
      gpuTolerations: this.opts.gpuTolerations,
      allowServiceAccountToken: this.opts.policy.allowServiceAccountToken,
      ...(this.opts.guestPriority
        ? {
            priorityClassName: this.opts.guestPriority.policy.priorityClassName,
            maxGracePeriodSeconds: this.opts.guestPriority.policy.maxGracePeriodSeconds,
          }
        : {}),
    });
    // The copy's name follows from the origin pod's uid: a copy the cache does not show yet
    // is caught by AlreadyExists below.
    const existing = this.cached(tenant.namespace, remote.metadata!.name!, ref.uid);
    if (existing) {
      return {
        remote_namespace: tenant.namespace,
        remote_name: existing.metadata!.name!,
        already_existed: true,
      };
    }
    if (tenant.maxGpus > 0) {
      const want = Object.values(podRequests(pod, this.opts.gpuResources).gpus).reduce(
        (a, b) => a + b,
        0,
      );
      const used = await this.gpusInUse(tenant.namespace);
      if (used + want > tenant.maxGpus) {
        throw new SpillwayError(
          ErrorCode.QUOTA_EXCEEDED,
          `origin ${origin} would use ${used + want} GPUs here; its peering allows ${tenant.maxGpus}`,
        );
      }
    }
    // Reflected objects go first so the pod never starts without them.
    for (const cm of cms)
      await this.upsertConfigMap(
        reflectConfigMap(
          { ...cm, metadata: { ...cm.metadata, namespace: ref.namespace } },
          origin,
          tenant.namespace,
        ),
      );
    for (const s of secrets)
      await this.upsertSecret(
        reflectSecret(
          { ...s, metadata: { ...s.metadata, namespace: ref.namespace } },
          origin,
          tenant.namespace,
        ),
      );
    try {
      await this.createGuest(tenant.namespace, remote);
    } catch (err) {
      if (isAlreadyExists(err))
        return {
          remote_namespace: tenant.namespace,
          remote_name: remote.metadata!.name!,
          already_existed: true,
        };
      throw err;
    }
    this.opts.logger.info(
      {
        origin,
        pod: `${ref.namespace}/${ref.name}`,
        remote: `${tenant.namespace}/${remote.metadata!.name!}`,
        node: req.node_name,
      },
      'created offloaded pod',
    );
    return {
      remote_namespace: tenant.namespace,
      remote_name: remote.metadata!.name!,
      already_existed: false,
    };
  }

  /**
   * Creates the pod at the guests' priority. A PriorityClass someone deleted makes the API
   * server refuse the pod: the class is installed again and the create tried once more.
   */
  private async createGuest(namespace: string, body: V1Pod): Promise<void> {
    const prio = this.opts.guestPriority;
    await prio?.ensure();
    try {
      await this.core.createNamespacedPod({ namespace, body });
    } catch (err) {
      if (!prio || apiStatus(err) !== 403 || !/PriorityClass/i.test(apiMessage(err))) throw err;
      prio.invalidate();
      await prio.ensure();
      await this.core.createNamespacedPod({ namespace, body });
    }
  }

  private async gpusInUse(namespace: string): Promise<number> {
    // The ResourceQuota is the hard limit; this check only gives the origin a clear reason.
    const cache = this.opts.offloadedPods?.();
    const items = cache
      ? cache.list(namespace)
      : (await this.core.listNamespacedPod({ namespace })).items;
    let n = 0;
    for (const p of items) {
      if (
        p.status?.phase === 'Succeeded' ||
        p.status?.phase === 'Failed' ||
        p.metadata?.deletionTimestamp
      )
        continue;
      n += Object.values(podRequests(p, this.opts.gpuResources).gpus).reduce((a, b) => a + b, 0);
    }
    return n;
  }

  private async upsertConfigMap(cm: V1ConfigMap): Promise<void> {
    const ns = cm.metadata!.namespace!;
    try {
      await this.core.createNamespacedConfigMap({ namespace: ns, body: cm });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await this.core.replaceNamespacedConfigMap({
        name: cm.metadata!.name!,
        namespace: ns,
        body: cm,
      });
    }
  }

  private async upsertSecret(s: V1Secret): Promise<void> {
    const ns = s.metadata!.namespace!;
    try {
      await this.core.createNamespacedSecret({ namespace: ns, body: s });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await this.core.replaceNamespacedSecret({ name: s.metadata!.name!, namespace: ns, body: s });
    }
  }

  /** The copy of an origin pod in the cache, when the cache has it under its usual name. */
  private cached(namespace: string, name: string, originUid: string): V1Pod | undefined {
    const p = this.opts.offloadedPods?.()?.get(name, namespace);
    return p?.metadata?.labels?.[LABEL_ORIGIN_UID] === originUid ? p : undefined;
  }

  /** The copy of an origin pod: from the cache if it has it, else from the API server. */
  private async findOrigin(
    namespace: string,
    origin: string,
    ref: { namespace?: string; name?: string; uid?: string } | null | undefined,
  ): Promise<V1Pod | undefined> {
    const uid = ref?.uid ?? '';
    if (ref?.name && ref.namespace) {
      const name = remotePodName({
        originCluster: origin,
        namespace: ref.namespace,
        name: ref.name,
        uid,
      });
      const hit = this.cached(namespace, name, uid);
      if (hit) return hit;
    }
    return this.findPod(namespace, uid);
  }

  private async findPod(namespace: string, originUid: string): Promise<V1Pod | undefined> {
    const list = await this.core.listNamespacedPod({
      namespace,
      labelSelector: `${LABEL_ORIGIN_UID}=${originUid}`,
    });
    return list.items[0];
  }

  async deletePod(origin: string, req: DeletePodRequest__Output): Promise<{ not_found: boolean }> {
    const uid = req.pod?.uid;
    if (!uid) throw invalid('pod.uid', 'is required');
    const ns = this.tenantFor(origin);
    const pod = await this.findOrigin(ns, origin, req.pod);
    if (!pod) {
      await this.collectReflected(ns);
      return { not_found: true };
    }
    const grace = Number(req.grace_period_seconds);
    try {
      await this.core.deleteNamespacedPod({
        name: pod.metadata!.name!,
        namespace: ns,
        ...(Number.isFinite(grace) && grace >= 0 ? { gracePeriodSeconds: grace } : {}),
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.opts.logger.info(
      { origin, remote: `${ns}/${pod.metadata!.name!}` },
      'deleted offloaded pod',
    );
    await this.collectReflected(ns);
    return { not_found: false };
  }

  /** Removes reflected ConfigMaps/Secrets that no live pod of the tenant references. */
  async collectReflected(namespace: string): Promise<void> {
    const pods = (await this.core.listNamespacedPod({ namespace })).items.filter(
      (p) => !p.metadata?.deletionTimestamp,
    );
    const cms = new Set<string>();
    const secrets = new Set<string>();
    for (const p of pods) {
      const r = podReferences(p);
      r.configMaps.forEach((c) => cms.add(c.name));
      r.secrets.forEach((s) => secrets.add(s.name));
    }
    const sel = { namespace, labelSelector: `${LABEL_REFLECTED}=true` };
    for (const cm of (await this.core.listNamespacedConfigMap(sel)).items) {
      if (!cms.has(cm.metadata!.name!))
        await this.core
          .deleteNamespacedConfigMap({ name: cm.metadata!.name!, namespace })
          .catch(ignoreNotFound);
    }
    for (const s of (await this.core.listNamespacedSecret(sel)).items) {
      if (!secrets.has(s.metadata!.name!))
        await this.core
          .deleteNamespacedSecret({ name: s.metadata!.name!, namespace })
          .catch(ignoreNotFound);
    }
  }

  async listPods(origin: string): Promise<RemotePod[]> {
    const ns = this.tenantFor(origin);
    const list = await this.core.listNamespacedPod({
      namespace: ns,
      labelSelector: `${LABEL_ORIGIN_CLUSTER}=${origin}`,
    });
    const out: RemotePod[] = [];
    for (const p of list.items) {
      const id = originOf(p);
      if (!id) continue;
      out.push({
        pod: {
          origin_cluster: id.originCluster,
          namespace: id.namespace,
          name: id.name,
          uid: id.uid,
        },
        remote_namespace: ns,
        remote_name: p.metadata!.name!,
        node_name: p.spec?.nodeName ?? '',
        status_json: JSON.stringify(p.status ?? {}),
      });
    }
    return out;
  }

  /** Deletes this origin's pods that it no longer wants (created before the sync's cut-off). */
  async offloadSync(origin: string, sync: OffloadSync__Output): Promise<number> {
    const ns = this.tenantFor(origin);
    const wanted = new Set(sync.pods.map((p) => p.uid));
    const asOf = Number(sync.as_of_unix_ms);
    const list = await this.core.listNamespacedPod({
      namespace: ns,
      labelSelector: `${LABEL_ORIGIN_CLUSTER}=${origin}`,
    });
    let deleted = 0;
    for (const p of list.items) {
      const uid = p.metadata?.labels?.[LABEL_ORIGIN_UID];
      const created = p.metadata?.creationTimestamp
        ? new Date(p.metadata.creationTimestamp).getTime()
        : 0;
      if (!uid || wanted.has(uid) || p.metadata?.deletionTimestamp) continue;
      // A pod created after the origin took its inventory may be one it is creating now.
      if (!(created < asOf)) continue;
      await this.core
        .deleteNamespacedPod({ name: p.metadata!.name!, namespace: ns })
        .catch(ignoreNotFound);
      deleted++;
      this.opts.logger.info(
        { origin, remote: `${ns}/${p.metadata!.name!}` },
        'deleted pod its origin no longer wants',
      );
    }
    if (deleted > 0) await this.collectReflected(ns);
    return deleted;
  }

  /**
   * Streams the donor pod's log as LogChunks until the log ends (then one eof chunk) or
   * `signal` aborts (the broker cancelled it, or the stream that asked ended): then the
   * donor request is closed and nothing more is sent.
   */
  async streamLogs(
    origin: string,
    requestId: string,
    req: LogsRequest__Output,
    send: (c: LogChunk) => void,
    signal: AbortSignal = new AbortController().signal,
  ): Promise<void> {
    const ns = this.tenantFor(origin);
    const uid = req.pod?.uid;
    if (!uid) throw invalid('pod.uid', 'is required');
    const pod = await this.findOrigin(ns, origin, req.pod);
    if (!pod)
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `no remote pod for ${req.pod?.namespace ?? ''}/${req.pod?.name ?? ''}`,
      );
    const container = req.container || pod.spec?.containers[0]?.name || '';
    const remote = `${ns}/${pod.metadata!.name!}`;
    const started = Date.now();
    let bytes = 0;
    const ended = (how: string): void =>
      this.opts.logger.info(
        {
          requestId,
          origin,
          remote,
          container,
          follow: req.follow,
          how,
          bytes,
          ms: Date.now() - started,
        },
        'log stream ended',
      );
    const cancelled = (): void =>
      ended(signal.reason instanceof Error ? signal.reason.message : 'cancelled');
    if (signal.aborted) {
      cancelled();
      return;
    }
    try {
      const body = await openDonorLog(
        this.opts.kc,
        ns,
        pod.metadata!.name!,
        container,
        {
          follow: req.follow,
          previous: req.previous,
          timestamps: req.timestamps,
          tailLines: Math.max(0, Number(req.tail_lines) || 0),
          sinceSeconds: Math.max(0, Number(req.since_seconds) || 0),
        },
        signal,
      );
      for await (const chunk of body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        send({ request_id: requestId, data: chunk });
      }
    } catch (err) {
      if (signal.aborted) {
        cancelled();
        return;
      }
      throw toKubeAwareError(err);
    }
    ended('eof');
    send({ request_id: requestId, eof: true });
  }
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}

/** Kubernetes API refusals become Spillway errors an origin can read. */
/** Connection-level failures (no HTTP status): the donor's API server could not be reached. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EPIPE',
  'EAI_AGAIN',
]);

function unreachable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('UND_ERR_'))) {
      return true;
    }
    if (e.message === 'fetch failed') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export function toKubeAwareError(err: unknown): SpillwayError {
  const status = apiStatus(err);
  if (err instanceof SpillwayError) return err;
  if (status === undefined && unreachable(err)) {
    return new SpillwayError(
      ErrorCode.UNAVAILABLE,
      `donor API server unreachable: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (status === undefined) return toSpillwayError(err);
  const msg = apiMessage(err);
  if (status === 403 && /exceeded quota/i.test(msg))
    return new SpillwayError(ErrorCode.QUOTA_EXCEEDED, msg, { cause: err });
  if (status === 403) return new SpillwayError(ErrorCode.POD_REFUSED, msg, { cause: err });
  if (status === 404) return new SpillwayError(ErrorCode.NOT_FOUND, msg, { cause: err });
  if (status === 409) return new SpillwayError(ErrorCode.CONFLICT, msg, { cause: err });
  if (status === 422 || status === 400)
    return new SpillwayError(ErrorCode.POD_REFUSED, msg, { cause: err });
  return new SpillwayError(ErrorCode.UNAVAILABLE, `donor API server: ${msg}`, { cause: err });
}

export { reflectedName };
