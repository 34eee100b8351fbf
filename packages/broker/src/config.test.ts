import { describe, expect, it } from 'vitest';
import { configHelp, isSpillwayError, redactConfig } from '@spillway/common';
import { BROKER_CONFIG_SCHEMA, brokerConfig, loadBrokerConfig } from './config.js';

describe('broker config', () => {
  it('has the documented defaults and derives dirs from the data dir', () => {
    const { config } = loadBrokerConfig({ argv: [], env: {}, cwd: '/srv' });
    expect(config).toMatchObject({
      grpcPort: 7443,
      httpPort: 8080,
      store: 'sqlite',
      dataDir: '/srv/.spillway/broker',
      pkiDir: '/srv/.spillway/broker/pki',
      sqlitePath: '/srv/.spillway/broker/broker.db',
      heartbeatTimeout: 15_000,
      reservationTtl: 60_000,
      reservationRetention: 86_400_000,
      placementPolicy: 'binpack',
      authFailureRateLimit: 10,
      logPretty: false,
      httpTls: false,
      trustedProxies: [],
    });
    expect(config.brokerId).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{6}$`));
    expect(config.adminToken).toBeUndefined();
  });

  it('takes env, then flags, over defaults', () => {
    const { config } = loadBrokerConfig({
      argv: ['--http-port', '0', '--pki-dir', 'certs', '--placement-policy', 'spread'],
      env: {
        SPILLWAY_HTTP_PORT: '9999',
        SPILLWAY_STORE: 'redis',
        SPILLWAY_HEARTBEAT_TIMEOUT: '30s',
        SPILLWAY_RESERVATION_RETENTION: '2h',
      },
      cwd: '/x',
    });
    expect(config.httpPort).toBe(0);
    expect(config.store).toBe('redis');
    expect(config.heartbeatTimeout).toBe(30_000);
    expect(config.pkiDir).toBe('/x/certs');
    expect(config.placementPolicy).toBe('spread');
    expect(config.reservationRetention).toBe(7_200_000);
  });

  it.each([
    [['--grpc-port', '70000'], '--grpc-port'],
    [['--store', 'etcd'], '--store'],
    [['--heartbeat-timeout', 'soon'], '--heartbeat-timeout'],
    [['--admin-token', 'short'], '--admin-token'],
    [['--auth-failure-rate-limit', '0'], '--auth-failure-rate-limit'],
    [['--reservation-retention', 'a week'], '--reservation-retention'],
    [['--reservation-retention', '9000h'], '--reservation-retention'],
    [['--trusted-proxies', '10.0.0.0/33'], '--trusted-proxies'],
    [['--trusted-proxies', '10.0.0.1,ingress.local'], '--trusted-proxies'],
  ])('refuses %j naming the flag', (argv, flag) => {
    let caught: unknown;
    try {
      loadBrokerConfig({ argv, env: {} });
    } catch (err) {
      caught = err;
    }
    expect(isSpillwayError(caught, 'INVALID_CONFIG')).toBe(true);
    expect((caught as Error).message).toContain(flag);
  });

  it('takes trusted proxies as addresses and CIDRs, from a flag or the environment', () => {
    const list = '10.0.0.0/8, 192.168.1.7,fd00::/8';
    const fromFlag = loadBrokerConfig({ argv: ['--trusted-proxies', list], env: {} }).config;
    const fromEnv = loadBrokerConfig({ argv: [], env: { SPILLWAY_TRUSTED_PROXIES: list } }).config;
    expect(fromFlag.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    expect(fromEnv.trustedProxies).toEqual(fromFlag.trustedProxies);
  });

  it('does not echo a bad secret in the error', () => {
    expect(() => loadBrokerConfig({ argv: ['--viewer-token', 'tiny secret'], env: {} })).toThrow(
      /^(?!.*tiny).*--viewer-token must be 16-256 characters/,
    );
  });

  it('refuses unknown flags', () => {
    expect(() => loadBrokerConfig({ argv: ['--grcp-port', '1'], env: {} })).toThrow(/grcp-port/);
  });

  it('never shows secrets in help or logged config', () => {
    const { config } = loadBrokerConfig({
      argv: ['--admin-token', 'a-very-secret-admin-token'],
      env: {},
    });
    expect(JSON.stringify(redactConfig(BROKER_CONFIG_SCHEMA, config))).not.toContain(
      'a-very-secret',
    );
    const help = configHelp(BROKER_CONFIG_SCHEMA);
    expect(help).toContain('--admin-token');
    expect(help).toContain('(default 7443)');
  });

  it('brokerConfig keeps pki and sqlite inside an overridden data dir', () => {
    const c = brokerConfig({ dataDir: '/tmp/b1' });
    expect(c.pkiDir).toBe('/tmp/b1/pki');
    expect(c.sqlitePath).toBe('/tmp/b1/broker.db');
  });
});
