import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDonorLog } from './donor-log.js';
import { toKubeAwareError } from './executor.js';

/**
 * The donor log request against a real HTTP server that plays the API server's pod log
 * endpoint: a followed log that never ends, and refusals with a v1.Status body.
 */

let server: http.Server;
let kc: KubeConfig;
/** Open follow connections the server holds right now. */
let following = 0;
const seen: string[] = [];
const auth: (string | undefined)[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    auth.push(req.headers.authorization);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname.endsWith('/pods/gone/log')) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          status: 'Failure',
          message: 'container "train" in pod "gone" is terminated',
          code: 400,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    following++;
    let n = 0;
    const t = setInterval(() => res.write(`line ${++n}\n`), 20);
    req.socket.once('close', () => {
      clearInterval(t);
      following--;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'donor',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'agent', token: 'agent-token' }],
    contexts: [{ name: 'donor', cluster: 'donor', user: 'agent' }],
    currentContext: 'donor',
  });
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const FOLLOW = { follow: true, previous: false, timestamps: false, tailLines: 5, sinceSeconds: 0 };

describe('openDonorLog', () => {
  it('follows until aborted, then the donor connection is closed and nothing is thrown', async () => {
    const abort = new AbortController();
    const body = await openDonorLog(kc, 'spillway-o', 'train-0', 'train', FOLLOW, abort.signal);
    expect(seen.at(-1)).toBe(
      '/api/v1/namespaces/spillway-o/pods/train-0/log?container=train&follow=true&tailLines=5',
    );
    expect(auth.at(-1)).toBe('Bearer agent-token');
    let text = '';
    const read = (async () => {
      for await (const c of body as AsyncIterable<Buffer>) {
        text += c.toString();
        if (text.includes('line 3\n')) abort.abort(new Error('cancelled by the broker'));
      }
    })();
    await expect(read).rejects.toThrow();
    expect(abort.signal.aborted).toBe(true);
    expect(text).toMatch(/^line 1\nline 2\nline 3\n/);
    await until(() => following === 0, 'the donor to see its log connection closed');
  });

  it('aborted before the API server answers, it never opens the stream', async () => {
    const abort = new AbortController();
    abort.abort(new Error('the broker stream that asked for it ended'));
    await expect(
      openDonorLog(kc, 'spillway-o', 'train-0', 'train', FOLLOW, abort.signal),
    ).rejects.toThrow(/broker stream/);
    expect(following).toBe(0);
  });

  it('carries the donor’s refusal with its status and words', async () => {
    const err = await openDonorLog(
      kc,
      'spillway-o',
      'gone',
      'train',
      FOLLOW,
      new AbortController().signal,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    const e = toKubeAwareError(err);
    expect(e.message).toBe('container "train" in pod "gone" is terminated');
    expect(e.code).toBe('POD_REFUSED');
  });
});
