import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import {
  ErrorCode,
  SpillwayError,
  inspectCertificate,
  isAlreadyExists,
  isNotFound,
  type Logger,
} from '@spillway/common';

/** A cluster's broker identity: its own key, the certificate the broker issued, the CA. */
export interface Identity {
  clusterId: string;
  keyPem: string;
  certPem: string;
  caPem: string;
  notAfter: Date;
}

export const IDENTITY_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string =>
  s ? Buffer.from(s, 'base64').toString('utf8') : '';

/** Pure: the Secret that stores an identity. */
export function identitySecret(name: string, namespace: string, id: Identity): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name,
      namespace,
      labels: { 'app.kubernetes.io/managed-by': 'spillway' },
      annotations: { 'spillway.io/cluster-id': id.clusterId },
    },
    data: {
      [IDENTITY_KEYS.cert]: b64(id.certPem),
      [IDENTITY_KEYS.key]: b64(id.keyPem),
      [IDENTITY_KEYS.ca]: b64(id.caPem),
    },
  };
}

export function identityFromSecret(secret: V1Secret): Identity | undefined {
  const certPem = unb64(secret.data?.[IDENTITY_KEYS.cert]);
  const keyPem = unb64(secret.data?.[IDENTITY_KEYS.key]);
  const caPem = unb64(secret.data?.[IDENTITY_KEYS.ca]);
  if (!certPem || !keyPem || !caPem) return undefined;
  const info = inspectCertificate(certPem);
  if (info.identity?.kind !== 'cluster') return undefined;
  return { clusterId: info.identity.name, certPem, keyPem, caPem, notAfter: info.notAfter };
}

/** Renew when less than a third of the certificate's lifetime is left. */
export function needsRenewal(certPem: string, now = new Date()): boolean {
  const info = inspectCertificate(certPem);
  const life = info.notAfter.getTime() - info.notBefore.getTime();
  return info.notAfter.getTime() - now.getTime() < life / 3;
}

/** Reads and writes the identity Secret in the agent's namespace. */
export class IdentityStore {
  private readonly core: CoreV1Api;
  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
    private readonly logger: Logger,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async load(): Promise<Identity | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({
        name: this.name,
        namespace: this.namespace,
      });
      return identityFromSecret(s);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async save(id: Identity): Promise<void> {
    const body = identitySecret(this.name, this.namespace, id);
    try {
      await this.core.createNamespacedSecret({ namespace: this.namespace, body });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await this.core.replaceNamespacedSecret({ name: this.name, namespace: this.namespace, body });
    }
    this.logger.info(
      { secret: `${this.namespace}/${this.name}`, notAfter: id.notAfter.toISOString() },
      'stored broker identity',
    );
  }

  /** The join token from a Secret (key `token`), as `spillctl join` writes it. */
  async readJoinToken(
    secretName: string,
  ): Promise<{ token: string; caPem: string; broker?: string } | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({
        name: secretName,
        namespace: this.namespace,
      });
      const token = unb64(s.data?.token).trim();
      if (!token) return undefined;
      const broker = unb64(s.data?.broker).trim();
      return { token, caPem: unb64(s.data?.['ca.crt']), ...(broker ? { broker } : {}) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async deleteJoinToken(secretName: string): Promise<void> {
    await this.core
      .deleteNamespacedSecret({ name: secretName, namespace: this.namespace })
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }
}

export function missingJoinToken(namespace: string, secret: string): SpillwayError {
  return new SpillwayError(
    ErrorCode.INVALID_CONFIG,
    `no broker identity in Secret ${namespace}/${secret} and no join token: run \`spillctl join\` or pass --join-token`,
    { field: '--join-token' },
  );
}
