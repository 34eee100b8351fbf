import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ErrorCode, SpillwayError, type ErrorCode as Code } from '@spillway/common';
import type {
  ApiTokenCreated,
  ApiTokenRequest,
  CapacityQuery,
  CapacitySummary,
  ClusterDetail,
  ClusterList,
  ClusterView,
  ErrorBody,
  IssuedJoinToken,
  JoinTokenRequest,
  OffloadList,
  OffloadsQuery,
  PatchClusterRequest,
  PeeringList,
  PeeringQuery,
  PeeringRequest,
  PeeringView,
  PlacementResult,
  SimulateRequest,
  UsageQuery,
  UsageReport,
} from '@spillway/api/rest';

export interface RestOptions {
  /** http(s)://host:port of the broker's REST API. */
  server: string;
  token?: string | undefined;
  /** For an https:// server: the broker CA and, optionally, an admin client certificate. */
  caPem?: string | undefined;
  certPem?: string | undefined;
  keyPem?: string | undefined;
  /** Per-request timeout. */
  timeoutMs: number;
}

const KNOWN = new Set<string>(Object.values(ErrorCode));

/** The broker's REST API (/api/v1), one method per route spillctl uses. */
export class BrokerRest {
  constructor(private readonly opts: RestOptions) {}

  get server(): string {
    return this.opts.server;
  }

  listClusters(): Promise<ClusterList> {
    return this.call('GET', '/api/v1/clusters');
  }
  getCluster(id: string): Promise<ClusterDetail> {
    return this.call('GET', `/api/v1/clusters/${encodeURIComponent(id)}`);
  }
  patchCluster(id: string, body: PatchClusterRequest): Promise<ClusterView> {
    return this.call('PATCH', `/api/v1/clusters/${encodeURIComponent(id)}`, body);
  }
  createJoinToken(body: JoinTokenRequest): Promise<IssuedJoinToken> {
    return this.call('POST', '/api/v1/join-tokens', body);
  }
  capacity(query: CapacityQuery): Promise<CapacitySummary> {
    return this.call('GET', '/api/v1/capacity', undefined, { ...query });
  }
  listPeerings(query: PeeringQuery = {}): Promise<PeeringList> {
    return this.call('GET', '/api/v1/peerings', undefined, { ...query });
  }
  createPeering(body: PeeringRequest): Promise<PeeringView> {
    return this.call('POST', '/api/v1/peerings', body);
  }
  deletePeering(origin: string, donor: string): Promise<void> {
    return this.call(
      'DELETE',
      `/api/v1/peerings/${encodeURIComponent(origin)}/${encodeURIComponent(donor)}`,
    );
  }
  drainPeering(origin: string, donor: string): Promise<PeeringView> {
    return this.call(
      'POST',
      `/api/v1/peerings/${encodeURIComponent(origin)}/${encodeURIComponent(donor)}/drain`,
      {},
    );
  }
  offloads(query: OffloadsQuery = {}): Promise<OffloadList> {
    return this.call('GET', '/api/v1/offloads', undefined, { ...query });
  }
  usage(query: Omit<UsageQuery, 'format'> = {}): Promise<UsageReport> {
    return this.call('GET', '/api/v1/usage', undefined, { ...query });
  }
  simulate(body: SimulateRequest): Promise<PlacementResult> {
    return this.call('POST', '/api/v1/placements:simulate', body);
  }
  createApiToken(body: ApiTokenRequest): Promise<ApiTokenCreated> {
    return this.call('POST', '/api/v1/api-tokens', body);
  }

  /** One request; non-2xx answers become SpillwayErrors with the broker's code and message. */
  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    query: Record<string, string | undefined> = {},
  ): Promise<T> {
    const url = new URL(path, `${this.opts.server}/`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const { status, text } = await this.send(method, url, headers, payload);
    const parsed = parseJson(text);
    if (status >= 200 && status < 300) return (status === 204 ? undefined : parsed) as T;
    throw errorFromBody(status, parsed, `${method} ${url.pathname}`);
  }

  private send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    payload: string | undefined,
  ): Promise<{ status: number; text: string }> {
    const server = this.opts.server;
    return new Promise((resolve, reject) => {
      const onResponse = (res: IncomingMessage): void => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      };
      const common = { method, headers, timeout: this.opts.timeoutMs };
      const req =
        url.protocol === 'https:'
          ? httpsRequest(
              url,
              {
                ...common,
                ...(this.opts.caPem ? { ca: this.opts.caPem } : {}),
                ...(this.opts.certPem && this.opts.keyPem
                  ? { cert: this.opts.certPem, key: this.opts.keyPem }
                  : {}),
              },
              onResponse,
            )
          : httpRequest(url, common, onResponse);
      req.on('timeout', () =>
        req.destroy(
          new SpillwayError(
            ErrorCode.TIMEOUT,
            `the broker at ${server} did not answer within ${this.opts.timeoutMs} ms`,
          ),
        ),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof SpillwayError) return reject(err);
        const why =
          err.code === 'ECONNREFUSED'
            ? 'connection refused'
            : err.code === 'ENOTFOUND'
              ? 'unknown host'
              : err.message;
        reject(
          new SpillwayError(
            ErrorCode.UNAVAILABLE,
            `cannot reach the broker at ${server}: ${why}; is it running? (set --server or SPILLWAY_SERVER)`,
            { cause: err },
          ),
        );
      });
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The broker answers `{"error": {code, message, field}}`; anything else still gets a line. */
export function errorFromBody(status: number, body: unknown, what: string): SpillwayError {
  // Typed loosely: a proxy in between, or an older broker, may answer something else.
  const e = (body as { error?: Partial<Record<keyof ErrorBody['error'], unknown>> } | undefined)
    ?.error;
  const code: Code =
    typeof e?.code === 'string' && KNOWN.has(e.code)
      ? (e.code as Code)
      : status === 401
        ? ErrorCode.UNAUTHENTICATED
        : status === 403
          ? ErrorCode.PERMISSION_DENIED
          : status === 404
            ? ErrorCode.NOT_FOUND
            : ErrorCode.INTERNAL;
  let message = typeof e?.message === 'string' ? e.message : `${what} answered HTTP ${status}`;
  if (code === ErrorCode.UNAUTHENTICATED) {
    message += '; pass --token or SPILLWAY_TOKEN, or run `spillctl broker init`';
  }
  return new SpillwayError(code, message, typeof e?.field === 'string' ? { field: e.field } : {});
}
