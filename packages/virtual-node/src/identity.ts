import { readFile } from 'node:fs/promises';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import {
  ErrorCode,
  LABEL_MANAGED_BY,
  MANAGED_BY_VALUE,
  SpillwayError,
  apiMessage,
  inspectCertificate,
  isNotFound,
  runInformer,
  sleep,
  type Logger,
  type ManagedInformer,
} from '@spillway/common';
import type { VirtualNodeConfig } from './config.js';

/** The cluster's broker credentials, shared with the agent that joined. */
export interface BrokerIdentity {
  clusterId: string;
  certPem: string;
  keyPem: string;
  caPem: string;
}

/** Keys of the agent's identity Secret (a kubernetes.io/tls Secret plus the broker CA). */
export const IDENTITY_SECRET_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

/**
 * How often start-up looks for the identity Secret the agent writes on joining: a join takes
 * a few seconds, and one read a second costs the API server nothing.
 */
const IDENTITY_POLL_MS = 1_000;

function decode(s: string | undefined): string {
  return s ? Buffer.from(s, 'base64').toString('utf8') : '';
}

function identityOf(certPem: string, keyPem: string, caPem: string, where: string): BrokerIdentity {
  let id;
  try {
    id = inspectCertificate(certPem).identity;
  } catch (err) {
    throw new SpillwayError(ErrorCode.CERT_INVALID, `${where}: not a certificate`, { cause: err });
  }
  if (id?.kind !== 'cluster')
    throw new SpillwayError(ErrorCode.CERT_INVALID, `${where}: not a Spillway cluster certificate`);
  return { clusterId: id.name, certPem, keyPem, caPem };
}

/** Pure: the identity in the agent's Secret, or undefined while it is incomplete. */
export function identityFromSecret(secret: V1Secret): BrokerIdentity | undefined {
  const certPem = decode(secret.data?.[IDENTITY_SECRET_KEYS.cert]);
  const keyPem = decode(secret.data?.[IDENTITY_SECRET_KEYS.key]);
  const caPem = decode(secret.data?.[IDENTITY_SECRET_KEYS.ca]);
  if (!certPem || !keyPem || !caPem) return undefined;
  return identityOf(
    certPem,
    keyPem,
    caPem,
    `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`,
  );
}

function checkCluster(cfg: VirtualNodeConfig, id: BrokerIdentity): BrokerIdentity {
  if (cfg.clusterId && cfg.clusterId !== id.clusterId)
    throw new SpillwayError(
      ErrorCode.INVALID_CONFIG,
      `--cluster-id is ${cfg.clusterId} but the broker certificate is for cluster ${id.clusterId}`,
      { field: '--cluster-id' },
    );
  return id;
}

/**
 * Reads the identity from files, or from the agent's Secret — waiting for it while the agent
 * has not joined yet, until `signal` aborts.
 */
export async function loadIdentity(
  cfg: VirtualNodeConfig,
  kc: KubeConfig,
  logger: Logger,
  signal?: AbortSignal,
): Promise<BrokerIdentity> {
  if (cfg.certFile || cfg.keyFile) {
    if (!cfg.certFile || !cfg.keyFile || !cfg.caFile)
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        '--cert-file, --key-file and --ca-file go together',
        { field: cfg.certFile ? '--key-file' : '--cert-file' },
      );
    const [cert, key, ca] = await Promise.all(
      [cfg.certFile, cfg.keyFile, cfg.caFile].map((f) => readFile(f, 'utf8')),
    );
    return checkCluster(cfg, identityOf(cert!, key!, ca!, cfg.certFile));
  }
  const core = kc.makeApiClient(CoreV1Api);
  let warned = false;
  for (;;) {
    try {
      const s = await core.readNamespacedSecret({
        name: cfg.identitySecret,
        namespace: cfg.namespace,
      });
      const id = identityFromSecret(s);
      if (id) return checkCluster(cfg, id);
    } catch (err) {
      if (!isNotFound(err)) {
        throw new SpillwayError(
          ErrorCode.UNAVAILABLE,
          `cannot read Secret ${cfg.namespace}/${cfg.identitySecret}: ${apiMessage(err)}`,
          { cause: err },
        );
      }
    }
    if (!warned) {
      logger.info(
        { secret: `${cfg.namespace}/${cfg.identitySecret}` },
        'waiting for the agent to join the broker and store the identity',
      );
      warned = true;
    }
    await sleep(IDENTITY_POLL_MS, signal);
  }
}

/**
 * Follows the identity Secret so a certificate the agent renews is used without a restart.
 * Informer on Spillway's Secrets of the namespace; the callback sees each new certificate.
 */
export function watchIdentity(
  kc: KubeConfig,
  cfg: VirtualNodeConfig,
  current: BrokerIdentity,
  onChange: (id: BrokerIdentity) => void,
  logger: Logger,
): ManagedInformer<V1Secret> | undefined {
  if (cfg.certFile) return undefined;
  const core = kc.makeApiClient(CoreV1Api);
  const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}`;
  const inf = runInformer<V1Secret>(
    kc,
    `/api/v1/namespaces/${cfg.namespace}/secrets`,
    () => core.listNamespacedSecret({ namespace: cfg.namespace, labelSelector: selector }),
    logger.child({ informer: 'identity' }),
    selector,
  );
  let cert = current.certPem;
  const onSecret = (s: V1Secret): void => {
    if (s.metadata?.name !== cfg.identitySecret) return;
    try {
      const id = identityFromSecret(s);
      if (!id || id.certPem === cert || id.clusterId !== current.clusterId) return;
      cert = id.certPem;
      logger.info('the agent renewed the broker certificate; switching to it');
      onChange(id);
    } catch (err) {
      logger.warn({ err }, 'identity Secret holds no usable certificate; keeping the current one');
    }
  };
  inf.informer.on('add', onSecret);
  inf.informer.on('update', onSecret);
  return inf;
}
