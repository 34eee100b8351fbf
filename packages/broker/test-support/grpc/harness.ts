import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, joinCluster, loadSpillwayV1, type JoinedIdentity } from '@spillway/api';
import {
  createCertificateAuthority,
  createLogger,
  issueKeyAndCertificate,
  type CertificateAuthority,
  type Logger,
} from '@spillway/common';
import { createBrokerCore, type Core } from '../../src/core/broker-core.js';
import type { ClusterRole } from '../../src/model.js';
import { createStore, type Store } from '../../src/store/index.js';
import { LocalRouter, type Router } from '../../src/grpc/router.js';
import { createGrpcServer, type GrpcServer } from '../../src/grpc/server.js';

/**
 * Real broker parts for the gRPC integration tests: a CA, a serving certificate, the Core
 * on a real store (SQLite file, or Redis under a test prefix), the gRPC server on port 0.
 */

export const SERVER_NAME = 'broker.spillway.test';

export function quietLogger(): Logger {
  return createLogger({ level: 'silent' });
}

export function servingPair(
  ca: CertificateAuthority,
  dnsName = SERVER_NAME,
): { certPem: string; keyPem: string } {
  const s = issueKeyAndCertificate({
    ca,
    profile: 'server',
    identity: { kind: 'broker', name: 'test' },
    commonName: 'spillway-broker',
    dnsNames: [dnsName, 'localhost'],
    ipAddresses: ['127.0.0.1'],
    validSeconds: 3600,
  });
  return { certPem: s.certPem, keyPem: s.keyPem };
}

export interface BrokerUnderTest {
  ca: CertificateAuthority;
  core: Core;
  store: Store;
  server: GrpcServer;
  port: number;
  address: string;
  /** Starts the gRPC server again (same port unless told otherwise). */
  restart(port?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface StartOptions {
  ca?: CertificateAuthority;
  brokerId?: string;
  /** Default: a fresh SQLite file. */
  store?: { kind: 'redis'; url: string; prefix: string };
  router?: (brokerId: string) => Router;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  commandTimeoutMs?: number;
}

export async function startBroker(opts: StartOptions = {}): Promise<BrokerUnderTest> {
  const ca = opts.ca ?? createCertificateAuthority({ commonName: 'Spillway test CA' });
  const brokerId = opts.brokerId ?? 'broker-test';
  const logger = quietLogger();
  let dir: string | undefined;
  let store: Store;
  if (opts.store) {
    store = await createStore(
      { kind: 'redis', url: opts.store.url, prefix: opts.store.prefix },
      logger,
    );
  } else {
    dir = mkdtempSync(join(tmpdir(), 'spillway-grpc-'));
    store = await createStore({ kind: 'sqlite', path: join(dir, 'broker.db') }, logger);
  }
  await store.ping();
  const core = createBrokerCore({
    store,
    ca,
    brokerId,
    logger,
    heartbeatTimeoutMs: opts.heartbeatTimeoutMs ?? 5_000,
    revocationRefreshMs: 100,
    lendingDebounceMs: 20,
  });
  core.start();
  const pair = servingPair(ca);
  const make = (): GrpcServer =>
    createGrpcServer({
      core,
      ca: ca.certPem,
      serverCert: pair.certPem,
      serverKey: pair.keyPem,
      router: opts.router ? opts.router(brokerId) : new LocalRouter(brokerId),
      logger,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 1_000,
      heartbeatTimeoutMs: opts.heartbeatTimeoutMs ?? 5_000,
      commandTimeoutMs: opts.commandTimeoutMs ?? 3_000,
    });
  const b: BrokerUnderTest = {
    ca,
    core,
    store,
    server: make(),
    port: 0,
    address: '',
    async restart(port = b.port) {
      b.server = make();
      b.port = await b.server.listen('127.0.0.1', port);
      b.address = `127.0.0.1:${b.port}`;
    },
    async stop() {
      await b.server.stop(500);
      await core.stop();
      await store.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  b.port = await b.server.listen('127.0.0.1', 0);
  b.address = `127.0.0.1:${b.port}`;
  return b;
}

/** Mints a token and joins over gRPC, as an agent would. */
export async function joinAs(
  b: BrokerUnderTest,
  clusterId: string,
  role: ClusterRole = 'both',
): Promise<JoinedIdentity> {
  const { token } = await b.core.createJoinToken({ clusterId, role });
  return joinCluster({
    brokerAddress: b.address,
    caPem: b.ca.certPem,
    token,
    serverName: SERVER_NAME,
  });
}

/** Raw service clients, to send what the Spillway client never would. */
export function rawClients(
  address: string,
  creds: grpc.ChannelCredentials,
): {
  cluster: InstanceType<ReturnType<typeof loadSpillwayV1>['ClusterService']>;
  pod: InstanceType<ReturnType<typeof loadSpillwayV1>['PodService']>;
  placement: InstanceType<ReturnType<typeof loadSpillwayV1>['PlacementService']>;
  close(): void;
} {
  const v1 = loadSpillwayV1();
  const options = {
    ...CHANNEL_OPTIONS,
    'grpc.ssl_target_name_override': SERVER_NAME,
    'grpc.default_authority': SERVER_NAME,
  };
  const cluster = new v1.ClusterService(address, creds, options);
  const pod = new v1.PodService(address, creds, options);
  const placement = new v1.PlacementService(address, creds, options);
  return {
    cluster,
    pod,
    placement,
    close() {
      cluster.close();
      pod.close();
      placement.close();
    },
  };
}

export function mtls(
  caPem: string,
  id: { certPem: string; keyPem: string },
): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(caPem),
    Buffer.from(id.keyPem),
    Buffer.from(id.certPem),
  );
}

export function serverOnlyTls(caPem: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(caPem));
}
