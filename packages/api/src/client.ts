import * as grpc from '@grpc/grpc-js';
import {
  Backoff,
  ErrorCode,
  SpillwayError,
  createCsr,
  fromGrpcError,
  generateKeyPair,
  inspectCertificate,
  type BackoffOptions,
  type Logger,
} from '@spillway/common';
import type { BrokerMessage__Output } from './gen/spillway/v1/BrokerMessage.js';
import type { ClusterMessage } from './gen/spillway/v1/ClusterMessage.js';
import type { ClusterServiceClient } from './gen/spillway/v1/ClusterService.js';
import type { Command__Output } from './gen/spillway/v1/Command.js';
import type { CreatePodRequest } from './gen/spillway/v1/CreatePodRequest.js';
import type { CreatePodResponse__Output } from './gen/spillway/v1/CreatePodResponse.js';
import type { DeletePodRequest } from './gen/spillway/v1/DeletePodRequest.js';
import type { DeletePodResponse__Output } from './gen/spillway/v1/DeletePodResponse.js';
import type { Hello } from './gen/spillway/v1/Hello.js';
import type { JoinRequest } from './gen/spillway/v1/JoinRequest.js';
import type { JoinResponse__Output } from './gen/spillway/v1/JoinResponse.js';
import type { RenewRequest } from './gen/spillway/v1/RenewRequest.js';
import type { RenewResponse__Output } from './gen/spillway/v1/RenewResponse.js';
import type { ListPodsRequest } from './gen/spillway/v1/ListPodsRequest.js';
import type { ListPodsResponse__Output } from './gen/spillway/v1/ListPodsResponse.js';
import type { LogChunk__Output } from './gen/spillway/v1/LogChunk.js';
import type { LogsRequest } from './gen/spillway/v1/LogsRequest.js';
import type { PeeringState__Output } from './gen/spillway/v1/PeeringState.js';
import type { PlacementServiceClient } from './gen/spillway/v1/PlacementService.js';
import type { PlaceRequest } from './gen/spillway/v1/PlaceRequest.js';
import type { PlaceGangRequest } from './gen/spillway/v1/PlaceGangRequest.js';
import type { PlaceGangResponse__Output } from './gen/spillway/v1/PlaceGangResponse.js';
import type { PlaceResponse__Output } from './gen/spillway/v1/PlaceResponse.js';
import type { PodEventReport__Output } from './gen/spillway/v1/PodEventReport.js';
import type { PodServiceClient } from './gen/spillway/v1/PodService.js';
import type { PodStatusEvent__Output } from './gen/spillway/v1/PodStatusEvent.js';
import type { ReleaseRequest } from './gen/spillway/v1/ReleaseRequest.js';
import type { ReleaseResponse__Output } from './gen/spillway/v1/ReleaseResponse.js';
import type { Welcome__Output } from './gen/spillway/v1/Welcome.js';
import { CHANNEL_OPTIONS, loadSpillwayV1 } from './index.js';

/**
 * What an agent and a virtual-node shim use to talk to the broker: joining (a key made
 * here, a CSR sent, a certificate back), one long-lived stream per component that
 * reconnects on its own, and the unary calls. Every failure is a SpillwayError.
 */

export type StreamComponent = 'agent' | 'virtual-node';

interface TlsTarget {
  /** host:port of the broker's gRPC port. */
  address: string;
  /** The broker CA, which signed the broker's serving certificate. */
  caPem: string;
  /** Name to check the broker's certificate against when it differs from the dial host. */
  serverName?: string;
}

function channelOptions(t: TlsTarget): grpc.ChannelOptions {
  return {
    ...CHANNEL_OPTIONS,
    ...(t.serverName === undefined
      ? {}
      : { 'grpc.ssl_target_name_override': t.serverName, 'grpc.default_authority': t.serverName }),
  };
}

function deadline(ms: number): grpc.Deadline {
  return new Date(Date.now() + ms);
}

/** Calls a callback-style unary method and turns its failure into a SpillwayError. */
function call<Req, Res>(
  fn: (
    req: Req,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: grpc.requestCallback<Res>,
  ) => unknown,
  req: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    fn(req, new grpc.Metadata(), { deadline: deadline(timeoutMs) }, (err, res) => {
      if (err) reject(fromGrpcError(err));
      else if (res === undefined)
        reject(new SpillwayError(ErrorCode.INTERNAL, 'empty response from the broker'));
      else resolve(res);
    });
  });
}

export interface JoinOptions {
  /** host:port of the broker's gRPC port. */
  brokerAddress: string;
  /** The broker CA, handed out with the join token. */
  caPem: string;
  /** The single-use join token minted by the broker's admin. */
  token: string;
  /** Generated here when not given; it never leaves this process. */
  privateKeyPem?: string;
  serverName?: string;
  timeoutMs?: number;
}

export interface JoinedIdentity {
  clusterId: string;
  certPem: string;
  keyPem: string;
  caPem: string;
  notAfter: string;
}

/** Exchanges a join token and a CSR for this cluster's certificate (server-authenticated TLS). */
export async function joinCluster(opts: JoinOptions): Promise<JoinedIdentity> {
  const keyPem = opts.privateKeyPem ?? generateKeyPair().privateKeyPem;
  const csrPem = createCsr(keyPem, 'spillway-cluster');
  const v1 = loadSpillwayV1();
  const target: TlsTarget = {
    address: opts.brokerAddress,
    caPem: opts.caPem,
    ...(opts.serverName === undefined ? {} : { serverName: opts.serverName }),
  };
  const client = new v1.ClusterService(
    target.address,
    grpc.credentials.createSsl(Buffer.from(opts.caPem)),
    channelOptions(target),
  );
  try {
    const res = await call<JoinRequest, JoinResponse__Output>(
      (r, md, o, cb) => client.join(r, md, o, cb),
      { token: opts.token, csr_pem: csrPem },
      opts.timeoutMs ?? 30_000,
    );
    return {
      clusterId: res.cluster_id,
      certPem: res.certificate_pem,
      keyPem,
      caPem: res.ca_pem,
      notAfter: res.not_after,
    };
  } finally {
    client.close();
  }
}

export interface BrokerClientOptions extends TlsTarget {
  certPem: string;
  keyPem: string;
  logger?: Logger;
  /** Deadline of each unary call; default 30 s. */
  callTimeoutMs?: number;
}

interface Clients {
  cluster: ClusterServiceClient;
  pod: PodServiceClient;
  placement: PlacementServiceClient;
}

export interface StreamHandlers {
  /** Hello fields besides the component. */
  hello?: Omit<Hello, 'component'>;
  /** After each Welcome: the place to send a full snapshot. */
  onConnected?(stream: ClusterStream, welcome: Welcome__Output): void | Promise<void>;
  onDisconnected?(err: SpillwayError | undefined): void;
  onCommand?(command: Command__Output): void;
  onPeerings?(state: PeeringState__Output): void;
  onPodStatus?(event: PodStatusEvent__Output): void;
  onPodEvent?(event: PodEventReport__Output): void;
  /** Every broker message, after the specific handler. */
  onMessage?(msg: BrokerMessage__Output): void;
}

export interface StreamOptions {
  /** Used until the broker's Welcome says otherwise; default 10 s. */
  heartbeatIntervalMs?: number;
  backoff?: BackoffOptions;
}

/** The broker connection of one cluster. */
export class BrokerClient {
  private tls: TlsTarget & { certPem: string; keyPem: string };
  private clients: Clients;
  private retired: Clients[] = [];
  private readonly logger: Logger | undefined;
  private readonly callTimeoutMs: number;
  private readonly streams = new Set<ClusterStream>();
  private closed = false;

  constructor(opts: BrokerClientOptions) {
    this.tls = { ...opts };
    this.logger = opts.logger;
    this.callTimeoutMs = opts.callTimeoutMs ?? 30_000;
    this.clients = this.makeClients();
  }

  /** The cluster id in our certificate. */
  get clusterId(): string | undefined {
    return inspectCertificate(this.tls.certPem).identity?.name;
  }

  private makeClients(): Clients {
    const v1 = loadSpillwayV1();
    const creds = grpc.credentials.createSsl(
      Buffer.from(this.tls.caPem),
      Buffer.from(this.tls.keyPem),
      Buffer.from(this.tls.certPem),
    );
    const options = channelOptions(this.tls);
    // One channel for all three services: they share the connection.
    const cluster = new v1.ClusterService(this.tls.address, creds, options);
    const channel = cluster.getChannel();
    const pod = new v1.PodService(this.tls.address, creds, {
      ...options,
      channelOverride: channel,
    });
    const placement = new v1.PlacementService(this.tls.address, creds, {
      ...options,
      channelOverride: channel,
    });
    return { cluster, pod, placement };
  }

  /** @internal the clients a new stream or call should use. */
  get current(): Clients {
    if (this.closed) throw new SpillwayError(ErrorCode.CANCELLED, 'broker client is closed');
    return this.clients;
  }

  /**
   * Switches to a renewed certificate (and CA). New calls and reconnecting streams use it;
   * live streams keep their connection until it ends.
   */
  updateIdentity(next: { certPem: string; keyPem: string; caPem?: string }): void {
    this.tls = { ...this.tls, ...next };
    this.retired.push(this.clients);
    this.clients = this.makeClients();
  }

  /** Renews our certificate with a fresh key and switches to it. */
  async renew(
    privateKeyPem?: string,
  ): Promise<{ certPem: string; keyPem: string; caPem: string; notAfter: string }> {
    const keyPem = privateKeyPem ?? generateKeyPair().privateKeyPem;
    const c = this.current.cluster;
    const res = await call<RenewRequest, RenewResponse__Output>(
      (r, md, o, cb) => c.renew(r, md, o, cb),
      { csr_pem: createCsr(keyPem, 'spillway-cluster') },
      this.callTimeoutMs,
    );
    const out = {
      certPem: res.certificate_pem,
      keyPem,
      caPem: res.ca_pem || this.tls.caPem,
      notAfter: res.not_after,
    };
    this.updateIdentity(out);
    return out;
  }

  /** Opens the component's stream; it reconnects until `close()`. */
  connect(
    component: StreamComponent,
    handlers: StreamHandlers = {},
    options: StreamOptions = {},
  ): ClusterStream {
    const s = new ClusterStream(this, component, handlers, options, this.logger, () =>
      this.streams.delete(s),
    );
    this.streams.add(s);
    s.start();
    return s;
  }

  place(req: PlaceRequest): Promise<PlaceResponse__Output> {
    const c = this.current.placement;
    return call((r, md, o, cb) => c.place(r, md, o, cb), req, this.callTimeoutMs);
  }

  placeGang(req: PlaceGangRequest): Promise<PlaceGangResponse__Output> {
    const c = this.current.placement;
    return call((r, md, o, cb) => c.placeGang(r, md, o, cb), req, this.callTimeoutMs);
  }

  release(req: ReleaseRequest): Promise<ReleaseResponse__Output> {
    const c = this.current.placement;
    return call((r, md, o, cb) => c.release(r, md, o, cb), req, this.callTimeoutMs);
  }

  createPod(req: CreatePodRequest): Promise<CreatePodResponse__Output> {
    const c = this.current.pod;
    return call((r, md, o, cb) => c.createPod(r, md, o, cb), req, this.callTimeoutMs);
  }

  deletePod(req: DeletePodRequest): Promise<DeletePodResponse__Output> {
    const c = this.current.pod;
    return call((r, md, o, cb) => c.deletePod(r, md, o, cb), req, this.callTimeoutMs);
  }

  listPods(req: ListPodsRequest): Promise<ListPodsResponse__Output> {
    const c = this.current.pod;
    return call((r, md, o, cb) => c.listPods(r, md, o, cb), req, this.callTimeoutMs);
  }

  /** Log bytes of a remote pod, until the donor ends them or `signal` aborts. */
  async *streamLogs(req: LogsRequest, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    const c = this.current.pod;
    const stream = c.streamLogs(req);
    const onAbort = (): void => stream.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of stream as AsyncIterable<LogChunk__Output>) {
        if (chunk.data.length > 0) yield chunk.data;
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw fromGrpcError(err);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  /** Stops every stream and closes the channels. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.streams].map((s) => s.close()));
    this.closed = true;
    for (const c of [this.clients, ...this.retired]) c.cluster.close();
    this.retired = [];
  }
}

type StreamState = 'connecting' | 'open' | 'closed';

/**
 * One component's stream to the broker. It dials, sends Hello, waits for Welcome, calls
 * `onConnected`, heartbeats, and on any end dials again after a jittered backoff, forever,
 * until `close()`. A broker silent for its announced timeout counts as gone.
 */
export class ClusterStream {
  private state: StreamState = 'connecting';
  private call: grpc.ClientDuplexStream<ClusterMessage, BrokerMessage__Output> | undefined;
  private readonly backoff: Backoff;
  private heartbeatMs: number;
  private timeoutMs: number;
  private beat: NodeJS.Timeout | undefined;
  private silence: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private welcome: Welcome__Output | undefined;
  private openedAt = 0;
  private closing = false;
  private closedPromise: Promise<void> | undefined;
  private endedResolve: (() => void) | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly client: BrokerClient,
    readonly component: StreamComponent,
    private readonly handlers: StreamHandlers,
    options: StreamOptions,
    private readonly logger: Logger | undefined,
    private readonly onClosed: () => void,
  ) {
    // Jittered, so a fleet of agents does not return in step; 10 s at most between dials.
    this.backoff = new Backoff({ baseMs: 200, maxMs: 10_000, ...options.backoff });
    this.heartbeatMs = options.heartbeatIntervalMs ?? 10_000;
    this.timeoutMs = this.heartbeatMs * 3;
  }

  /** True between Welcome and the end of that stream. */
  get connected(): boolean {
    return this.state === 'open';
  }

  /** The broker's last Welcome. */
  get lastWelcome(): Welcome__Output | undefined {
    return this.welcome;
  }

  /** Resolves at the next (or current) Welcome; rejects after `timeoutMs`. */
  waitConnected(timeoutMs = 30_000): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(done);
        reject(
          new SpillwayError(
            ErrorCode.TIMEOUT,
            `not connected to the broker within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  /** @internal */
  start(): void {
    this.dial();
  }

  /** Sends a message; while disconnected it is dropped with a warning. Never throws. */
  send(msg: ClusterMessage): boolean {
    if (this.state !== 'open' || !this.call) {
      this.logger?.warn(
        { msg: msg.msg, streamComponent: this.component },
        'not connected to the broker; message dropped',
      );
      return false;
    }
    try {
      this.call.write(msg);
      return true;
    } catch (err) {
      this.logger?.warn({ err }, 'write to the broker failed; message dropped');
      return false;
    }
  }

  private dial(): void {
    if (this.closing) return;
    this.state = 'connecting';
    let clients: Clients;
    try {
      clients = this.client.current;
    } catch {
      return;
    }
    const c = clients.cluster.connect();
    this.call = c;
    let ended = false;
    const end = (err: SpillwayError | undefined): void => {
      if (ended) return;
      ended = true;
      this.onStreamEnd(c, err);
    };
    c.on('data', (m: BrokerMessage__Output) => this.onMessage(c, m));
    c.on('error', (err: unknown) => end(fromGrpcError(err)));
    c.on('end', () => end(undefined));
    c.on('status', (s: grpc.StatusObject) => {
      if (s.code !== grpc.status.OK) end(fromGrpcError(s));
      else end(undefined);
    });
    const hello: ClusterMessage = {
      hello: {
        ...this.handlers.hello,
        component: this.component === 'agent' ? 'COMPONENT_AGENT' : 'COMPONENT_VIRTUAL_NODE',
      },
    };
    c.write(hello);
    this.armSilence(c);
  }

  private armSilence(c: grpc.ClientDuplexStream<ClusterMessage, BrokerMessage__Output>): void {
    if (this.silence) clearTimeout(this.silence);
    this.silence = setTimeout(() => {
      this.logger?.warn({ timeoutMs: this.timeoutMs }, 'broker silent; reconnecting');
      c.cancel();
    }, this.timeoutMs);
  }

  private onMessage(
    c: grpc.ClientDuplexStream<ClusterMessage, BrokerMessage__Output>,
    m: BrokerMessage__Output,
  ): void {
    if (c !== this.call) return;
    this.armSilence(c);
    const h = this.handlers;
    try {
      switch (m.msg) {
        case 'welcome':
          if (m.welcome) this.onWelcome(m.welcome);
          break;
        case 'command':
          if (m.command) h.onCommand?.(m.command);
          break;
        case 'peerings':
          if (m.peerings) h.onPeerings?.(m.peerings);
          break;
        case 'pod_status':
          if (m.pod_status) h.onPodStatus?.(m.pod_status);
          break;
        case 'pod_event':
          if (m.pod_event) h.onPodEvent?.(m.pod_event);
          break;
        default:
          break;
      }
      h.onMessage?.(m);
    } catch (err) {
      this.logger?.error({ err }, 'stream handler failed');
    }
  }

  private onWelcome(w: Welcome__Output): void {
    this.welcome = w;
    const interval = Number(w.heartbeat_interval_ms);
    const timeout = Number(w.heartbeat_timeout_ms);
    if (Number.isFinite(interval) && interval > 0) this.heartbeatMs = interval;
    if (Number.isFinite(timeout) && timeout > 0) this.timeoutMs = timeout;
    this.state = 'open';
    this.openedAt = Date.now();
    if (this.beat) clearInterval(this.beat);
    this.beat = setInterval(
      () => this.send({ heartbeat: { sent_unix_ms: Date.now() } }),
      this.heartbeatMs,
    );
    this.logger?.info(
      { cluster: w.cluster_id, broker: w.broker_id, streamComponent: this.component },
      'connected to the broker',
    );
    void Promise.resolve()
      .then(() => this.handlers.onConnected?.(this, w))
      .catch((err: unknown) => this.logger?.error({ err }, 'onConnected failed'));
    // After onConnected is scheduled, so a waiter sees its effects first.
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }

  private onStreamEnd(
    c: grpc.ClientDuplexStream<ClusterMessage, BrokerMessage__Output>,
    err: SpillwayError | undefined,
  ): void {
    if (c !== this.call) return;
    this.call = undefined;
    const wasOpen = this.state === 'open';
    this.state = 'connecting';
    if (this.beat) clearInterval(this.beat);
    if (this.silence) clearTimeout(this.silence);
    this.beat = undefined;
    this.silence = undefined;
    c.cancel();
    if (wasOpen) {
      try {
        this.handlers.onDisconnected?.(err);
      } catch (e) {
        this.logger?.error({ err: e }, 'onDisconnected failed');
      }
    }
    if (this.closing) {
      this.state = 'closed';
      this.endedResolve?.();
      return;
    }
    // Only a stream that lived a while resets the backoff: a broker that welcomes and
    // then ends us at once (a replaced stream, say) must not make us dial in a tight loop.
    if (wasOpen && Date.now() - this.openedAt > 2 * this.heartbeatMs) this.backoff.reset();
    const delay = this.backoff.next();
    this.logger?.warn(
      {
        err: err ? { code: err.code, message: err.message } : undefined,
        retryInMs: delay,
        streamComponent: this.component,
      },
      'broker stream ended; reconnecting',
    );
    this.retry = setTimeout(() => this.dial(), delay);
  }

  /** Ends the stream and stops reconnecting. */
  close(): Promise<void> {
    if (this.closedPromise) return this.closedPromise;
    this.closing = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.call;
    this.closedPromise = new Promise<void>((resolve) => {
      if (!c) {
        this.state = 'closed';
        resolve();
        return;
      }
      this.endedResolve = resolve;
      c.end();
      // A broker that does not answer the half-close is not waited for.
      setTimeout(() => c.cancel(), 1_000).unref();
    }).finally(() => this.onClosed());
    return this.closedPromise;
  }
}
