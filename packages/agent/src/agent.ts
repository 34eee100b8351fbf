import { readFile } from 'node:fs/promises';
import type { V1Toleration } from '@kubernetes/client-node';
import {
  BrokerClient,
  joinCluster,
  type ClusterStream,
  type Command__Output,
  type Peering__Output,
} from '@spillway/api';
import {
  ErrorCode,
  SpillwayError,
  guestPriority,
  inspectCertificate,
  loadKubeConfig,
  validateClusterId,
  type Logger,
} from '@spillway/common';
import type { AgentConfig } from './config.js';
import { IdentityStore, missingJoinToken, needsRenewal, type Identity } from './credentials.js';
import { Cancellations } from './executor/cancellations.js';
import { Executor } from './executor/executor.js';
import { GuestPriorityClass } from './executor/priority.js';
import { StatusReflector } from './executor/status.js';
import { TenantManager } from './executor/tenants.js';
import type { InventoryPolicy } from './inventory/compute.js';
import { InventoryReporter } from './inventory/reporter.js';

export interface RunningAgent {
  clusterId: string;
  stream: ClusterStream;
  reporter: InventoryReporter;
  stop(): Promise<void>;
}

function parseSelector(items: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf('=');
    if (i <= 0)
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `--node-selector: "${item}" is not key=value`,
        { field: '--node-selector' },
      );
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

export function parseTolerations(items: readonly string[]): V1Toleration[] {
  return items.map((item) => {
    const m = /^([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(item);
    if (!m)
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `--gpu-tolerations: "${item}" is not key[=value]:effect`,
        { field: '--gpu-tolerations' },
      );
    return m[2] === undefined
      ? { key: m[1]!, operator: 'Exists', effect: m[3]! }
      : { key: m[1]!, operator: 'Equal', value: m[2], effect: m[3]! };
  });
}

function guestPriorityOf(cfg: AgentConfig): number {
  try {
    return guestPriority(cfg.reclaim, cfg.guestPriority);
  } catch (err) {
    throw new SpillwayError(ErrorCode.INVALID_CONFIG, (err as Error).message, {
      field: '--guest-priority',
    });
  }
}

async function obtainIdentity(
  cfg: AgentConfig,
  ids: IdentityStore,
  logger: Logger,
): Promise<Identity> {
  const existing = await ids.load();
  if (existing) return existing;
  const fromSecret = cfg.joinToken ? undefined : await ids.readJoinToken(cfg.joinTokenSecret);
  const token = cfg.joinToken ?? fromSecret?.token;
  if (!token) throw missingJoinToken(cfg.namespace, cfg.joinTokenSecret);
  const caPem = cfg.caFile ? await readFile(cfg.caFile, 'utf8') : fromSecret?.caPem;
  if (!caPem) {
    throw new SpillwayError(
      ErrorCode.INVALID_CONFIG,
      `the broker CA is needed to join: pass --ca-file or put ca.crt in Secret ${cfg.namespace}/${cfg.joinTokenSecret}`,
      { field: '--ca-file' },
    );
  }
  logger.info({ broker: cfg.brokerAddress }, 'joining the broker');
  const joined = await joinCluster({
    brokerAddress: cfg.brokerAddress,
    caPem,
    token,
    ...(cfg.brokerServerName ? { serverName: cfg.brokerServerName } : {}),
  });
  const id: Identity = {
    clusterId: validateClusterId(joined.clusterId),
    keyPem: joined.keyPem,
    certPem: joined.certPem,
    caPem: joined.caPem,
    notAfter: inspectCertificate(joined.certPem).notAfter,
  };
  await ids.save(id);
  // The token is single-use and spent: keep no copy of it.
  await ids.deleteJoinToken(cfg.joinTokenSecret).catch(() => undefined);
  logger.info({ clusterId: id.clusterId }, 'joined');
  return id;
}

/** Starts the agent: identity, informers, executor, and the stream to the broker. */
export async function startAgent(cfg: AgentConfig, rootLogger: Logger): Promise<RunningAgent> {
  // Bad policy stops the agent before it spends its join token.
  const priority = guestPriorityOf(cfg);
  const kc = loadKubeConfig({
    ...(cfg.kubeconfig ? { kubeconfig: cfg.kubeconfig } : {}),
    ...(cfg.context ? { context: cfg.context } : {}),
  });
  const ids = new IdentityStore(
    kc,
    cfg.namespace,
    cfg.identitySecret,
    rootLogger.child({ component: 'identity' }),
  );
  const identity = await obtainIdentity(cfg, ids, rootLogger);
  const logger = rootLogger.child({ cluster: identity.clusterId });
  const policy: InventoryPolicy = {
    gpuResources: cfg.gpuResources,
    nodeSelector: parseSelector(cfg.nodeSelector),
    reservedGpusPerNode: cfg.reservedGpusPerNode,
    reclaimHoldMs: cfg.reclaimHold,
  };
  const guestClass = new GuestPriorityClass(
    kc,
    {
      reclaim: cfg.reclaim,
      priorityClassName: cfg.guestPriorityClass,
      priority,
      maxGracePeriodSeconds: Math.floor(cfg.maxGuestGracePeriod / 1000),
    },
    logger.child({ component: 'priority' }),
  );
  const gpuTolerations = parseTolerations(cfg.gpuTolerations);

  const client = new BrokerClient({
    address: cfg.brokerAddress,
    caPem: identity.caPem,
    certPem: identity.certPem,
    keyPem: identity.keyPem,
    logger: logger.child({ component: 'broker-client' }),
    ...(cfg.brokerServerName ? { serverName: cfg.brokerServerName } : {}),
  });
  const tenants = new TenantManager(
    kc,
    cfg.gpuResources,
    logger.child({ component: 'tenants' }),
    cfg.tenantClusterRole
      ? {
          clusterRole: cfg.tenantClusterRole,
          serviceAccount: { namespace: cfg.namespace, name: cfg.serviceAccountName },
        }
      : undefined,
  );
  const statusRef: { status?: StatusReflector } = {};
  const executor = new Executor({
    kc,
    tenants,
    logger: logger.child({ component: 'executor' }),
    policy: {
      allowedCapabilities: cfg.allowedCapabilities,
      allowServiceAccountToken: cfg.allowServiceAccountToken,
    },
    gpuResources: cfg.gpuResources,
    gpuTolerations,
    guestPriority: guestClass,
    offloadedPods: () => statusRef.status?.cache(),
  });

  const holder: { stream?: ClusterStream } = {};
  const send: ClusterStream['send'] = (msg) => holder.stream?.send(msg) ?? false;
  const reporter = new InventoryReporter({
    kc,
    policy,
    logger: logger.child({ component: 'inventory' }),
    send: (report) => send({ capacity: report }),
    debounceMs: cfg.reportDebounce,
  });
  const status = new StatusReflector({
    kc,
    clusterId: identity.clusterId,
    logger: logger.child({ component: 'status' }),
    sendStatus: (e) => send({ pod_status: e }),
    sendEvent: (e) => send({ pod_event: e }),
  });
  statusRef.status = status;
  // Caches first: the first snapshot the broker sees must be complete.
  await Promise.all([reporter.start(), status.start()]);

  // Peering changes are applied in order, coalesced. A command waits only until its own
  // origin's tenant namespace is written as the latest state wants it, so a pod is never
  // created before its tenant namespace, and never waits behind other tenants' writes.
  let peeringSync: Promise<void> = Promise.resolve();
  const onPeerings = (asDonor: Peering__Output[]): void => {
    peeringSync = tenants
      .sync(asDonor)
      .catch((err: unknown) => logger.error({ err }, 'tenant namespace sync failed'));
  };
  const streaming = new Cancellations();
  const onCommand = (cmd: Command__Output): void => {
    if (cmd.op === 'cancel_request_id') {
      // Its caller went away (kubectl, the shim or a broker replica): stop it on the donor.
      const id = cmd.cancel_request_id ?? '';
      if (streaming.cancel(id, 'cancelled by the broker'))
        logger.info({ requestId: id }, 'streaming command cancelled');
      return;
    }
    const signal = cmd.op === 'logs' ? streaming.begin(cmd.request_id) : undefined;
    void tenants
      .whenReady(cmd.origin_cluster)
      .then(() => executor.handle(cmd, (chunk) => send({ log_chunk: chunk }), signal))
      .then((result) => {
        if (result) send({ command_result: result });
      })
      .finally(() => {
        if (signal) streaming.done(cmd.request_id, signal);
      });
  };

  const stream = client.connect('agent', {
    // Patterns (nvidia.com/mig-*) stay local; the broker learns concrete names from reports.
    hello: { version: '0.1.0', gpu_resources: cfg.gpuResources.filter((r) => !r.includes('*')) },
    onConnected: (s) => {
      s.send({ capacity: reporter.snapshot() });
      status.resendAll();
      logger.info('connected to the broker; sent inventory snapshot');
    },
    onDisconnected: (err) => {
      // Whatever this stream asked for has nobody left to read it: the replies of a new
      // stream would go to a request id no replica waits on.
      const ended = streaming.endAll('the broker stream that asked for it ended');
      logger.warn(
        { err: err?.message, streamingCancelled: ended },
        'disconnected from the broker; running pods are untouched',
      );
    },
    onPeerings: (state) => onPeerings(state.as_donor),
    onCommand,
  });
  holder.stream = stream;

  const renewTimer = setInterval(() => {
    void (async () => {
      const current = await ids.load();
      if (!current || !needsRenewal(current.certPem)) return;
      const renewed = await client.renew();
      await ids.save({
        clusterId: current.clusterId,
        ...renewed,
        notAfter: new Date(renewed.notAfter),
      });
      logger.info({ notAfter: renewed.notAfter }, 'renewed broker certificate');
    })().catch((err: unknown) => logger.warn({ err }, 'certificate renewal failed; will retry'));
  }, cfg.renewCheckInterval);
  renewTimer.unref();

  return {
    clusterId: identity.clusterId,
    stream,
    reporter,
    stop: async () => {
      clearInterval(renewTimer);
      await client.close();
      await Promise.all([reporter.stop(), status.stop()]);
      await peeringSync;
    },
  };
}
