import { ErrorCode, SpillwayError } from './errors.js';

/** Cluster IDs are DNS labels: they name namespaces (spillway-<id>) and nodes on peers. */
export const CLUSTER_ID_PATTERN = /^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/;

export function validateClusterId(id: unknown, field = 'clusterId'): string {
  if (typeof id !== 'string' || !CLUSTER_ID_PATTERN.test(id)) {
    throw new SpillwayError(
      ErrorCode.INVALID_ARGUMENT,
      `${field}: ${JSON.stringify(id)} is not a valid cluster ID (lowercase letters, digits and '-', 1-40 characters, starting and ending with a letter or digit)`,
      { field },
    );
  }
  return id;
}

export type IdentityKind = 'cluster' | 'admin' | 'broker';

export interface Identity {
  kind: IdentityKind;
  name: string;
}

const URI_PREFIX = 'spillway://';

export function identityUri(identity: Identity): string {
  return identity.kind === 'broker'
    ? `${URI_PREFIX}broker/${identity.name}`
    : `${URI_PREFIX}${identity.kind}/${identity.name}`;
}

export function parseIdentityUri(uri: string): Identity | undefined {
  const m = /^spillway:\/\/(cluster|admin|broker)\/([a-z0-9][-a-z0-9.]*)$/.exec(uri);
  if (!m) return undefined;
  return { kind: m[1] as IdentityKind, name: m[2]! };
}

/** Tenant namespace on a donor for pods of `origin`. */
export function tenantNamespace(origin: string): string {
  return `spillway-${origin}`;
}

/** Name of the virtual node an origin registers for `donor`. */
export function virtualNodeName(donor: string): string {
  return `spillway-${donor}`;
}
