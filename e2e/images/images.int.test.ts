import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TestbedError } from '../testbed/errors.js';
import { cacheEntry, ensureImages, imageKey, type BuiltImage } from './index.js';

// Builds the test bed's images with buildah (or takes them from the cache) and reads the
// archives back the way containerd will: index.json → manifest → config and layers.

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const scratch = mkdtempSync(join(tmpdir(), 'spillway-images-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function entry(archive: string, path: string): Buffer {
  return execFileSync('tar', ['-xOf', archive, path], { maxBuffer: 64 << 20 });
}

function blob(archive: string, digest: string): Buffer {
  const bytes = entry(archive, `blobs/${digest.replace(':', '/')}`);
  // Content-addressed: a blob whose bytes do not hash to its name is corrupt.
  expect(`sha256:${createHash('sha256').update(bytes).digest('hex')}`).toBe(digest);
  return bytes;
}

/** The image's manifest, config and unpacked layers, checked as it reads them. */
function open(image: BuiltImage): {
  config: { architecture: string; os: string; config: Record<string, unknown> };
  rootfs: string;
} {
  const layout = JSON.parse(entry(image.archive, 'oci-layout').toString()) as {
    imageLayoutVersion: string;
  };
  expect(layout.imageLayoutVersion).toBe('1.0.0');
  const index = JSON.parse(entry(image.archive, 'index.json').toString()) as {
    manifests: Descriptor[];
  };
  expect(index.manifests).toHaveLength(1);
  const [desc] = index.manifests as [Descriptor];
  expect(desc.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  expect(desc.annotations?.['org.opencontainers.image.ref.name']).toBe(image.ref);
  const manifest = JSON.parse(blob(image.archive, desc.digest).toString()) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const config = JSON.parse(blob(image.archive, manifest.config.digest).toString()) as {
    architecture: string;
    os: string;
    config: Record<string, unknown>;
  };
  const rootfs = mkdtempSync(join(scratch, `${image.name}-`));
  for (const layer of manifest.layers) {
    const file = join(scratch, layer.digest.replace(':', '-'));
    execFileSync('sh', ['-c', 'cat > "$1"', 'sh', file], {
      input: blob(image.archive, layer.digest),
    });
    execFileSync('tar', ['-xf', file, '-C', rootfs]);
  }
  return { config, rootfs };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

describe('test bed images', () => {
  it('builds pause and workload once, then serves them from the cache', async () => {
    const lines: string[] = [];
    const first = await ensureImages(['pause', 'workload'], { log: (l) => lines.push(l) });
    const again = await ensureImages(['pause', 'workload'], { log: (l) => lines.push(l) });
    for (const name of ['pause', 'workload'] as const) {
      expect(again[name].cached).toBe(true);
      expect(again[name].archive).toBe(first[name].archive);
      expect(first[name].key).toBe(await imageKey(name));
      expect(first[name].ref).toBe(`docker.io/local/${name}:${first[name].key.slice(0, 16)}`);
      expect(first[name].podImage).toBe(`local/${name}:${first[name].tag}`);
      expect(cacheEntry(name, first[name].key).complete).toBe(true);
    }
    // Every progress line tells the elapsed time.
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const line of lines) expect(line).toMatch(/^images: .*\(\d+\.\d s\)$/);
  }, 600_000);

  it('pause: one static binary that names its tag, exits 0 on TERM and reaps children', async () => {
    const { pause } = await ensureImages(['pause'], { log: () => {} });
    const { config, rootfs } = open(pause);
    expect(config.os).toBe('linux');
    expect(config.config['Entrypoint']).toEqual(['/pause']);
    expect(execFileSync('find', [rootfs, '-type', 'f'], { encoding: 'utf8' }).trim()).toBe(
      join(rootfs, 'pause'),
    );
    expect(execFileSync(join(rootfs, 'pause'), ['-v'], { encoding: 'utf8' }).trim()).toBe(
      `spillway-pause ${pause.tag}`,
    );
    // As PID 1 of a new PID namespace (unshare): an orphaned child is reaped (no zombie
    // left), and TERM ends it with status 0.
    const script = [
      `unshare --pid --fork --mount-proc sh -c '(sleep 0.2 &) ; exec "$0"' ${join(rootfs, 'pause')} &`,
      'outer=$!',
      'for i in $(seq 100); do p=$(pgrep -P $outer | head -n1); [ -n "$p" ] && break; sleep 0.1; done',
      'sleep 1',
      // The pause process is $p; its orphaned sleep must be gone, not <defunct>.
      'zombies=$(ps -o stat= --ppid $p | grep -c Z || true)',
      'kill -TERM $p; wait $outer; echo "status=$? zombies=$zombies comm=$(cat /proc/$p/comm 2>/dev/null || echo gone)"',
    ].join('\n');
    const out = execFileSync('bash', ['-c', script], { encoding: 'utf8' }).trim();
    expect(out).toBe('status=0 zombies=0 comm=gone');
  }, 600_000);

  it('workload: busybox with a shell, nc and httpd', async () => {
    const { workload } = await ensureImages(['workload'], { log: () => {} });
    const { config, rootfs } = open(workload);
    expect(config.config['Cmd']).toEqual(['/bin/sh']);
    expect(config.config['Env']).toContain('PATH=/bin');
    const passwd = readFileSync(join(rootfs, 'etc', 'passwd'), 'utf8');
    expect(passwd).toMatch(/^nobody:x:65534:/m);
    for (const applet of ['sh', 'nc', 'httpd', 'wget', 'hostname', 'sleep']) {
      expect(readlinkSync(join(rootfs, 'bin', applet))).toBe('busybox');
    }
    // The image's own shell, httpd and wget, inside its root filesystem: serve its page on
    // a free loopback port and read it back.
    // A container runtime gives the container a /dev; here a /dev/null is enough.
    mkdirSync(join(rootfs, 'dev'), { recursive: true });
    execFileSync('mknod', ['-m', '666', join(rootfs, 'dev', 'null'), 'c', '1', '3']);
    const port = await freePort();
    const out = execFileSync(
      '/usr/sbin/chroot',
      [
        rootfs,
        '/bin/sh',
        '-c',
        `httpd -f -p 127.0.0.1:${port} -h /www & pid=$!
         for i in $(seq 100); do wget -qO- http://127.0.0.1:${port}/ && break; sleep 0.1; done
         kill $pid`,
      ],
      { encoding: 'utf8', env: { PATH: '/bin' } },
    );
    expect(out.trim()).toBe('hello from the Spillway workload image');
  }, 600_000);

  it('refuses an unknown image by name, building nothing', async () => {
    const cacheDir = mkdtempSync(join(scratch, 'cache-'));
    const err = await ensureImages(['pause', 'nope' as 'pause'], { cacheDir }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TestbedError);
    expect((err as TestbedError).message).toBe(
      "unknown image 'nope' (known: pause, workload, spillway-base, spillway)",
    );
    expect(readdirSync(cacheDir)).toEqual([]);
  });
});
