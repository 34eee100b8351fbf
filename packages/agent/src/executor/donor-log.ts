import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode, SpillwayError } from '@spillway/common';

/**
 * One pod log request to the donor's API server, on node:http(s) with the kubeconfig's TLS
 * and credentials. Not client-node's Log: that one cannot be aborted before the API server
 * answers, throws an uncaught AbortError when it is aborted later, and drops the body of a
 * refusal (so the origin would read "Error occurred in log request" instead of the donor's
 * words).
 */

export interface DonorLogOptions {
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  /** 0 means all lines. */
  tailLines: number;
  /** 0 means from the start. */
  sinceSeconds: number;
}

/** A refusal from the donor's API server, with its HTTP status and its message. */
export class DonorHttpError extends Error {
  constructor(
    /** The HTTP status: apiStatus() and toKubeAwareError() read it as `code`. */
    readonly code: number,
    /** The response body (a v1.Status as JSON, usually): apiMessage() reads its message. */
    readonly body: string,
  ) {
    super(`donor API server answered ${code}`);
    this.name = 'DonorHttpError';
  }
}

const ERROR_BODY_MAX = 64 * 1024;

export function logPath(namespace: string, pod: string, container: string, o: DonorLogOptions) {
  const q = new URLSearchParams({ container });
  if (o.follow) q.set('follow', 'true');
  if (o.previous) q.set('previous', 'true');
  if (o.timestamps) q.set('timestamps', 'true');
  if (o.tailLines > 0) q.set('tailLines', String(o.tailLines));
  if (o.sinceSeconds > 0) q.set('sinceSeconds', String(o.sinceSeconds));
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log?${q.toString()}`;
}

/**
 * Resolves with the log body once the API server answers 200; rejects with a
 * DonorHttpError for any other status. Aborting `signal` closes the connection at any
 * point, before or after the answer; the returned stream then ends with an AbortError.
 */
export async function openDonorLog(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  container: string,
  opts: DonorLogOptions,
  signal: AbortSignal,
): Promise<http.IncomingMessage> {
  const cluster = kc.getCurrentCluster();
  if (!cluster)
    throw new SpillwayError(ErrorCode.INVALID_CONFIG, 'the kubeconfig has no current cluster');
  const base = new URL(cluster.server);
  const reqOpts: https.RequestOptions = {
    method: 'GET',
    headers: { Accept: '*/*' },
  };
  await kc.applyToHTTPSOptions(reqOpts);
  signal.throwIfAborted();
  const url = new URL(
    base.pathname.replace(/\/$/, '') + logPath(namespace, pod, container, opts),
    base,
  );
  const lib = url.protocol === 'http:' ? http : https;
  return new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = lib.request(url, { ...reqOpts, signal }, (res) => {
      const status = res.statusCode ?? 0;
      if (status === 200) {
        resolve(res);
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < ERROR_BODY_MAX) parts.push(c);
        size += c.length;
      });
      res.on('error', reject);
      res.on('end', () =>
        reject(
          new DonorHttpError(status, Buffer.concat(parts).subarray(0, ERROR_BODY_MAX).toString()),
        ),
      );
    });
    req.on('error', reject);
    req.end();
  });
}
