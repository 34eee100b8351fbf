import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureImages } from './index.js';

// The Spillway image from the repository's Dockerfile, built here with buildah on the
// locally made Debian + Node 24 base (cold: several minutes; cached by its inputs after).
// The archive is unpacked the way a runtime would and its entry points are run in it.

const scratch = mkdtempSync(join(tmpdir(), 'spillway-image-e2e-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Descriptor {
  digest: string;
  annotations?: Record<string, string>;
}

function entry(archive: string, path: string): Buffer {
  return execFileSync('tar', ['-xOf', archive, path], { maxBuffer: 1 << 30 });
}
const blobPath = (digest: string): string => `blobs/${digest.replace(':', '/')}`;

describe('the Spillway image', () => {
  it('builds from the Dockerfile on the local base, and its entry points run in it', async () => {
    const lines: string[] = [];
    const { spillway } = await ensureImages(['spillway'], { log: (l) => lines.push(l) });
    for (const line of lines) expect(line).toMatch(/^images: .*\(\d+\.\d s\)$/);
    expect(spillway.podImage).toBe(`local/spillway:${spillway.tag}`);

    const index = JSON.parse(entry(spillway.archive, 'index.json').toString()) as {
      manifests: Descriptor[];
    };
    const [desc] = index.manifests as [Descriptor];
    expect(desc.annotations?.['org.opencontainers.image.ref.name']).toBe(spillway.ref);
    const manifest = JSON.parse(entry(spillway.archive, blobPath(desc.digest)).toString()) as {
      config: Descriptor;
      layers: Descriptor[];
    };
    const config = JSON.parse(
      entry(spillway.archive, blobPath(manifest.config.digest)).toString(),
    ) as { config: { User?: string; Cmd?: string[]; Env?: string[]; ExposedPorts?: object } };
    // What the Dockerfile says and the charts rely on.
    expect(config.config.User).toBe('10001:10001');
    expect(config.config.Cmd).toEqual(['spillway-broker', '--help']);
    expect(config.config.Env).toContain('NODE_ENV=production');
    expect(Object.keys(config.config.ExposedPorts ?? {}).sort()).toEqual([
      '10250/tcp',
      '7443/tcp',
      '8080/tcp',
    ]);

    const rootfs = join(scratch, 'rootfs');
    mkdirSync(rootfs);
    for (const layer of manifest.layers) {
      const file = join(scratch, layer.digest.replace(':', '-'));
      execFileSync('sh', [
        '-c',
        'tar -xOf "$1" "$2" > "$3"',
        'sh',
        spillway.archive,
        blobPath(layer.digest),
        file,
      ]);
      execFileSync('tar', ['-xf', file, '-C', rootfs]);
      rmSync(file);
    }
    const run = (...argv: string[]): string =>
      execFileSync('/usr/sbin/chroot', ['--userspec=10001:10001', rootfs, ...argv], {
        encoding: 'utf8',
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp' },
      });
    expect(run('node', '--version').trim()).toMatch(/^v24\./);
    for (const bin of ['spillway-broker', 'spillway-agent', 'spillway-virtual-node', 'spillctl']) {
      expect(run(bin, '--help'), bin).toMatch(/usage/i);
    }
    // No dev dependencies, no TypeScript sources, no tests in the runtime image.
    expect(() =>
      execFileSync('test', ['-e', join(rootfs, 'app/node_modules/typescript')]),
    ).toThrow();
    const tests = execFileSync('find', [join(rootfs, 'app/packages'), '-name', '*.test.js'], {
      encoding: 'utf8',
    });
    expect(tests.trim()).toBe('');
  }, 1_800_000);
});
