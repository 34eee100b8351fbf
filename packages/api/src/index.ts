import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ClusterProto, PlacementProto, PodProto } from './gen/index.js';

export type * from './gen/index.js';
// The REST API's types are at '@spillway/api/rest' (several names match proto messages).

/** proto/ at the repository root; the same relative path from src/ and dist/. */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto', import.meta.url));

export const PROTO_FILES = [
  'spillway/v1/cluster.proto',
  'spillway/v1/pod.proto',
  'spillway/v1/placement.proto',
] as const;

/** Loader options every Spillway process uses; the generated types assume exactly these. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** Largest gRPC message a Spillway process sends or accepts (pods with big specs fit easily). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export type SpillwayV1 = ClusterProto['spillway']['v1'] &
  PodProto['spillway']['v1'] &
  PlacementProto['spillway']['v1'];

let cached: SpillwayV1 | undefined;

/** Loads the Spillway gRPC contract once per process. */
export function loadSpillwayV1(): SpillwayV1 {
  if (!cached) {
    const definition = protoLoader.loadSync([...PROTO_FILES], LOADER_OPTIONS);
    const root = grpc.loadPackageDefinition(definition) as unknown as ClusterProto &
      PodProto &
      PlacementProto;
    cached = root.spillway.v1;
  }
  return cached;
}

/** Channel options shared by clients and servers: message size limits and keepalives. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  // grpc-js backs a lost connection off up to 120 s on its own, on top of the stream's
  // back-off: capped here, a broker back from a restart is found within seconds.
  'grpc.initial_reconnect_backoff_ms': 500,
  'grpc.max_reconnect_backoff_ms': 5_000,
};
export * from './client.js';
