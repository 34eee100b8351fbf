import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { componentLogger, type Logger } from '@spillway/common';
import type { BrokerConfig } from './config.js';
import type { BrokerCore } from './core/api.js';
import { Core } from './core/broker-core.js';
import { createGrpcServer } from './grpc/server.js';
import { LocalRouter, RedisRouter, type Router } from './grpc/router.js';
import { Metrics } from './metrics.js';
import { ensureBrokerPki } from './pki-files.js';
import { buildRestApp } from './rest/app.js';
import { RestAuth } from './rest/auth.js';
import { createStore } from './store/index.js';
import type { Store } from './store/store.js';

export interface RunningBroker {
  brokerId: string;
  grpcPort: number;
  httpPort: number;
  /** CA certificate clusters and admins trust (for tests and `spillctl broker init`). */
  caCertPem: string;
  core: BrokerCore;
  store: Store;
  metrics: Metrics;
  /** Closes REST, gRPC, the core and the store, in that order. Safe to call twice. */
  stop(): Promise<void>;
}

/** How often each side of a Connect stream sends a heartbeat: well inside the timeout. */
const heartbeatInterval = (timeoutMs: number): number => Math.max(250, Math.floor(timeoutMs / 3));
const COMMAND_TIMEOUT_MS = 30_000;

/**
 * Wires one broker replica: PKI files -> store -> core -> gRPC (mTLS) -> REST, and listens.
 * If any step fails, what was started is stopped again before the error is rethrown.
 */
export async function startBroker(config: BrokerConfig, logger: Logger): Promise<RunningBroker> {
  const undo: (() => Promise<void>)[] = [];
  const rollback = async (): Promise<void> => {
    for (const step of undo.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        logger.warn({ err }, 'error while stopping');
      }
    }
  };

  try {
    const pki = ensureBrokerPki(config.pkiDir, {
      dnsNames: config.serverDnsNames,
      ipAddresses: config.serverIps,
      logger: componentLogger(logger, 'pki'),
    });
    logger.info({ pkiDir: config.pkiDir }, 'broker PKI loaded');

    const store = await createStore({
      kind: config.store,
      sqlitePath: config.sqlitePath,
      redisUrl: config.redisUrl,
      redisPrefix: config.redisPrefix,
      logger: componentLogger(logger, 'store'),
    });
    undo.push(() => store.close());
    await store.ping();
    logger.info(
      config.store === 'sqlite'
        ? { store: 'sqlite', path: config.sqlitePath }
        : { store: 'redis', prefix: config.redisPrefix },
      'store ready',
    );

    // Tokens written by `spillctl broker init` become usable without a REST call.
    for (const token of pki.apiTokens) {
      if (!(await store.getApiToken(token.id))) await store.putApiToken(token);
    }

    const metrics = new Metrics({
      processMetrics: true,
      heartbeatTimeoutMs: config.heartbeatTimeout,
      logger: componentLogger(logger, 'metrics'),
    });
    metrics.bindStore(store);

    // The core tags its own logger with component=core, and counts each placement once.
    const core = new Core({
      store,
      ca: pki.ca,
      logger,
      brokerId: config.brokerId,
      heartbeatTimeoutMs: config.heartbeatTimeout,
      reservationTtlMs: config.reservationTtl,
      clusterCertValidityMs: config.clusterCertValidity,
      placementPolicy: config.placementPolicy,
      reservationRetentionMs: config.reservationRetention,
      // The embedded SQLite store serves exactly one broker process: other brokers' stream
      // records in it are a dead process's leftovers.
      soleReplica: config.store === 'sqlite',
      metrics,
    });
    undo.push(() => core.stop());

    let router: Router;
    if (config.store === 'redis') {
      const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
      redis.on('error', (err: Error) => logger.debug({ err: err.message }, 'router redis error'));
      await redis.connect();
      undo.push(async () => {
        await redis.quit().catch(() => redis.disconnect());
      });
      router = new RedisRouter({
        redis,
        brokerId: config.brokerId,
        keyPrefix: config.redisPrefix.replace(/:+$/, ''),
        logger: componentLogger(logger, 'router'),
      });
    } else {
      router = new LocalRouter(config.brokerId);
    }

    const grpc = createGrpcServer({
      core,
      ca: pki.ca.certPem,
      serverCert: pki.serverCertPem,
      serverKey: pki.serverKeyPem,
      router,
      logger: componentLogger(logger, 'grpc'),
      heartbeatIntervalMs: heartbeatInterval(config.heartbeatTimeout),
      heartbeatTimeoutMs: config.heartbeatTimeout,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
    });
    metrics.bindSessions(() => grpc.sessions());
    const grpcPort = await grpc.listen(config.grpcHost, config.grpcPort);
    undo.push(() => grpc.stop(config.shutdownGrace));
    // The reaper and the view's feed start only now: what they announce goes out through a
    // router that runs (grpc.listen started it), never into one that does not yet.
    core.start();
    logger.info({ host: config.grpcHost, port: grpcPort }, 'gRPC (mTLS) listening');

    const restLogger = componentLogger(logger, 'rest');
    const auth = new RestAuth({
      store,
      adminToken: config.adminToken,
      viewerToken: config.viewerToken,
      failureLimit: config.authFailureRateLimit,
      caCertPem: pki.ca.certPem,
      isRevoked: (serial) => core.isRevoked(serial),
      metrics,
    });
    const app = buildRestApp({
      core,
      store,
      logger: restLogger,
      auth,
      metrics,
      trustedProxies: config.trustedProxies,
      ...(config.httpTls
        ? { tls: { keyPem: pki.serverKeyPem, certPem: pki.serverCertPem, caPem: pki.ca.certPem } }
        : {}),
    });
    undo.push(() => app.close());
    await app.listen({ host: config.httpHost, port: config.httpPort });
    const httpPort = (app.server.address() as AddressInfo).port;
    logger.info(
      { host: config.httpHost, port: httpPort, tls: config.httpTls },
      'REST API listening',
    );
    if (!config.adminToken && pki.apiTokens.length === 0 && !config.httpTls) {
      logger.warn(
        'no admin token configured (--admin-token or api-tokens.json) and no --http-tls: only tokens already in the store can use the REST API',
      );
    }

    let stopping: Promise<void> | undefined;
    return {
      brokerId: config.brokerId,
      grpcPort,
      httpPort,
      caCertPem: pki.ca.certPem,
      core,
      store,
      metrics,
      stop: () => (stopping ??= rollback()),
    };
  } catch (err) {
    await rollback();
    throw err;
  }
}
