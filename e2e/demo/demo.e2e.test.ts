// `npm run demo` as CI runs it: the built demo, not on a terminal, so it exits after the
// summary with 0 only if the Job completed with every pod on a donor.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../cli/harness.js';

const DEMO = join(ROOT, 'e2e/dist/demo/demo.js');

function runDemo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!existsSync(DEMO)) throw new Error(`${DEMO} is missing: run \`npm run build\` first`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, ...args], {
      env: { ...process.env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

describe('npm run demo', () => {
  it('refuses an unknown argument with one line and exit code 2', async () => {
    const r = await runDemo(['--forever']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('demo: unknown argument "--forever"; usage: npm run demo [-- --once]\n');
  });

  it('offloads the GPU Job to the one donor with its GPU product, and says so', async () => {
    const r = await runDemo(['--once']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const live = r.stdout.slice(r.stdout.indexOf('5. Live'), r.stdout.indexOf('Summary'));
    // Every pod: placed on donor-b, Running there, Succeeded. The origin has no H100, so the
    // shim offloads without waiting its grace and a pod may never be seen Pending.
    for (const step of [
      /placed by the broker on donor-b \(bound to virtual node spillway-donor-b\)/,
      /Running on donor-b node b-gpu-0 as spillway-origin\/ml-train-resnet-/,
      /train-resnet-\S+ +Succeeded/,
    ]) {
      expect(live.match(new RegExp(step.source, 'g'))?.length, step.source).toBe(2);
    }
    const summary = r.stdout.slice(r.stdout.indexOf('Summary'));
    expect(summary).toMatch(/Job ml\/train-resnet: Complete, every pod ran on a donor/);
    expect(
      summary.match(
        /^ {2}train-resnet-\S+\s+donor-b\s+b-gpu-0\s+\d+\.\ds\s+\d+\.\ds\s+Succeeded$/gm,
      ),
    ).toHaveLength(2);
    expect(summary).toMatch(
      /donor-a has NVIDIA-A100-SXM4-80GB; the broker placed them on donor-b\./,
    );
    expect(summary).toMatch(
      /Broker REST API: http:\/\/127\.0\.0\.1:\d+ {3}viewer token: at-[0-9a-f]+\.\S+/,
    );
    expect(r.stderr).toMatch(/demo: stopping the agents, the shim, the broker and the test bed\n$/);
  }, 300_000);
});
