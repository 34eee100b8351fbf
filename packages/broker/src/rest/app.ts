import { randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import {
  ErrorCode,
  SpillwayError,
  invalid,
  parseDuration,
  toSpillwayError,
  type Logger,
} from '@spillway/common';
import type {
  ApiTokenCreated,
  ApiTokenList,
  ApiTokenRequest,
  CapacityQuery,
  CapacitySummary,
  ClusterDetail,
  ClusterList,
  ClusterView,
  IssuedJoinToken,
  JoinTokenRequest,
  OffloadList,
  OffloadsQuery,
  PatchClusterRequest,
  PeeringList,
  PeeringQuery,
  PeeringRequest,
  PeeringView,
  GangPlacementResult,
  PlacementResult,
  SimulateRequest,
} from '@spillway/api/rest';
import type { BrokerCore, ClusterPatch, LabelRequirement, Toleration } from '../core/api.js';
import type { Metrics } from '../metrics.js';
import type { ReservationState } from '../model.js';
import type { Store } from '../store/store.js';
import { roleAllows, type RestAuth } from './auth.js';
import { makeClientErrorHandler, makeErrorHandler } from './errors.js';
import {
  apiTokenBody,
  apiTokenParams,
  capacityQuery,
  clusterParams,
  joinTokenBody,
  offloadsQuery,
  patchClusterBody,
  peeringBody,
  peeringParams,
  peeringQuery,
  simulateBody,
} from './schemas.js';
import type { ApiRole } from './tokens.js';
import { dashboardRoutes } from '../ui/routes.js';
import { usageRoutes } from './usage-route.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Least role a route needs; default viewer for GET/HEAD, admin for anything else. */
    minRole?: ApiRole;
    /** No authentication (health, metrics, the OpenAPI document). */
    public?: boolean;
  }
}

export interface RestAppOptions {
  core: BrokerCore;
  store: Store;
  logger: Logger;
  auth: RestAuth;
  metrics: Metrics;
  /** Serve over TLS; client certificates are requested (not required) for admin identity. */
  tls?: { keyPem: string; certPem: string; caPem: string };
  bodyLimit?: number;
  /**
   * Addresses or CIDRs of the proxies in front of the broker (an ingress). Only from these
   * hops is X-Forwarded-For believed, so each caller behind them has its own address for the
   * auth-failure limit. Empty: the peer address is the client, X-Forwarded-For is ignored.
   */
  trustedProxies?: readonly string[];
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
const MIN_JOIN_TTL_MS = 60_000;
const MAX_JOIN_TTL_MS = 24 * 3_600_000;

const API = '/api/v1';
/** How long /readyz waits for the store before it answers 503. */
const READY_TIMEOUT_MS = 2_000;

/** The schema's default fills in `resource` before the handler runs. */
type SimulateBody = SimulateRequest & { resource: string };

/** Copies only the keys that are present, so exactOptionalPropertyTypes holds. */
function defined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function toClusterPatch(body: PatchClusterRequest): ClusterPatch {
  const { cordoned, ...policy } = body;
  const patch: ClusterPatch = {};
  if (cordoned !== undefined) patch.cordoned = cordoned;
  const p = defined(policy);
  if (Object.keys(p).length > 0) patch.policy = p;
  return patch;
}

function parseJoinTtl(ttl: string | undefined): number | undefined {
  if (ttl === undefined) return undefined;
  const ms = parseDuration(ttl, 'ttl');
  if (ms < MIN_JOIN_TTL_MS || ms > MAX_JOIN_TTL_MS) {
    throw new SpillwayError(
      ErrorCode.INVALID_ARGUMENT,
      `ttl: ${ttl} is outside 1m..24h; a join token should live minutes, not days`,
      { field: 'ttl' },
    );
  }
  return ms;
}

const security = [{ bearerAuth: [] }];

/**
 * The broker's REST API (admins and spillctl): clusters, join tokens, capacity, peerings,
 * offloads and placement simulation under /api/v1, plus /healthz, /readyz, /metrics and the
 * OpenAPI document at /docs/json. The caller listens (or inject()s).
 */
export function buildRestApp(opts: RestAppOptions): FastifyInstance {
  const { core, store, logger, auth, metrics } = opts;
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const onError = makeErrorHandler(logger, bodyLimit);
  const app = fastify({
    // Errors raised before routing (a malformed URL) get the same { error } body.
    frameworkErrors: (err, req, reply) => void onError(err, req, reply),
    // ...and so do errors Node's HTTP parser raises (bytes that are not HTTP, huge headers).
    clientErrorHandler: makeClientErrorHandler(logger),
    ...(opts.trustedProxies && opts.trustedProxies.length > 0
      ? { trustProxy: [...opts.trustedProxies] }
      : {}),
    loggerInstance: logger,
    // Requests are counted in metrics; per-request info logs would drown everything else.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // Unknown fields must be refused, not silently dropped, and "4" is not a number.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    ...(opts.tls
      ? {
          https: {
            key: opts.tls.keyPem,
            cert: opts.tls.certPem,
            ca: opts.tls.caPem,
            requestCert: true,
            // Tokens remain valid over TLS; the certificate is checked in the auth hook.
            rejectUnauthorized: false,
          },
        }
      : {}),
  }) as unknown as FastifyInstance;

  app.setErrorHandler(onError);
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({
      error: {
        code: ErrorCode.NOT_FOUND,
        message: `no route ${req.method} ${req.url.split('?')[0]}`,
      },
    });
  });

  app.addHook('onRequest', async (req: FastifyRequest) => {
    const config = req.routeOptions.config;
    if (config.public || req.routeOptions.url === undefined) return;
    const principal = await auth.authenticate({
      ip: req.ip,
      authorization: req.headers.authorization,
      socket: req.raw.socket,
    });
    const need: ApiRole =
      config.minRole ?? (req.method === 'GET' || req.method === 'HEAD' ? 'viewer' : 'admin');
    if (!roleAllows(principal.role, need)) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `${principal.name} has the ${principal.role} role; ${req.method} ${req.routeOptions.url} needs ${need}`,
      );
    }
    req.log.debug({ principal: principal.name, role: principal.role }, 'authenticated');
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.httpRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode);
  });

  void app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Spillway broker API',
        description:
          'Clusters, join tokens, GPU capacity, peerings, offloads, placement simulation and the usage ledger. ' +
          'Authenticate with "Authorization: Bearer <token>" (roles admin and viewer) or, over TLS, an admin client certificate.',
        version: '1',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      },
    },
  });

  void app.register((api, _o, done) => {
    const pub = { public: true };

    api.get(
      '/healthz',
      { config: pub, schema: { summary: 'The process is up', tags: ['health'], security: [] } },
      (_req, reply) => reply.send({ status: 'ok' }),
    );

    api.get(
      '/readyz',
      {
        config: pub,
        schema: { summary: 'The store is reachable', tags: ['health'], security: [] },
      },
      async (_req, reply) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          // A store that hangs (frozen, partitioned) must still get a prompt 503, well within
          // a readiness probe's timeout, not an answer as slow as its command timeout.
          await Promise.race([
            store.ping(),
            new Promise<never>((_resolve, reject) => {
              timer = setTimeout(
                () =>
                  reject(
                    new SpillwayError(
                      ErrorCode.STORE_UNAVAILABLE,
                      `${store.kind} store did not answer within ${READY_TIMEOUT_MS} ms`,
                    ),
                  ),
                READY_TIMEOUT_MS,
              );
            }),
          ]);
          return { status: 'ready', store: store.kind };
        } catch (err) {
          const e = toSpillwayError(err, ErrorCode.STORE_UNAVAILABLE);
          return reply
            .status(503)
            .send({ status: 'unavailable', store: store.kind, reason: e.message });
        } finally {
          clearTimeout(timer);
        }
      },
    );

    // No auth: Prometheus scrapes it, and it holds aggregate counts only (no cluster IDs or
    // tokens). Bind --http-host to a private address if even that is too much.
    api.get(
      '/metrics',
      { config: pub, schema: { summary: 'Prometheus metrics', tags: ['health'], security: [] } },
      async (_req, reply) =>
        reply.header('content-type', metrics.contentType).send(await metrics.render()),
    );

    api.get('/docs/json', { config: pub, schema: { hide: true } }, (_req, reply) =>
      reply.send(api.swagger()),
    );

    api.get<{ Reply: ClusterList }>(
      `${API}/clusters`,
      { schema: { summary: 'List clusters', tags: ['clusters'], security } },
      async () => ({ clusters: await core.listClusters() }),
    );

    api.get<{ Params: { id: string }; Reply: ClusterDetail }>(
      `${API}/clusters/:id`,
      {
        schema: {
          summary: 'A cluster with its nodes and free GPUs',
          tags: ['clusters'],
          security,
          params: clusterParams,
        },
      },
      async (req) => core.getCluster(req.params.id),
    );

    api.patch<{ Params: { id: string }; Body: PatchClusterRequest; Reply: ClusterView }>(
      `${API}/clusters/:id`,
      {
        schema: {
          summary: 'Cordon a cluster or change its donor policy',
          tags: ['clusters'],
          security,
          params: clusterParams,
          body: patchClusterBody,
        },
      },
      async (req) => core.patchCluster(req.params.id, toClusterPatch(req.body)),
    );

    api.delete<{ Params: { id: string } }>(
      `${API}/clusters/:id`,
      {
        schema: {
          summary: 'Remove a cluster: revoke its certificate, drop its peerings and streams',
          tags: ['clusters'],
          security,
          params: clusterParams,
        },
      },
      async (req, reply) => {
        await core.removeCluster(req.params.id);
        return reply.status(204).send();
      },
    );

    api.post<{ Body: JoinTokenRequest; Reply: IssuedJoinToken }>(
      `${API}/join-tokens`,
      {
        schema: {
          summary: 'Create a single-use join token (shown once)',
          tags: ['clusters'],
          security,
          body: joinTokenBody,
        },
      },
      async (req, reply) => {
        const ttlMs = parseJoinTtl(req.body.ttl);
        const issued = await core.createJoinToken({
          clusterId: req.body.clusterId,
          role: req.body.role,
          ...(ttlMs === undefined ? {} : { ttlMs }),
        });
        return reply.status(201).header('cache-control', 'no-store').send(issued);
      },
    );

    api.get<{ Querystring: CapacityQuery; Reply: CapacitySummary }>(
      `${API}/capacity`,
      {
        schema: {
          summary: 'Free GPUs by cluster, product and resource',
          tags: ['capacity'],
          security,
          querystring: capacityQuery,
        },
      },
      async (req) => {
        const q = req.query;
        return core.capacity(
          defined({
            gpuProduct: q.gpuProduct,
            minGpuMemoryMiB:
              q.minGpuMemoryMiB === undefined ? undefined : Number(q.minGpuMemoryMiB),
            origin: q.origin,
            resource: q.resource,
          }),
        );
      },
    );

    api.get<{ Querystring: PeeringQuery; Reply: PeeringList }>(
      `${API}/peerings`,
      {
        schema: {
          summary: 'List peerings',
          tags: ['peerings'],
          security,
          querystring: peeringQuery,
        },
      },
      async (req) => ({ peerings: await core.listPeerings(defined(req.query)) }),
    );

    api.post<{ Body: PeeringRequest; Reply: PeeringView }>(
      `${API}/peerings`,
      {
        schema: {
          summary: 'Let an origin offload GPU pods to a donor',
          tags: ['peerings'],
          security,
          body: peeringBody,
        },
      },
      async (req, reply) => reply.status(201).send(await core.createPeering(req.body)),
    );

    api.delete<{ Params: { origin: string; donor: string } }>(
      `${API}/peerings/:origin/:donor`,
      {
        schema: {
          summary: 'Remove a peering',
          tags: ['peerings'],
          security,
          params: peeringParams,
        },
      },
      async (req, reply) => {
        await core.deletePeering(req.params.origin, req.params.donor);
        return reply.status(204).send();
      },
    );

    // A sub-path, not `:drain`: a custom method cannot follow a path parameter in fastify.
    api.post<{ Params: { origin: string; donor: string }; Reply: PeeringView }>(
      `${API}/peerings/:origin/:donor/drain`,
      {
        schema: {
          summary: 'Drain a peering: no new placements, running pods stay (then DELETE it)',
          tags: ['peerings'],
          security,
          params: peeringParams,
        },
      },
      async (req) => core.drainPeering(req.params.origin, req.params.donor),
    );

    api.get<{ Querystring: OffloadsQuery; Reply: OffloadList }>(
      `${API}/offloads`,
      {
        schema: {
          summary: 'GPU reservations and the offloaded pods they hold',
          tags: ['offloads'],
          security,
          querystring: offloadsQuery,
        },
      },
      async (req) => {
        const { state, ...rest } = req.query;
        const states =
          state === undefined ? undefined : ([...new Set(state.split(','))] as ReservationState[]);
        return { offloads: await core.offloads(defined({ ...rest, states })) };
      },
    );

    // `::` is fastify's escape for a literal colon (Google-style custom method).
    api.post<{ Body: SimulateBody; Reply: PlacementResult | GangPlacementResult }>(
      `${API}/placements::simulate`,
      {
        config: { minRole: 'viewer' },
        schema: {
          summary:
            'Where a GPU pod, or a gang (members), would be placed, and why not elsewhere (reserves nothing)',
          tags: ['placements'],
          security,
          body: simulateBody,
        },
      },
      async (req) => {
        const b = req.body;
        const requirements: LabelRequirement[] = [
          ...Object.entries(b.nodeSelector ?? {}).map(([key, value]): LabelRequirement => ({
            key,
            operator: 'In',
            values: [value],
          })),
          ...(b.requirements ?? []).map((r) => ({ ...r, values: r.values ?? [] })),
        ];
        const tolerations: Toleration[] = (b.tolerations ?? []).map((t) => ({
          key: t.key ?? '',
          operator: t.operator ?? 'Equal',
          value: t.value ?? '',
          effect: t.effect ?? '',
        }));
        const ask = (
          gpus: number,
          cpuMillis?: number,
          memoryBytes?: number,
          name = 'simulated',
        ) => ({
          pod: {
            originCluster: b.origin,
            namespace: b.namespace ?? 'default',
            name,
            uid: `simulate-${randomUUID()}`,
          },
          resource: b.resource,
          gpus,
          nodeRequirements: requirements,
          tolerations,
          cpuMillis: cpuMillis ?? b.cpuMillis ?? 0,
          memoryBytes: memoryBytes ?? b.memoryBytes ?? 0,
          donors: [],
        });
        if (b.members !== undefined) {
          if (b.gpus !== undefined)
            throw invalid('gpus', 'give gpus for one pod or members for a gang, not both');
          const gang = b.gang ?? 'simulated';
          return core.simulateGang(b.origin, {
            gang,
            members: b.members.map((m, i) =>
              ask(m.gpus, m.cpuMillis, m.memoryBytes, `${gang}-${i}`),
            ),
            donors: b.donors ?? [],
            ...(b.policy === undefined ? {} : { policy: b.policy }),
          });
        }
        if (b.gpus === undefined) throw invalid('gpus', 'is required (or members, for a gang)');
        if (b.gpus < 1) throw invalid('gpus', `must be at least 1, got ${b.gpus}`);
        return core.simulate(b.origin, {
          pod: {
            originCluster: b.origin,
            namespace: b.namespace ?? 'default',
            name: 'simulated',
            uid: `simulate-${randomUUID()}`,
          },
          resource: b.resource,
          gpus: b.gpus,
          nodeRequirements: requirements,
          tolerations,
          cpuMillis: b.cpuMillis ?? 0,
          memoryBytes: b.memoryBytes ?? 0,
          donors: b.donors ?? [],
          ...(b.policy === undefined ? {} : { policy: b.policy }),
        });
      },
    );

    api.get<{ Reply: ApiTokenList }>(
      `${API}/api-tokens`,
      {
        config: { minRole: 'admin' },
        schema: { summary: 'List REST API tokens (never their secrets)', tags: ['auth'], security },
      },
      async () => ({
        tokens: await core.listApiTokens(),
      }),
    );

    api.post<{ Body: ApiTokenRequest; Reply: ApiTokenCreated }>(
      `${API}/api-tokens`,
      {
        schema: {
          summary: 'Create a REST API token (shown once)',
          tags: ['auth'],
          security,
          body: apiTokenBody,
        },
      },
      async (req, reply) => {
        const created = await core.createApiToken(req.body);
        return reply.status(201).header('cache-control', 'no-store').send(created);
      },
    );

    api.delete<{ Params: { id: string } }>(
      `${API}/api-tokens/:id`,
      {
        schema: {
          summary: 'Delete a REST API token',
          tags: ['auth'],
          security,
          params: apiTokenParams,
        },
      },
      async (req, reply) => {
        await core.deleteApiToken(req.params.id);
        return reply.status(204).send();
      },
    );

    usageRoutes(api, core, security, API);

    done();
  });

  void app.register(dashboardRoutes);

  return app;
}
