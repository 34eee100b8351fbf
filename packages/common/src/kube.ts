import {
  KubeConfig,
  ListWatch,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type Informer,
  type KubernetesObject,
  type ListPromise,
  type ObjectCache,
} from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { ErrorCode, SpillwayError } from './errors.js';
import { Backoff } from './retry.js';

export interface KubeConfigOptions {
  /** Path to a kubeconfig; in-cluster config when absent and running in a pod. */
  kubeconfig?: string;
  context?: string;
}

/** Dispatchers kept per KubeConfig; more than one only while credentials rotate. */
const MAX_DISPATCHERS = 4;

type CreateDispatcher = (cluster: unknown, agentOptions: unknown) => unknown;

function tlsKey(connect: unknown): string {
  const json = JSON.stringify(connect, (_k, v: unknown) => {
    if (Buffer.isBuffer(v)) return `buf:${v.toString('base64')}`;
    // JSON.stringify turns a Buffer into {type:'Buffer', data} before the replacer sees it.
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer')
      return `buf:${Buffer.from((v as { data: number[] }).data).toString('base64')}`;
    return v;
  });
  return createHash('sha256').update(json).digest('hex');
}

/**
 * Makes every API call of this KubeConfig share one connection pool. client-node 2.x builds a
 * new undici Agent for each request, so each call opened its own TLS connection (a handshake
 * and a new SecureContext per call) and left it open until its keep-alive ran out: slow, and
 * hundreds of MiB of native memory under load. The Agent is now built once per set of TLS
 * options (a rotated client certificate gets its own) and reused. When client-node changes
 * the method this relies on, nothing is patched and calls go on as before.
 */
export function poolConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as {
    createDispatcher?: CreateDispatcher;
    createDispatcherOptions?: (c: unknown, o: unknown) => { type: string; connect?: unknown };
  };
  const original = target.createDispatcher;
  if (typeof original !== 'function' || typeof target.createDispatcherOptions !== 'function')
    return kc;
  const pool = new Map<string, unknown>();
  target.createDispatcher = function (cluster: unknown, agentOptions: unknown): unknown {
    const o = target.createDispatcherOptions!.call(kc, cluster, agentOptions);
    if (o.type !== 'agent') return original.call(kc, cluster, agentOptions);
    const key = tlsKey(o.connect);
    let d = pool.get(key);
    if (d === undefined) {
      d = original.call(kc, cluster, agentOptions);
      pool.set(key, d);
      if (pool.size > MAX_DISPATCHERS) {
        const [oldKey, old] = pool.entries().next().value as [string, unknown];
        pool.delete(oldKey);
        // In-flight requests on it finish; it just takes no new ones.
        void (old as { close?: () => Promise<void> }).close?.().catch(() => undefined);
      }
    }
    return d;
  };
  return kc;
}

export function loadKubeConfig(opts: KubeConfigOptions = {}): KubeConfig {
  const kc = poolConnections(new KubeConfig());
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new SpillwayError(
      ErrorCode.INVALID_CONFIG,
      `cannot read kubeconfig ${opts.kubeconfig ?? '(default)'}: ${(err as Error).message}`,
      {
        field: '--kubeconfig',
        cause: err,
      },
    );
  }
  if (opts.context) {
    if (!kc.getContexts().some((c) => c.name === opts.context)) {
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `context "${opts.context}" is not in the kubeconfig`,
        { field: '--context' },
      );
    }
    kc.setCurrentContext(opts.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new SpillwayError(ErrorCode.INVALID_CONFIG, 'the kubeconfig has no current cluster', {
      field: '--kubeconfig',
    });
  }
  return kc;
}

/** HTTP status of a Kubernetes API error, if it is one. */
export function apiStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } };
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.response?.statusCode === 'number') return e.response.statusCode;
  return undefined;
}

export const isNotFound = (err: unknown): boolean => apiStatus(err) === 404;
export const isConflict = (err: unknown): boolean => apiStatus(err) === 409;
export const isAlreadyExists = isConflict;

/** Options for client-node patch calls sending a JSON merge patch. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
export const STRATEGIC_MERGE_PATCH = setHeaderOptions(
  'Content-Type',
  PatchStrategy.StrategicMergePatch,
);

/** A short message from a Kubernetes API error, for logs and Events. */
export function apiMessage(err: unknown): string {
  const e = err as { body?: unknown; message?: string };
  if (typeof e?.body === 'string') {
    try {
      const parsed = JSON.parse(e.body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      return e.body.slice(0, 300);
    }
  }
  if (e?.body && typeof e.body === 'object' && 'message' in e.body) return String(e.body.message);
  return e?.message ?? String(err);
}

export interface ManagedInformer<T extends KubernetesObject> {
  informer: Informer<T> & ObjectCache<T>;
  /** Resolves once the first list has been loaded into the cache. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

/** Removes metadata.managedFields (in place): no controller reads it, and it is often half an object. */
export function stripManagedFields<T extends KubernetesObject>(obj: T): T {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
  return obj;
}

export interface InformerOptions<T extends KubernetesObject> {
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Applied to every listed and watched object before it is cached and handed to the
   * handlers, e.g. to drop what nobody reads (see stripManagedFields). It may change the
   * object in place but must keep metadata.name, namespace and resourceVersion.
   */
  transform?: (obj: T) => T;
}

/** A Watch whose objects pass through `transform` first (ERROR and BOOKMARK are left alone). */
function transformingWatch<T extends KubernetesObject>(
  kc: KubeConfig,
  transform: (obj: T) => T,
): Watch {
  const inner = new Watch(kc);
  const wrapped: Pick<Watch, 'watch'> = {
    watch: (path, params, callback, done) =>
      inner.watch(
        path,
        params,
        (phase, obj, raw) =>
          callback(
            phase,
            phase === 'ERROR' || phase === 'BOOKMARK' || !obj ? obj : transform(obj as T),
            raw,
          ),
        done,
      ),
  };
  return wrapped as Watch;
}

/** A watch that ran this long before it failed was healthy: its back-off starts afresh. */
const HEALTHY_WATCH_MS = 60_000;

/**
 * An informer that keeps itself running: client-node's informer lists, watches and
 * handles 410 resyncs; on a watch error it stops, so restart it with backoff. The last
 * argument is a label selector or the options (selectors and a transform of cached objects).
 */
export function runInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  list: ListPromise<T>,
  logger: Logger,
  labelSelectorOrOptions?: string | InformerOptions<T>,
): ManagedInformer<T> {
  const opts: InformerOptions<T> =
    typeof labelSelectorOrOptions === 'string'
      ? { labelSelector: labelSelectorOrOptions }
      : (labelSelectorOrOptions ?? {});
  const { transform } = opts;
  const listFn: ListPromise<T> = transform
    ? async () => {
        const l = await list();
        l.items = l.items.map(transform);
        return l;
      }
    : list;
  const informer = new ListWatch<T>(
    path,
    transform ? transformingWatch(kc, transform) : new Watch(kc),
    listFn,
    false,
    opts.labelSelector,
    opts.fieldSelector,
  );
  const backoff = new Backoff({ baseMs: 200, maxMs: 10_000 });
  let restartedAt = 0;
  let stopped = false;
  let isSynced = false;
  let failedDuringStart: unknown;
  let timer: NodeJS.Timeout | undefined;
  // client-node reports a failed list or watch through 'error' and then stops; start()
  // itself resolves either way. Before the first sync the loop below retries; after it,
  // restart here with backoff.
  informer.on('error', (err: unknown) => {
    if (stopped) return;
    if (!isSynced) {
      failedDuringStart = err;
      return;
    }
    // A watch that ran for a while before failing starts its back-off afresh; one that
    // fails again straight after a restart waits longer each time. ('connect' fires at the
    // start of every attempt, successful or not, so it cannot tell the two apart.)
    if (Date.now() - restartedAt > HEALTHY_WATCH_MS) backoff.reset();
    const delay = backoff.next();
    logger.warn({ err: apiMessage(err), path, delayMs: delay }, 'watch failed; restarting');
    timer = setTimeout(() => {
      restartedAt = Date.now();
      if (!stopped) informer.start().catch(() => undefined);
    }, delay);
  });
  const synced = (async () => {
    const b = new Backoff({ baseMs: 200, maxMs: 5_000 });
    while (!stopped) {
      failedDuringStart = undefined;
      try {
        await informer.start();
      } catch (err) {
        failedDuringStart = err;
      }
      if (failedDuringStart === undefined) {
        isSynced = true;
        return;
      }
      logger.warn({ err: apiMessage(failedDuringStart), path }, 'initial list failed; retrying');
      await informer.stop().catch(() => undefined);
      await new Promise((r) => setTimeout(r, b.next()));
    }
  })();
  return {
    informer,
    synced,
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await informer.stop();
    },
  };
}
