// An origin cluster identity for load tests: joined with a real token, then a few gRPC
// channels (each its own mTLS connection) that many concurrent callers share.
import { randomUUID } from 'node:crypto';
import { BrokerClient, joinCluster, type PlaceRequest } from '@spillway/api';
import type { BrokerProcess } from './broker.js';
import { pool } from './fleet.js';
import { PRODUCTS } from './fleet.js';
import { rng } from './stats.js';

export interface Origin {
  id: string;
  clients: BrokerClient[];
  /** Replaces the channels with `channels` new ones spread over `brokers`. */
  reconnect(brokers: BrokerProcess[], channels: number): Promise<void>;
  close(): Promise<void>;
}

/** Joins `id` as an origin and peers it with every donor in `donors`. */
export async function joinOrigin(
  brokers: BrokerProcess[],
  id: string,
  donors: readonly string[],
  channels: number,
): Promise<Origin> {
  const main = brokers[0]!;
  const { token } = await main.rest<{ token: string }>('POST', '/api/v1/join-tokens', {
    clusterId: id,
    role: 'origin',
  });
  const identity = await joinCluster({
    brokerAddress: main.grpcAddress,
    caPem: main.caPem,
    token,
    serverName: 'localhost',
  });
  await pool(donors, 16, (donor) => main.rest('POST', '/api/v1/peerings', { origin: id, donor }));
  const open = (to: BrokerProcess[], n: number): BrokerClient[] =>
    Array.from(
      { length: n },
      (_, i) =>
        new BrokerClient({
          address: to[i % to.length]!.grpcAddress,
          caPem: identity.caPem,
          certPem: identity.certPem,
          keyPem: identity.keyPem,
          serverName: 'localhost',
          callTimeoutMs: 60_000,
        }),
    );
  const origin: Origin = {
    id,
    clients: open(brokers, channels),
    async reconnect(to, n) {
      const old = origin.clients;
      origin.clients = open(to, n);
      await Promise.allSettled(old.map((c) => c.close()));
    },
    async close() {
      await Promise.allSettled(origin.clients.map((c) => c.close()));
    },
  };
  return origin;
}

/** The request mix: 40% 1 GPU, 30% 2, 20% 4, 10% 8; 30% constrain the GPU product. */
export function requestMix(
  origin: string,
  seed: number,
  donors: string[] = [],
): (i: number, gpus?: number) => PlaceRequest {
  const rand = rng(seed);
  return (i, fixed) => {
    const r = rand();
    const gpus = fixed ?? (r < 0.4 ? 1 : r < 0.7 ? 2 : r < 0.9 ? 4 : 8);
    const c = rand();
    const requirements =
      fixed !== undefined || c >= 0.3
        ? []
        : c < 0.2
          ? [
              {
                key: 'nvidia.com/gpu.product',
                operator: 'In',
                values: [PRODUCTS[Math.floor(rand() * 2)]!],
              },
            ]
          : [{ key: 'nvidia.com/gpu.product', operator: 'NotIn', values: [PRODUCTS[2]] }];
    return {
      pod: { origin_cluster: origin, namespace: 'bench', name: `p-${i}`, uid: randomUUID() },
      resource_name: 'nvidia.com/gpu',
      gpus,
      node_requirements: requirements,
      tolerations: [],
      cpu_millis: 1000 * gpus,
      memory_bytes: 8 * 1024 * 1024 * 1024 * gpus,
      donors,
    };
  };
}
