// The test bed's own guarantees: clear failures, restartable API servers, and
// no process left behind however the test process ends.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BUILD_SCRIPT,
  cpuNode,
  gpuNode,
  poll,
  startTestbed,
  stopAll,
  TestbedError,
} from './index.js';
import { get } from './wait.js';

const e2eDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const execFileAsync = promisify(execFile);

afterAll(async () => {
  await stopAll();
});

/** PIDs of live processes whose command line mentions `dir`. */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const state = /^State:\s+(\w)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (cmdline.includes(dir) && state !== 'Z') pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `spillway-${prefix}-`));
}

describe('test bed harness', () => {
  it('fails start-up with one line naming the component and its log, and leaves nothing running', async () => {
    const workDir = tempDir('broken');
    try {
      const start = startTestbed({
        workDir,
        clusters: [
          { name: 'healthy', nodes: [cpuNode('healthy-0')] },
          { name: 'broken', extraArgs: { 'kube-apiserver': ['--no-such-flag=1'] } },
        ],
      });
      const err: unknown = await start.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TestbedError);
      const { code, message } = err as TestbedError;
      expect(code).toBe('TESTBED_COMPONENT_EXITED');
      expect(message.split('\n')[0]).toMatch(
        /^kube-apiserver of cluster broken exited during start-up; see .*broken\/logs\/kube-apiserver\.log:$/,
      );
      expect(message).toContain('unknown flag: --no-such-flag');
      expect(processesUsing(workDir)).toEqual([]);
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("restarts a cluster's kube-apiserver on the same port and data, and stop() ends every process", async () => {
    const testbed = await startTestbed({
      clusters: [{ name: 'solo', nodes: [gpuNode('solo-gpu-0', 2, 'L4')] }],
    });
    const solo = testbed.cluster('solo');
    expect(processesUsing(testbed.workDir)).toHaveLength(5);
    await solo.core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'survives' }, data: { k: 'v' } },
    });

    await solo.stopApiServer();
    await expect(get(`${solo.server}/livez`, { ca: solo.pki.ca.certPem })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    await solo.startApiServer();
    const cm = await solo.core.readNamespacedConfigMap({ name: 'survives', namespace: 'default' });
    expect(cm.data).toEqual({ k: 'v' });
    // The controllers reconnect, so the cluster still runs pods.
    await solo.core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'after-restart' },
        spec: {
          containers: [
            {
              name: 'c',
              image: 'example.com/c:1',
              resources: { limits: { 'nvidia.com/gpu': '1' } },
            },
          ],
        },
      },
    });
    await poll(
      async () => {
        const pod = await solo.core.readNamespacedPod({
          name: 'after-restart',
          namespace: 'default',
        });
        return pod.status?.phase === 'Running' ? pod : undefined;
      },
      { timeoutMs: 60_000, what: 'pod after-restart to run' },
    );
    // kwok's server (the fake nodes' kubelet endpoint) answers on its own port.
    expect((await get(`${solo.kwokServer}/healthz`, { ca: solo.pki.ca.certPem })).status).toBe(200);
    expect(testbed.rssBytes()).toBeGreaterThan(0);

    await testbed.stop();
    expect(processesUsing(testbed.workDir)).toEqual([]);
    expect(existsSync(testbed.workDir)).toBe(false);
  });

  it('kills the clusters of a test process that is killed with SIGKILL', async () => {
    // The compiled harness runs in a plain Node child, which is then killed
    // without a chance to clean up: the watchdog must end its components.
    const tsc = spawnSync(join(e2eDir, '..', 'node_modules', '.bin', 'tsc'), ['-b', e2eDir], {
      encoding: 'utf8',
    });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    const workDir = tempDir('sigkill');
    const script = `
      import { startTestbed, cpuNode } from ${JSON.stringify(join(e2eDir, 'dist', 'testbed', 'index.js'))};
      await startTestbed({ workDir: ${JSON.stringify(workDir)}, clusters: [{ name: 'doomed', nodes: [cpuNode('d-0')] }] });
      console.log('ready');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child.once('exit', (code) =>
          reject(new Error(`child exited (${code}) before its test bed was up`)),
        );
      });
      // The child's own command line names the work dir too.
      const components = (): number[] => processesUsing(workDir).filter((pid) => pid !== child.pid);
      expect(components()).toHaveLength(5);
      child.kill('SIGKILL');
      await poll(() => Promise.resolve(components().length === 0 ? true : undefined), {
        timeoutMs: 10_000,
        what: 'the killed test process to lose its clusters',
      });
    } finally {
      child.kill('SIGKILL');
      for (const pid of processesUsing(workDir)) process.kill(pid, 'SIGKILL');
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it('says in one line what to install when Go is missing', async () => {
    const cache = tempDir('no-go');
    try {
      const err = await execFileAsync('bash', [BUILD_SCRIPT], {
        env: {
          ...process.env,
          SPILLWAY_TESTBED_GO: '/nonexistent/go',
          SPILLWAY_TESTBED_CACHE: cache,
        },
      }).catch((e: unknown) => e as { code: number; stderr: string });
      expect(err).toMatchObject({ code: 1 });
      const lines = (err as { stderr: string }).stderr.trim().split('\n');
      expect(lines).toEqual([
        expect.stringMatching(
          /^testbed: Go 1\.22\+ is required to build the test bed: install it from/,
        ),
      ]);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
