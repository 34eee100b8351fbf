import { CLUSTER_ID_PATTERN } from '@spillway/common';
import { LABEL_OPERATORS } from '../placement/constraints.js';

/**
 * JSON schemas of the REST API. They validate requests (unknown fields are refused, not
 * dropped) and are the source of the OpenAPI document at /docs/json.
 */

const clusterId = {
  type: 'string',
  pattern: CLUSTER_ID_PATTERN.source,
  description: 'Cluster ID: a DNS label of 1-40 characters',
} as const;

/** Kubernetes-style resource and label names (prefix/name). */
const qualifiedName = {
  type: 'string',
  minLength: 1,
  maxLength: 253,
  pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
} as const;

const labelValue = { type: 'string', maxLength: 63 } as const;

/** Far above any real node, low enough to refuse an obvious mistake outright. */
export const MAX_GPUS_PER_POD = 256;
const MAX_GPU_LIMIT = 1_000_000;

const stringMap = {
  type: 'object',
  additionalProperties: labelValue,
  maxProperties: 64,
  propertyNames: qualifiedName,
} as const;

export const errorResponse = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        field: { type: 'string' },
      },
      required: ['code', 'message'],
    },
  },
} as const;

export const clusterParams = {
  type: 'object',
  properties: { id: clusterId },
  required: ['id'],
  additionalProperties: false,
} as const;

export const peeringParams = {
  type: 'object',
  properties: { origin: clusterId, donor: clusterId },
  required: ['origin', 'donor'],
  additionalProperties: false,
} as const;

export const patchClusterBody = {
  type: 'object',
  description: 'Cordon a donor or change what it lends. Only the fields given change.',
  properties: {
    cordoned: { type: 'boolean', description: 'A cordoned donor takes no new placements' },
    maxGpus: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_GPU_LIMIT,
      description: 'GPUs lent to all origins together; 0 = no limit',
    },
    maxGpusPerOrigin: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_GPU_LIMIT,
      description: 'GPUs lent to any one origin; 0 = no limit',
    },
    nodeSelector: { ...stringMap, description: 'Only nodes with all these labels are lent' },
    costPerGpuHour: { type: 'number', minimum: 0, maximum: 1_000_000 },
    podSecurity: { type: 'string', enum: ['restricted', 'baseline'] },
  },
  additionalProperties: false,
  minProperties: 1,
} as const;

export const joinTokenBody = {
  type: 'object',
  properties: {
    clusterId,
    role: { type: 'string', enum: ['origin', 'donor', 'both'] },
    ttl: {
      type: 'string',
      pattern: '^(\\d+(\\.\\d+)?(ms|s|m|h))+$',
      description: 'How long the token may be used, e.g. 15m (default 15m, at most 24h)',
    },
  },
  required: ['clusterId', 'role'],
  additionalProperties: false,
} as const;

export const capacityQuery = {
  type: 'object',
  properties: {
    gpuProduct: { type: 'string', minLength: 1, maxLength: 253 },
    // Query values are strings (no type coercion anywhere, so bodies stay strict).
    minGpuMemoryMiB: { type: 'string', pattern: '^\\d{1,9}$', description: 'Integer MiB' },
    origin: clusterId,
    resource: qualifiedName,
  },
  additionalProperties: false,
} as const;

export const peeringQuery = {
  type: 'object',
  properties: { origin: clusterId, donor: clusterId },
  additionalProperties: false,
} as const;

export const peeringBody = {
  type: 'object',
  properties: {
    origin: clusterId,
    donor: clusterId,
    maxGpus: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_GPU_LIMIT,
      description: 'GPUs the origin may use on the donor; 0 = only the donor policy limits',
    },
    gpuProducts: {
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 253 },
      maxItems: 64,
      uniqueItems: true,
      description: 'Only these GPU products are lent; empty = all',
    },
  },
  required: ['origin', 'donor'],
  additionalProperties: false,
} as const;

export const RESERVATION_STATES = ['open', 'bound', 'released', 'expired', 'ended'] as const;

export const offloadsQuery = {
  type: 'object',
  properties: {
    origin: clusterId,
    donor: clusterId,
    state: {
      type: 'string',
      pattern: `^(${RESERVATION_STATES.join('|')})(,(${RESERVATION_STATES.join('|')}))*$`,
      description: `Comma-separated states: ${RESERVATION_STATES.join(', ')}`,
    },
  },
  additionalProperties: false,
} as const;

const labelRequirement = {
  type: 'object',
  properties: {
    key: qualifiedName,
    operator: { type: 'string', enum: LABEL_OPERATORS },
    values: { type: 'array', items: labelValue, maxItems: 64 },
  },
  required: ['key', 'operator'],
  additionalProperties: false,
} as const;

const toleration = {
  type: 'object',
  properties: {
    key: { type: 'string', maxLength: 253 },
    operator: { type: 'string', enum: ['Exists', 'Equal'] },
    value: labelValue,
    effect: { type: 'string', enum: ['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'] },
  },
  additionalProperties: false,
} as const;

export const simulateBody = {
  type: 'object',
  description: 'A hypothetical GPU pod of `origin`: where would it go, and why not elsewhere',
  properties: {
    origin: clusterId,
    gpus: { type: 'integer', minimum: 1, maximum: MAX_GPUS_PER_POD },
    resource: { ...qualifiedName, default: 'nvidia.com/gpu' },
    nodeSelector: stringMap,
    requirements: { type: 'array', items: labelRequirement, maxItems: 64 },
    tolerations: { type: 'array', items: toleration, maxItems: 64 },
    cpuMillis: { type: 'integer', minimum: 0, maximum: 100_000_000 },
    memoryBytes: { type: 'integer', minimum: 0, maximum: 1e15 },
    donors: { type: 'array', items: clusterId, maxItems: 256, uniqueItems: true },
    policy: { type: 'string', enum: ['binpack', 'spread', 'cost'] },
    namespace: { ...qualifiedName, maxLength: 63 },
    gang: { type: 'string', minLength: 1, maxLength: 253 },
    members: {
      type: 'array',
      description: 'a gang: pods placed together on one donor (then leave out gpus)',
      minItems: 1,
      maxItems: 256,
      items: {
        type: 'object',
        properties: {
          gpus: { type: 'integer', minimum: 0, maximum: MAX_GPUS_PER_POD },
          cpuMillis: { type: 'integer', minimum: 0, maximum: 100_000_000 },
          memoryBytes: { type: 'integer', minimum: 0, maximum: 1e15 },
        },
        required: ['gpus'],
        additionalProperties: false,
      },
    },
  },
  required: ['origin'],
  additionalProperties: false,
} as const;

export const apiTokenBody = {
  type: 'object',
  properties: {
    role: { type: 'string', enum: ['admin', 'viewer'] },
    description: { type: 'string', maxLength: 200 },
  },
  required: ['role'],
  additionalProperties: false,
} as const;

export const apiTokenParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[a-z0-9][-a-z0-9]{0,62}$' } },
  required: ['id'],
  additionalProperties: false,
} as const;
