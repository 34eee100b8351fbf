/** Pure: the kubelet API's containerLogs request, as the API server sends it for `kubectl logs`. */

export interface LogRequest {
  namespace: string;
  pod: string;
  container: string;
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  /** 0 means all lines. */
  tailLines: number;
  /** 0 means from the start. */
  sinceSeconds: number;
  /** Stop after this many bytes; 0 means no limit. */
  limitBytes: number;
}

function bool(v: string | null): boolean {
  return v === 'true' || v === '1';
}

function nonNegativeInt(v: string | null, name: string): number {
  if (v === null || v === '') return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
}

/**
 * Parses `/containerLogs/{namespace}/{pod}/{container}?follow=…`; undefined for other
 * paths, an Error for a malformed query.
 */
export function parseLogRequest(url: URL, now = Date.now()): LogRequest | undefined {
  const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
  if (!m) return undefined;
  const q = url.searchParams;
  let sinceSeconds = nonNegativeInt(q.get('sinceSeconds'), 'sinceSeconds');
  const sinceTime = q.get('sinceTime');
  if (sinceTime) {
    const t = new Date(sinceTime).getTime();
    if (Number.isNaN(t)) throw new Error('sinceTime must be an RFC 3339 time');
    sinceSeconds = Math.max(1, Math.ceil((now - t) / 1000));
  }
  return {
    namespace: decodeURIComponent(m[1]!),
    pod: decodeURIComponent(m[2]!),
    container: decodeURIComponent(m[3]!),
    follow: bool(q.get('follow')),
    previous: bool(q.get('previous')),
    timestamps: bool(q.get('timestamps')),
    tailLines: nonNegativeInt(q.get('tailLines'), 'tailLines'),
    sinceSeconds,
    limitBytes: nonNegativeInt(q.get('limitBytes'), 'limitBytes'),
  };
}

/** Kubelet endpoints a virtual node cannot serve: the containers run on another cluster. */
export const UNSUPPORTED_PREFIXES = [
  '/exec/',
  '/attach/',
  '/portForward/',
  '/run/',
  '/cri/',
  '/debug/',
  '/checkpoint/',
];
