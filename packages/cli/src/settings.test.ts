import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfigPath, readSettings, writeSettings } from './settings.js';

const dir = (): string => mkdtempSync(join(tmpdir(), 'spillctl-settings-'));

describe('settings file', () => {
  it('lives in ~/.spillway/config unless SPILLWAY_CONFIG says otherwise', () => {
    expect(defaultConfigPath({ HOME: '/home/ada' })).toBe('/home/ada/.spillway/config');
    expect(defaultConfigPath({ HOME: '/home/ada', SPILLWAY_CONFIG: '/etc/s' })).toBe('/etc/s');
  });

  it('is written 0600 and merged with what was there', () => {
    const path = join(dir(), 'sub', 'config');
    writeSettings(path, { server: 'http://a:8080', token: 't1' });
    writeSettings(path, { token: 't2', broker: 'a:7443' });
    expect(readSettings(path)).toEqual({ server: 'http://a:8080', token: 't2', broker: 'a:7443' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toMatch(/^# spillctl settings/);
  });

  it('is empty when missing and refuses unknown or malformed settings', () => {
    const d = dir();
    expect(readSettings(join(d, 'none'))).toEqual({});
    const bad = join(d, 'bad');
    writeFileSync(bad, 'sever: http://typo\n');
    expect(() => readSettings(bad)).toThrow(/unknown setting "sever"/);
    writeFileSync(bad, 'server: [1, 2]\n');
    expect(() => readSettings(bad)).toThrow(/"server" must be a string/);
    writeFileSync(bad, 'server: "unterminated\n');
    expect(() => readSettings(bad)).toThrow(/not valid YAML/);
  });
});
