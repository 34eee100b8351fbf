import { appendFile, readFile } from 'node:fs/promises';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuNode, gpuNode, podOutcome } from '../testbed/index.js';
import {
  LOG_LINES,
  WORK_NAMESPACE,
  criLogLine,
  gpuPodSpec,
  seconds,
  startSpillway,
  waitFor,
  type SpillwayBed,
} from './harness.js';

// `kubectl logs -f` on an offloaded pod follows the donor's log, and when the reader goes —
// kubectl, the shim, or the broker — the log request on the donor ends too. The donor's own
// API server says how many log requests it still holds open (apiserver_longrunning_requests).

let bed: SpillwayBed;

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    originNodes: [cpuNode('origin-cpu-0')],
    donorNodes: { 'donor-a': [gpuNode('donor-a-gpu-0', 8, 'A100-80GB')] },
    followLogs: true,
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
  await bed.origin.core.createNamespacedPod({
    namespace: WORK_NAMESPACE,
    body: {
      metadata: { name: 'follow', annotations: podOutcome('run') },
      spec: gpuPodSpec(1),
    },
  });
  await waitFor(
    'pod follow Running on spillway-donor-a',
    async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'follow',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Running' && p.spec?.nodeName === 'spillway-donor-a'
        ? p
        : undefined;
    },
    120_000,
  );
}, 300_000);

afterAll(async () => {
  await bed?.stop();
});

/** Pod log requests the donor's API server holds open right now. */
async function donorOpenLogRequests(): Promise<number> {
  const text = await bed.donors['donor-a']!.kubectl('get', '--raw', '/metrics');
  let open = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_longrunning_requests{')) continue;
    if (!line.includes('resource="pods"') || !line.includes('subresource="log"')) continue;
    open += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return open;
}

/** `kubectl logs -f` in the origin, with what it printed so far. */
function follow(): {
  proc: ChildProcessWithoutNullStreams;
  out: () => string;
  exited: Promise<number | null>;
} {
  const proc = bed.origin.spawnKubectl('logs', '-f', '-n', WORK_NAMESPACE, 'follow');
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

/** The agent's own record of how each log stream of the donor ended. */
async function agentLogEnds(): Promise<{ how: string; follow: boolean }[]> {
  const text = await readFile(bed.logFile, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.includes('"log stream ended"'))
    .map((l) => JSON.parse(l) as { how: string; follow: boolean; cluster?: string });
}

/** Starts a follow and waits until the donor holds its log request and it is live. */
async function following(marker: string): Promise<ReturnType<typeof follow>> {
  const f = follow();
  const printed = (s: string) => () => Promise.resolve(f.out().includes(s) ? true : undefined);
  try {
    await waitFor('kubectl logs -f to print the pod’s log', printed(LOG_LINES[2]!), 30_000);
    // A line the container prints now reaches kubectl: the follow is live end to end.
    await appendFile(bed.containerLog, criLogLine(marker));
    await waitFor(`kubectl logs -f to print "${marker}"`, printed(marker), 30_000);
    expect(await donorOpenLogRequests()).toBe(1);
  } catch (err) {
    f.proc.kill('SIGKILL');
    await f.exited;
    throw new Error(`${(err as Error).message}; kubectl printed: ${f.out()}`, { cause: err });
  }
  return f;
}

describe('kubectl logs -f on an offloaded pod', () => {
  it('follows the donor’s log, and ends the donor request when kubectl goes', async () => {
    const f = await following('checkpoint saved at step 100');
    const before = (await agentLogEnds()).length;
    f.proc.kill('SIGKILL');
    await waitFor('the donor to close the log request kubectl left', async () =>
      (await donorOpenLogRequests()) === 0 ? true : undefined,
    );
    const ends = await waitFor('the agent to record the end', async () => {
      const all = await agentLogEnds();
      return all.length > before ? all.slice(before) : undefined;
    });
    expect(ends).toEqual([
      expect.objectContaining({ how: 'cancelled by the broker', follow: true }),
    ]);
  });

  it('ends the donor request when the shim goes mid-stream', async () => {
    const f = await following('checkpoint saved at step 200');
    await bed.restartShim();
    await waitFor('the donor to close the log request the shim left', async () =>
      (await donorOpenLogRequests()) === 0 ? true : undefined,
    );
    // kubectl's connection ended with the shim's: it does not hang.
    await waitFor('kubectl logs -f to end', () =>
      Promise.resolve(f.proc.exitCode !== null || f.proc.signalCode !== null ? true : undefined),
    );
  });

  // Last: the bed's broker does not come back.
  it('ends the donor request when the broker goes mid-stream', async () => {
    await waitFor('the restarted shim to serve the pod again', async () => {
      const p = await bed.origin.core.readNamespacedPod({
        name: 'follow',
        namespace: WORK_NAMESPACE,
      });
      return p.status?.phase === 'Running' ? true : undefined;
    });
    const f = await waitFor(
      'a follow through the restarted shim',
      async () => {
        try {
          return await following('checkpoint saved at step 300');
        } catch {
          return undefined;
        }
      },
      90_000,
      1_000,
    );
    const before = (await agentLogEnds()).length;
    await bed.broker.stop();
    await waitFor('the donor to close the log request of the stream that ended', async () =>
      (await donorOpenLogRequests()) === 0 ? true : undefined,
    );
    const ends = await waitFor('the agent to record the end', async () => {
      const all = (await agentLogEnds()).slice(before).filter((e) => e.follow);
      return all.length > 0 ? all : undefined;
    });
    expect(ends[0]?.how).toBe('the broker stream that asked for it ended');
    f.proc.kill('SIGKILL');
  });
});
