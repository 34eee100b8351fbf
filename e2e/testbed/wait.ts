import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { TestbedError } from './errors.js';

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** What is awaited, for the timeout message: "kube-apiserver of origin to be ready". */
  what: string;
  /** Checked every round: a reason to stop waiting at once (e.g. the process died). */
  abort?: () => Error | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `check` until it returns a value other than `undefined` (or throws a
 * TestbedError), and fails with one line after `timeoutMs`.
 */
export async function poll<T>(check: () => Promise<T | undefined>, opts: PollOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted) throw aborted;
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof TestbedError) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new TestbedError(
        'TESTBED_TIMEOUT',
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${detail}`,
        { cause: last },
      );
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  /** Only for components that serve a self-signed certificate on loopback. */
  insecure?: boolean;
}

/** GET a URL on loopback; resolves with status and body, never throws on HTTP status. */
export function get(
  url: string,
  tls: TlsOptions = {},
  timeoutMs = 2_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: import('node:http').IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    };
    const req = url.startsWith('https:')
      ? request(
          url,
          {
            ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
            ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
            ...(tls.key !== undefined ? { key: tls.key } : {}),
            rejectUnauthorized: tls.insecure !== true,
            timeout: timeoutMs,
            agent: false,
          },
          onResponse,
        )
      : httpRequest(url, { timeout: timeoutMs, agent: false }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
