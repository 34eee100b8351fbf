import { describe, expect, it } from 'vitest';
import { configHelp, loadConfig, redactConfig, type Schema } from './config.js';
import { isSpillwayError } from './errors.js';

const schema = {
  grpcPort: { type: 'int', default: 7443, min: 0, max: 65535, description: 'gRPC port' },
  store: {
    type: 'string',
    default: 'sqlite',
    choices: ['sqlite', 'redis'] as const,
    description: 'store',
  },
  heartbeatTimeout: { type: 'duration', default: '15s', description: 'heartbeat timeout' },
  gpuResources: { type: 'list', default: ['nvidia.com/gpu'], description: 'GPU resources' },
  pretty: { type: 'bool', description: 'pretty logs' },
  adminToken: { type: 'string', secret: true, description: 'admin token' },
  clusterId: { type: 'string', required: true, description: 'cluster ID', env: 'CLUSTER_ID' },
} satisfies Schema;

describe('loadConfig', () => {
  it('uses named defaults when nothing is given', () => {
    const { config } = loadConfig(schema, { argv: ['--cluster-id', 'a'] });
    expect(config).toEqual({
      grpcPort: 7443,
      store: 'sqlite',
      heartbeatTimeout: 15_000,
      gpuResources: ['nvidia.com/gpu'],
      pretty: false,
      clusterId: 'a',
    });
  });

  it('lets env override defaults and flags override env', () => {
    const { config } = loadConfig(schema, {
      argv: ['--grpc-port', '9000', '--pretty'],
      env: {
        SPILLWAY_GRPC_PORT: '8000',
        SPILLWAY_STORE: 'redis',
        CLUSTER_ID: 'b',
        SPILLWAY_HEARTBEAT_TIMEOUT: '1m30s',
      },
    });
    expect(config.grpcPort).toBe(9000);
    expect(config.store).toBe('redis');
    expect(config.clusterId).toBe('b');
    expect(config.heartbeatTimeout).toBe(90_000);
    expect(config.pretty).toBe(true);
  });

  it('parses lists and --no- flags', () => {
    const { config } = loadConfig(schema, {
      argv: ['--gpu-resources', 'nvidia.com/gpu, amd.com/gpu,', '--no-pretty', '--cluster-id=x'],
      env: { SPILLWAY_PRETTY: 'true' },
    });
    expect(config.gpuResources).toEqual(['nvidia.com/gpu', 'amd.com/gpu']);
    expect(config.pretty).toBe(false);
  });

  it('reports every problem at once, naming the flag or variable', () => {
    let err: unknown;
    try {
      loadConfig(schema, {
        argv: ['--grpc-port', '70000'],
        env: { SPILLWAY_STORE: 'postgres', SPILLWAY_HEARTBEAT_TIMEOUT: 'soon' },
      });
    } catch (e) {
      err = e;
    }
    expect(isSpillwayError(err, 'INVALID_CONFIG')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('--grpc-port: 70000 is above the maximum 65535');
    expect(msg).toContain('SPILLWAY_STORE: "postgres" is not one of sqlite, redis');
    expect(msg).toContain('SPILLWAY_HEARTBEAT_TIMEOUT');
    expect(msg).toContain('--cluster-id (or CLUSTER_ID) is required');
  });

  it('refuses unknown flags and non-integers', () => {
    expect(() => loadConfig(schema, { argv: ['--cluster-id', 'a', '--grcp-port', '1'] })).toThrow(
      /grcp-port/,
    );
    expect(() => loadConfig(schema, { argv: ['--cluster-id', 'a', '--grpc-port', '1.5'] })).toThrow(
      /not an integer/,
    );
    expect(() => loadConfig(schema, { argv: ['--cluster-id', 'a', '--grpc-port', ''] })).toThrow(
      /not an integer/,
    );
  });

  it('does not require values when --help is asked', () => {
    const r = loadConfig(schema, { argv: ['--help'] });
    expect(r.help).toBe(true);
  });

  it('documents flags and hides secrets', () => {
    const help = configHelp(schema);
    expect(help).toContain('--grpc-port <int>');
    expect(help).toContain('(default 7443)');
    expect(help).toContain('[SPILLWAY_GRPC_PORT]');
    const { config } = loadConfig(schema, {
      argv: ['--cluster-id', 'a', '--admin-token', 's3cret'],
    });
    expect(redactConfig(schema, config).adminToken).toBe('[redacted]');
  });
});
