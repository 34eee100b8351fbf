// A real broker process for the security scenarios: `node packages/broker/dist/main.js`
// on free loopback ports with a temporary data dir, as an operator would run it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ADMIN_TOKEN = 'spillway-e2e-admin-0123456789';
export const VIEWER_TOKEN = 'spillway-e2e-viewer-0123456789';

const MAIN = fileURLToPath(new URL('../../packages/broker/dist/main.js', import.meta.url));

export interface BrokerProcess {
  child: ChildProcess;
  dataDir: string;
  grpcAddress: string;
  restUrl: string;
  caPem: string;
  /** The broker CA's key, which an operator holds: lets a test mint certificates it never would. */
  caKeyPem: string;
  rest(
    method: string,
    path: string,
    opts?: { token?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<{ status: number; body: unknown; headers: Headers }>;
  stop(): Promise<void>;
}

export async function startBrokerProcess(
  flags: string[] = [],
  timeoutMs = 30_000,
): Promise<BrokerProcess> {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} is missing: run \`npm run build\` (tsc -b) before the e2e suite`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'spillway-sec-'));
  const child = spawn(
    process.execPath,
    [
      MAIN,
      '--data-dir',
      dataDir,
      '--grpc-host',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--http-host',
      '127.0.0.1',
      '--http-port',
      '0',
      '--admin-token',
      ADMIN_TOKEN,
      '--viewer-token',
      VIEWER_TOKEN,
      '--log-level',
      'info',
      ...flags,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } },
  );
  const stderr: string[] = [];
  child.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
  let grpcPort: number | undefined;
  let httpPort: number | undefined;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`broker did not start in ${timeoutMs} ms: ${stderr.join('')}`)),
      timeoutMs,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code}: ${stderr.join('')}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      let rec: { msg?: string; port?: number };
      try {
        rec = JSON.parse(line) as { msg?: string; port?: number };
      } catch {
        return;
      }
      if (rec.msg === 'gRPC (mTLS) listening') grpcPort = rec.port;
      if (rec.msg === 'REST API listening') httpPort = rec.port;
      if (grpcPort !== undefined && httpPort !== undefined) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.removeAllListeners('exit');
  const restUrl = `http://127.0.0.1:${httpPort}`;
  const pki = join(dataDir, 'pki');
  const bp: BrokerProcess = {
    child,
    dataDir,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    restUrl,
    caPem: await readFile(join(pki, 'ca.crt'), 'utf8'),
    caKeyPem: await readFile(join(pki, 'ca.key'), 'utf8'),
    async rest(method, path, opts = {}) {
      const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
      const res = await fetch(`${restUrl}${path}`, {
        method,
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...opts.headers,
        },
        ...(opts.body === undefined
          ? {}
          : { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) }),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        // Not JSON (metrics); the text is the body.
      }
      return { status: res.status, body, headers: res.headers };
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return bp;
}

/** A join token minted through the REST API, as `spillctl` does. */
export async function mintJoinToken(
  b: BrokerProcess,
  clusterId: string,
  role: 'origin' | 'donor' | 'both',
): Promise<string> {
  const res = await b.rest('POST', '/api/v1/join-tokens', { body: { clusterId, role } });
  if (res.status !== 201) throw new Error(`join token: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { token: string }).token;
}
