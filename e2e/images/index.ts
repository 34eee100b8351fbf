// The container images the test bed's real nodes run, built here with buildah (no registry,
// no Docker engine) as OCI archives and cached under ~/.cache/spillway/images by a hash of
// their inputs. A real node imports the archives into its containerd
// (`ctr -n k8s.io images import <archive>`), and pods name them `local/<name>:<tag>`.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestbedError } from '../testbed/errors.js';

/** The images the test bed can build. */
export const IMAGE_NAMES = ['pause', 'workload', 'spillway-base', 'spillway'] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];

/** One image ready to import: its archive and the names it goes by. */
export interface BuiltImage {
  name: ImageName;
  /** The full reference stored in the archive, e.g. `docker.io/local/pause:3f2a…`. */
  ref: string;
  /** What a pod spec says: `local/pause:3f2a…` (containerd expands it to `ref`). */
  podImage: string;
  /** The tag: the first 16 hex digits of `key`. */
  tag: string;
  /** The OCI archive (`oci-archive` layout in a tar file). */
  archive: string;
  /** sha256 of the image's inputs (recipe, sources, the binaries copied in). */
  key: string;
  /** True when the archive came from the cache, false when this call built it. */
  cached: boolean;
}

export type BuiltImages = { [N in ImageName]: BuiltImage };

export interface EnsureImagesOptions {
  /** Cache root (default $SPILLWAY_IMAGES_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/spillway/images). */
  cacheDir?: string;
  /** Where progress lines go (default: stderr). */
  log?: (line: string) => void;
}

/** Environment variable that moves the image cache. */
export const IMAGES_CACHE_ENV = 'SPILLWAY_IMAGES_CACHE';

// Works from the .ts sources (vitest) and from dist/ (compiled), which both sit under e2e/.
const here = dirname(fileURLToPath(import.meta.url));
/** The directory with build.sh, install-tools.sh and the images' sources. */
export const IMAGES_DIR =
  basename(dirname(here)) === 'dist' ? join(here, '..', '..', 'images') : here;
export const BUILD_SCRIPT = join(IMAGES_DIR, 'build.sh');

/** The repository root: the Spillway image's build context. */
export const REPO_DIR = join(IMAGES_DIR, '..', '..');
/** The Node 24 binary the repository's `node` devDependency installed (as node:24-slim has). */
export const NODE_BIN = join(REPO_DIR, 'node_modules', 'node', 'bin', 'node');

/** The npm package the base image carries: $SPILLWAY_IMAGES_NPM, else the `npm` on PATH. */
export function npmDir(): string {
  const fromEnv = process.env['SPILLWAY_IMAGES_NPM'];
  if (fromEnv) return fromEnv;
  const found = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  if (!found) {
    throw new TestbedError(
      'TESTBED_BUILD_FAILED',
      'image spillway-base: no npm on PATH to put in the image (or set SPILLWAY_IMAGES_NPM to an npm package directory)',
    );
  }
  // .../lib/node_modules/npm/bin/npm-cli.js → .../lib/node_modules/npm
  return dirname(dirname(realpathSync(found)));
}

// The Dockerfile's build context as .dockerignore leaves it: manifests, lockfile, tsconfigs,
// proto/ and the packages' sources (no node_modules, dist, build info or tests).
const CONTEXT_FILES = [
  'Dockerfile',
  '.dockerignore',
  'package.json',
  'package-lock.json',
  'tsconfig.base.json',
  'tsconfig.json',
  'e2e/package.json',
];
const CONTEXT_DIRS = ['proto', 'packages'];
const CONTEXT_SKIP = /(^|\/)(node_modules|dist)(\/|$)|\.tsbuildinfo$|\.test\.ts$/;

async function contextFiles(): Promise<string[]> {
  const files = CONTEXT_FILES.map((f) => join(REPO_DIR, f));
  for (const dir of CONTEXT_DIRS) {
    const entries = await readdir(join(REPO_DIR, dir), { recursive: true, withFileTypes: true });
    const found = entries
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .filter((f) => !CONTEXT_SKIP.test(f.slice(REPO_DIR.length)));
    files.push(...found.sort());
  }
  return files;
}

/** The files whose bytes decide each image; a change to any of them gives a new tag. */
async function inputFiles(name: ImageName): Promise<string[]> {
  const recipe = [BUILD_SCRIPT];
  switch (name) {
    case 'pause':
      return [...recipe, join(IMAGES_DIR, 'pause', 'pause.c')];
    case 'workload':
      // The image is Debian's static busybox: its binary is an input.
      return [...recipe, '/bin/busybox'];
    case 'spillway-base': {
      const npm = npmDir();
      return [...recipe, NODE_BIN, join(npm, 'package.json'), join(npm, 'bin', 'npm-cli.js')];
    }
    case 'spillway':
      return [...recipe, ...(await contextFiles())];
  }
}

/** The cache directory used when none is given. */
export function defaultCacheDir(): string {
  const fromEnv = process.env[IMAGES_CACHE_ENV];
  if (fromEnv) return fromEnv;
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'spillway', 'images');
}

/** sha256 over an image's name and the names and bytes of its inputs; missing files count. */
export async function imageKey(name: ImageName): Promise<string> {
  const hash = createHash('sha256').update(`spillway-image-v1 ${name}\n`);
  // The Spillway image is built on the base image: a new base is a new Spillway image.
  if (name === 'spillway') hash.update(`base ${await imageKey('spillway-base')}\n`);
  for (const file of await inputFiles(name)) {
    hash.update(`${file.startsWith(REPO_DIR) ? file.slice(REPO_DIR.length) : file}\n`);
    const bytes = await readFile(file).catch(() => undefined);
    hash.update(bytes === undefined ? 'missing\n' : `${bytes.length}\n`);
    if (bytes !== undefined) hash.update(bytes);
  }
  return hash.digest('hex');
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

function runBuild(
  name: ImageName,
  out: string,
  ref: string,
  log: (line: string) => void,
  started: number,
  env: Record<string, string>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT, name, out, ref], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const tail: string[] = [];
    let partial = '';
    const onLine = (line: string): void => {
      if (line.length === 0) return;
      tail.push(line);
      if (tail.length > 20) tail.shift();
      // The script's own lines ("images: ...") are progress; anything else is tool output.
      log(line.startsWith('images: ') ? `${line} (${seconds(started)})` : `images:   ${line}`);
    };
    const onData = (d: string): void => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(onLine);
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('error', (err) =>
      reject(
        new TestbedError('TESTBED_BUILD_FAILED', `cannot run ${BUILD_SCRIPT}: ${err.message}`),
      ),
    );
    child.once('close', (status) => {
      onLine(partial);
      if (status === 0) return resolve();
      const last = tail[tail.length - 1] ?? '';
      reject(
        new TestbedError(
          'TESTBED_BUILD_FAILED',
          `image ${name}: ${BUILD_SCRIPT} failed with exit code ${status ?? 'none'}` +
            (last ? `: ${last.replace(/^images: /, '')}` : ''),
          { reported: true },
        ),
      );
    });
  });
}

/** Where an image with this key lives in the cache, and whether it is complete there. */
export function cacheEntry(
  name: ImageName,
  key: string,
  cacheDir = defaultCacheDir(),
): { dir: string; archive: string; complete: boolean } {
  const dir = join(cacheDir, name, key);
  const archive = join(dir, 'image.tar');
  const stamp = join(dir, '.complete');
  const complete = existsSync(archive) && existsSync(stamp);
  return { dir, archive, complete };
}

/** What build.sh needs beyond its arguments for one image. */
function buildEnv(name: ImageName, built: Map<ImageName, BuiltImage>): Record<string, string> {
  switch (name) {
    case 'spillway-base':
      return { NODE_BIN, NPM_DIR: npmDir() };
    case 'spillway': {
      const base = built.get('spillway-base');
      if (!base) throw new Error('spillway-base must be ensured before spillway');
      const npmCache = process.env['npm_config_cache'] ?? join(homedir(), '.npm');
      return {
        REPO: REPO_DIR,
        BASE_ARCHIVE: base.archive,
        BASE_REF: base.ref,
        NPM_CACHE: npmCache,
      };
    }
    default:
      return {};
  }
}

/**
 * Builds the named images unless the cache has them (milliseconds when cached, seconds
 * to minutes cold), printing a progress line per step with the elapsed time. Images are
 * built one after another: the machine has two cores. A failure is a TestbedError whose
 * message names the image and the build's last word.
 */
export async function ensureImages<const N extends ImageName = ImageName>(
  names: readonly N[] = IMAGE_NAMES as unknown as readonly N[],
  options: EnsureImagesOptions = {},
): Promise<{ [K in N]: BuiltImage }> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const unknown = names.filter((n) => !(IMAGE_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new TestbedError(
      'TESTBED_BAD_OPTIONS',
      `unknown image ${unknown.map((n) => `'${n}'`).join(', ')} (known: ${IMAGE_NAMES.join(', ')})`,
    );
  }
  const started = Date.now();
  const result = {} as { [K in N]: BuiltImage };
  const built = new Map<ImageName, BuiltImage>();
  // The Spillway image needs its base first.
  const order: ImageName[] = names.includes('spillway' as N)
    ? [
        ...names.filter((n) => n !== 'spillway' && n !== 'spillway-base'),
        'spillway-base',
        'spillway',
      ]
    : [...names];
  for (const name of order) {
    const key = await imageKey(name);
    const tag = key.slice(0, 16);
    const ref = `docker.io/local/${name}:${tag}`;
    const entry = cacheEntry(name, key, cacheDir);
    const cached = entry.complete;
    if (!cached) {
      log(`images: ${name}: building ${ref} (${seconds(started)})`);
      await runBuild(name, entry.dir, ref, log, started, buildEnv(name, built));
      if (!cacheEntry(name, key, cacheDir).complete) {
        throw new TestbedError(
          'TESTBED_BUILD_FAILED',
          `image ${name}: ${BUILD_SCRIPT} finished without writing ${entry.archive}`,
        );
      }
    }
    const stored = readFileSync(join(entry.dir, '.complete'), 'utf8').trim();
    if (stored !== ref) {
      throw new TestbedError(
        'TESTBED_BUILD_FAILED',
        `image ${name}: the cache entry ${entry.dir} holds ${stored || 'nothing'}, not ${ref}: delete it and rerun`,
      );
    }
    log(`images: ${name}: ${cached ? 'cached' : 'built'} ${entry.archive} (${seconds(started)})`);
    const image: BuiltImage = {
      name,
      ref,
      podImage: ref.replace(/^docker\.io\//, ''),
      tag,
      archive: entry.archive,
      key,
      cached,
    };
    built.set(name, image);
    if ((names as readonly ImageName[]).includes(name)) result[name as N] = image;
  }
  return result;
}
