import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { loadSpillwayV1 } from '@spillway/api';
import type { BrokerMessage, ClusterMessage, ClusterMessage__Output } from '@spillway/api';
import type { Logger } from '@spillway/common';
import type { Component } from '../model.js';

/**
 * How a message reaches the replica that holds a cluster's stream. Each replica owns the
 * streams connected to it; the router knows who holds what, carries broker messages to
 * the holder, and carries command replies back to the replica that sent the command
 * (its broker id is part of every request id it mints).
 */

/** What the local gRPC layer does on the router's behalf. */
export interface RouterHandlers {
  /** Writes to a stream held by this replica; false when it holds none for the pair. */
  deliverLocal(clusterId: string, component: Component, msg: BrokerMessage): boolean;
  /** A command_result or log_chunk from `fromCluster` for a command this replica sent. */
  onReply(fromCluster: string, msg: ClusterMessage__Output | ClusterMessage): void;
  /** Another replica took the stream over at `sinceMs`: end a local one opened before. */
  onEvict(clusterId: string, component: Component, sinceMs: number): void;
  /** The stream ended wherever it was held: fail commands waiting on it. */
  onGone(clusterId: string, component: Component): void;
}

export interface Router {
  readonly brokerId: string;
  start(handlers: RouterHandlers): Promise<void>;
  stop(): Promise<void>;
  /** Records that this replica now holds the stream opened at `sinceMs`. */
  claim(clusterId: string, component: Component, sinceMs: number): Promise<void>;
  /** Forgets the stream, unless a newer one (here or elsewhere) has claimed it since. */
  release(clusterId: string, component: Component, sinceMs: number): Promise<void>;
  /** Delivers to wherever the stream is held; false when nobody holds it. */
  send(clusterId: string, component: Component, msg: BrokerMessage): Promise<boolean>;
  /** A request id whose replies come back to this replica. */
  newRequestId(): string;
  /**
   * Routes a reply to the replica that minted `requestId`; false when that replica is not
   * there to hear it (it died, or the id names no replica).
   */
  reply(requestId: string, fromCluster: string, msg: ClusterMessage__Output): Promise<boolean>;
}

const REQUEST_ID_SEPARATOR = '~';

export function brokerOfRequest(requestId: string): string | undefined {
  const i = requestId.lastIndexOf(REQUEST_ID_SEPARATOR);
  return i > 0 ? requestId.slice(0, i) : undefined;
}

function mintRequestId(brokerId: string): string {
  return `${brokerId}${REQUEST_ID_SEPARATOR}${randomUUID()}`;
}

function notStarted(): never {
  throw new Error('router used before start()');
}

/** One broker process: every stream is local. */
export class LocalRouter implements Router {
  private handlers: RouterHandlers | undefined;

  constructor(readonly brokerId: string) {}

  start(handlers: RouterHandlers): Promise<void> {
    this.handlers = handlers;
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.handlers = undefined;
    return Promise.resolve();
  }

  claim(): Promise<void> {
    return Promise.resolve();
  }

  release(clusterId: string, component: Component): Promise<void> {
    this.handlers?.onGone(clusterId, component);
    return Promise.resolve();
  }

  send(clusterId: string, component: Component, msg: BrokerMessage): Promise<boolean> {
    return Promise.resolve((this.handlers ?? notStarted()).deliverLocal(clusterId, component, msg));
  }

  newRequestId(): string {
    return mintRequestId(this.brokerId);
  }

  reply(requestId: string, fromCluster: string, msg: ClusterMessage__Output): Promise<boolean> {
    // A reply naming another broker (an earlier process) cannot be ours to deliver.
    if (brokerOfRequest(requestId) !== this.brokerId || !this.handlers)
      return Promise.resolve(false);
    this.handlers.onReply(fromCluster, msg);
    return Promise.resolve(true);
  }
}

export interface RedisRouterOptions {
  /** A command connection; the router duplicates it for its subscription. */
  redis: Redis;
  brokerId: string;
  /** Keys and channels live under this prefix, e.g. "spillway". */
  keyPrefix: string;
  logger: Logger;
}

type Envelope =
  | { t: 'deliver'; c: string; k: Component; p: string }
  | { t: 'reply'; from: string; p: string }
  | { t: 'evict'; c: string; k: Component; s: number }
  | { t: 'gone'; c: string; k: Component };

interface Holder {
  b: string;
  s: number;
}

// Claim returns the previous holder so it can be told to let go.
const CLAIM_LUA = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old`;

// Release only our own claim, so a newer stream elsewhere is never forgotten.
const RELEASE_LUA = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0`;

/**
 * Several replicas on one Redis. A hash maps (cluster, component) to the holding replica;
 * each replica subscribes to its own channel for deliveries and replies, and to a shared
 * channel for "stream gone" notices. Payloads are the protobuf encoding of the messages,
 * so bytes fields (log data) survive untouched.
 */
export class RedisRouter implements Router {
  readonly brokerId: string;
  private readonly redis: Redis;
  private subscriber: Redis | undefined;
  private handlers: RouterHandlers | undefined;
  private readonly streamsKey: string;
  private readonly ownChannel: string;
  private readonly allChannel: string;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly codec = codec();

  constructor(opts: RedisRouterOptions) {
    this.redis = opts.redis;
    this.brokerId = opts.brokerId;
    this.prefix = opts.keyPrefix;
    this.streamsKey = `${opts.keyPrefix}:router:streams`;
    this.ownChannel = this.channelOf(opts.brokerId);
    this.allChannel = `${opts.keyPrefix}:router:all`;
    this.logger = opts.logger;
  }

  private channelOf(brokerId: string): string {
    return `${this.prefix}:router:replica:${brokerId}`;
  }

  async start(handlers: RouterHandlers): Promise<void> {
    this.handlers = handlers;
    const sub = this.redis.duplicate();
    this.subscriber = sub;
    sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.onMessage(message));
    sub.on('error', (err: Error) => this.logger.warn({ err }, 'router subscription error'));
    await sub.subscribe(this.ownChannel, this.allChannel);
  }

  async stop(): Promise<void> {
    this.handlers = undefined;
    const sub = this.subscriber;
    this.subscriber = undefined;
    if (sub) {
      try {
        await sub.quit();
      } catch {
        sub.disconnect();
      }
    }
  }

  private onMessage(raw: Buffer): void {
    const h = this.handlers;
    if (!h) return;
    let env: Envelope;
    try {
      env = JSON.parse(raw.toString('utf8')) as Envelope;
    } catch (err) {
      this.logger.warn({ err }, 'router dropped an unreadable message');
      return;
    }
    try {
      switch (env.t) {
        case 'deliver':
          if (!h.deliverLocal(env.c, env.k, this.codec.decodeBroker(env.p))) {
            this.logger.debug(
              { cluster: env.c, streamComponent: env.k },
              'routed message for a stream no longer here',
            );
          }
          break;
        case 'reply':
          h.onReply(env.from, this.codec.decodeCluster(env.p));
          break;
        case 'evict':
          h.onEvict(env.c, env.k, env.s);
          break;
        case 'gone':
          h.onGone(env.c, env.k);
          break;
      }
    } catch (err) {
      this.logger.warn({ err }, 'router failed to handle a message');
    }
  }

  private publish(channel: string, env: Envelope): Promise<number> {
    return this.redis.publish(channel, JSON.stringify(env));
  }

  async claim(clusterId: string, component: Component, sinceMs: number): Promise<void> {
    const field = `${clusterId}/${component}`;
    const mine: Holder = { b: this.brokerId, s: sinceMs };
    const old = (await this.redis.eval(
      CLAIM_LUA,
      1,
      this.streamsKey,
      field,
      JSON.stringify(mine),
    )) as string | null;
    if (!old) return;
    let prev: Holder;
    try {
      prev = JSON.parse(old) as Holder;
    } catch {
      return;
    }
    if (prev.b !== this.brokerId) {
      await this.publish(this.channelOf(prev.b), {
        t: 'evict',
        c: clusterId,
        k: component,
        s: sinceMs,
      });
      // Commands sent on the old stream get no answer if its replica died without releasing
      // it: every replica fails them now rather than after the command timeout.
      await this.publish(this.allChannel, { t: 'gone', c: clusterId, k: component });
    }
  }

  async release(clusterId: string, component: Component, sinceMs: number): Promise<void> {
    const field = `${clusterId}/${component}`;
    const mine = JSON.stringify({ b: this.brokerId, s: sinceMs } satisfies Holder);
    const removed = (await this.redis.eval(RELEASE_LUA, 1, this.streamsKey, field, mine)) as number;
    if (removed === 1)
      await this.publish(this.allChannel, { t: 'gone', c: clusterId, k: component });
  }

  async send(clusterId: string, component: Component, msg: BrokerMessage): Promise<boolean> {
    const h = this.handlers ?? notStarted();
    if (h.deliverLocal(clusterId, component, msg)) return true;
    const raw = await this.redis.hget(this.streamsKey, `${clusterId}/${component}`);
    if (!raw) return false;
    let holder: Holder;
    try {
      holder = JSON.parse(raw) as Holder;
    } catch {
      return false;
    }
    // Our own claim without a local stream is a leftover of a stream that just ended.
    if (holder.b === this.brokerId) return false;
    const receivers = await this.publish(this.channelOf(holder.b), {
      t: 'deliver',
      c: clusterId,
      k: component,
      p: this.codec.encodeBroker(msg),
    });
    // Nobody listening: the holder died without releasing its claim.
    return receivers > 0;
  }

  newRequestId(): string {
    return mintRequestId(this.brokerId);
  }

  async reply(
    requestId: string,
    fromCluster: string,
    msg: ClusterMessage__Output,
  ): Promise<boolean> {
    const target = brokerOfRequest(requestId);
    if (target === undefined) return false;
    if (target === this.brokerId) {
      if (!this.handlers) return false;
      this.handlers.onReply(fromCluster, msg);
      return true;
    }
    const receivers = await this.publish(this.channelOf(target), {
      t: 'reply',
      from: fromCluster,
      p: this.codec.encodeCluster(msg),
    });
    return receivers > 0;
  }
}

/** Protobuf (de)serialization of stream messages, borrowed from the Connect method. */
function codec(): {
  encodeBroker(m: BrokerMessage): string;
  decodeBroker(p: string): BrokerMessage;
  encodeCluster(m: ClusterMessage): string;
  decodeCluster(p: string): ClusterMessage__Output;
} {
  const connect = loadSpillwayV1().ClusterService.service.Connect;
  return {
    encodeBroker: (m) => connect.responseSerialize(m).toString('base64'),
    decodeBroker: (p) => connect.responseDeserialize(Buffer.from(p, 'base64')),
    encodeCluster: (m) => connect.requestSerialize(m).toString('base64'),
    decodeCluster: (p) => connect.requestDeserialize(Buffer.from(p, 'base64')),
  };
}
