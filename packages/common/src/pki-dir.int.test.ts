import { mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from './logging.js';
import { ensureBrokerPki, pkiPaths } from './pki-dir.js';
import { inspectCertificate, verifyCertificate } from './pki.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spillway-pki-'));
  dirs.push(d);
  return join(d, 'pki');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const opts = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], logger: silentLogger() };

describe('ensureBrokerPki', () => {
  it('creates CA and server pair with private keys 0600, then reuses them', () => {
    const dir = tempDir();
    const first = ensureBrokerPki(dir, opts);
    const p = pkiPaths(dir);
    expect(first.created.sort()).toEqual([p.caCert, p.caKey, p.serverCert, p.serverKey].sort());
    expect(statSync(p.caKey).mode & 0o777).toBe(0o600);
    expect(statSync(p.serverKey).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const info = verifyCertificate(first.serverCertPem, { caCertPem: first.ca.certPem });
    expect(info.identity).toEqual({ kind: 'broker', name: 'spillway-broker' });

    const second = ensureBrokerPki(dir, opts);
    expect(second.created).toEqual([]);
    expect(second.ca.certPem).toBe(first.ca.certPem);
    expect(inspectCertificate(second.serverCertPem).serial).toBe(info.serial);
  });

  it('refuses a CA certificate without its key', () => {
    const dir = tempDir();
    ensureBrokerPki(dir, opts);
    unlinkSync(pkiPaths(dir).caKey);
    expect(() => ensureBrokerPki(dir, opts)).toThrow(/ca\.crt without ca\.key/);
  });

  it('reissues an expired server certificate from the same CA', () => {
    const dir = tempDir();
    const old = ensureBrokerPki(dir, { ...opts, now: new Date(Date.now() - 400 * 86_400_000) });
    const now = ensureBrokerPki(dir, opts);
    expect(now.created).toContain(pkiPaths(dir).serverCert);
    expect(now.ca.certPem).toBe(old.ca.certPem);
    expect(now.serverCertPem).not.toBe(old.serverCertPem);
  });

  it('loads api-tokens.json and names the file when it is broken', () => {
    const dir = tempDir();
    ensureBrokerPki(dir, opts);
    const file = pkiPaths(dir).apiTokens;
    writeFileSync(
      file,
      JSON.stringify({ tokens: [{ id: 'init-admin', secretHash: 'a'.repeat(64), role: 'admin' }] }),
    );
    expect(ensureBrokerPki(dir, opts).apiTokens).toMatchObject([
      { id: 'init-admin', role: 'admin' },
    ]);
    writeFileSync(
      file,
      JSON.stringify({ tokens: [{ id: 'x', secretHash: 'nope', role: 'admin' }] }),
    );
    expect(() => ensureBrokerPki(dir, opts)).toThrow(/api-tokens\.json: tokens\[0\]/);
    writeFileSync(file, '{');
    expect(() => ensureBrokerPki(dir, opts)).toThrow(/not valid JSON/);
  });
});
