import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, loadSpillwayV1 } from '@spillway/api';
import type { BrokerMessage, ClusterMessage__Output } from '@spillway/api';
import { ErrorCode, SpillwayError, invalid, isSpillwayError, type Logger } from '@spillway/common';
import type { BrokerCore } from '../core/api.js';
import type { Component } from '../model.js';
import {
  ReloadableCertificateProvider,
  authenticate,
  serverCredentials,
  type AuthenticatedCall,
  type PeerIdentity,
} from './auth.js';
import {
  LIMITS,
  capacityFromProto,
  clusterId as clusterIdField,
  componentFromProto,
  dnsName,
  int,
  peeringStateToProto,
  podRefFromProto,
  resourceName,
  str,
} from './convert.js';
import { isMalformed, logFailure, malformedError, safeService, toServiceError } from './errors.js';
import { createCommandRelay } from './relay.js';
import type { Router } from './router.js';
import { createServiceHandlers } from './services.js';

export interface GrpcServerOptions {
  core: BrokerCore;
  /** PEM of the broker CA: it verifies client certificates. */
  ca: string;
  serverCert: string;
  serverKey: string;
  router: Router;
  logger: Logger;
  /** How often each side sends a heartbeat on a Connect stream. */
  heartbeatIntervalMs: number;
  /** A stream silent for this long is ended by the broker. */
  heartbeatTimeoutMs: number;
  /** How long a relayed command waits for the donor's answer. */
  commandTimeoutMs: number;
  /** Unsent messages a stream may queue before the broker drops the slow reader. */
  maxQueuedMessages?: number;
}

export interface GrpcServer {
  /** Binds host:port (0 for any free port) and returns the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Ends every stream, waits up to graceMs for calls to finish, then forces. */
  stop(graceMs: number): Promise<void>;
  /** New handshakes use the new CA / serving pair at once; live connections keep theirs. */
  reloadCertificates(next: { ca?: string; serverCert?: string; serverKey?: string }): void;
  /** Streams held by this replica. */
  sessions(): { clusterId: string; component: Component; connectedAt: string }[];
}

const STATUS_JSON_MAX = 1024 * 1024;
const EVENT_MESSAGE_MAX = 4096;

function keyOf(clusterId: string, component: Component): string {
  return `${clusterId}/${component}`;
}

export function createGrpcServer(opts: GrpcServerOptions): GrpcServer {
  const { core, router } = opts;
  const logger = opts.logger;
  const provider = new ReloadableCertificateProvider({
    caPem: opts.ca,
    certPem: opts.serverCert,
    keyPem: opts.serverKey,
  });
  const maxQueued = opts.maxQueuedMessages ?? 1_000;
  const sessions = new Map<string, Session>();
  const commands = createCommandRelay(router, opts.commandTimeoutMs, logger);
  const proto = loadSpillwayV1();
  let server: grpc.Server | undefined;
  let stopping = false;

  const isRevoked = (serial: string): Promise<boolean> => core.isRevoked(serial);
  const auth = (call: AuthenticatedCall): Promise<PeerIdentity> =>
    authenticate(call, provider.caPem, isRevoked);

  // ---- Connect streams ------------------------------------------------------------------

  class Session {
    component: Component | undefined;
    private ended = false;
    /** Settles once the core and router know the stream is gone. */
    cleaned: Promise<void> = Promise.resolve();
    private replaced = false;
    private silence: NodeJS.Timeout | undefined;
    private beat: NodeJS.Timeout | undefined;
    private lastCoreBeat = 0;
    readonly log: Logger;

    constructor(
      readonly call: grpc.ServerDuplexStream<ClusterMessage__Output, BrokerMessage>,
      readonly peer: PeerIdentity,
      /** When the client opened the stream, which orders it against its other streams. */
      readonly sinceMs: number,
    ) {
      this.log = logger.child({ cluster: peer.clusterId });
      this.armSilence();
    }

    get clusterId(): string {
      return this.peer.clusterId;
    }

    get live(): boolean {
      return !this.ended;
    }

    private armSilence(): void {
      if (this.silence) clearTimeout(this.silence);
      this.silence = setTimeout(() => {
        this.end(
          new SpillwayError(
            ErrorCode.TIMEOUT,
            `no message for ${opts.heartbeatTimeoutMs} ms; send a heartbeat every ${opts.heartbeatIntervalMs} ms`,
          ),
        );
      }, opts.heartbeatTimeoutMs);
    }

    write(msg: BrokerMessage): boolean {
      if (this.ended) return false;
      if (this.call.writableLength > maxQueued) {
        this.end(
          new SpillwayError(ErrorCode.RATE_LIMITED, `stream fell ${maxQueued} messages behind`),
        );
        return false;
      }
      this.call.write(msg);
      return true;
    }

    /** Ends the stream (with `err` as its status) and forgets it. */
    end(err?: unknown, how: { replaced?: boolean } = {}): void {
      if (this.ended) return;
      this.ended = true;
      if (how.replaced) this.replaced = true;
      try {
        if (err === undefined) this.call.end();
        else this.call.emit('error', toServiceError(err));
      } catch (e) {
        this.log.debug({ err: e }, 'stream was already closed');
      }
      this.cleaned = this.cleanup();
    }

    /** The peer went away (cancelled, half-closed, or broken). */
    gone(): void {
      this.end();
    }

    private async cleanup(): Promise<void> {
      if (this.silence) clearTimeout(this.silence);
      if (this.beat) clearInterval(this.beat);
      const component = this.component;
      if (component === undefined) return;
      const key = keyOf(this.clusterId, component);
      if (sessions.get(key) === this) sessions.delete(key);
      // A replaced stream's successor owns the connection record now.
      if (this.replaced) return;
      try {
        await router.release(this.clusterId, component, this.sinceMs);
      } catch (err) {
        logFailure(this.log, err, 'router release failed');
      }
      // A slow store can hold this cleanup back until a newer stream of the same cluster and
      // component has said Hello here: the connection record is that stream's now.
      const successor = sessions.get(key);
      if (successor !== undefined && successor !== this) {
        this.log.info({ streamComponent: component }, 'stream ended; a newer one holds it');
        return;
      }
      try {
        await core.disconnected(this.clusterId, component);
      } catch (err) {
        logFailure(this.log, err, 'core.disconnected failed');
      }
      this.log.info({ streamComponent: component }, 'stream ended');
    }

    async handle(m: unknown): Promise<void> {
      if (this.ended) return;
      this.armSilence();
      if (isMalformed(m)) throw malformedError(m, 'ClusterMessage');
      const msg = m as ClusterMessage__Output;
      if (this.component === undefined) {
        if (msg.msg !== 'hello' || !msg.hello)
          throw invalid('hello', 'the first message on a stream must be Hello');
        await this.hello(msg.hello);
        return;
      }
      await this.coreHeartbeat();
      switch (msg.msg) {
        case 'hello':
          throw invalid('hello', 'sent twice; a stream speaks for one cluster and component');
        case 'heartbeat':
          return;
        case 'capacity':
          this.need('agent', 'capacity');
          await core.applyCapacity(
            this.clusterId,
            capacityFromProto(msg.capacity ?? emptyReport()),
          );
          return;
        case 'pod_status':
          this.need('agent', 'pod_status');
          await this.podStatus(msg);
          return;
        case 'pod_event':
          this.need('agent', 'pod_event');
          await this.podEvent(msg);
          return;
        case 'command_result': {
          this.need('agent', 'command_result');
          const id = str(msg.command_result?.request_id, 'command_result.request_id', {
            required: true,
            max: 256,
          });
          await router.reply(id, this.clusterId, msg);
          return;
        }
        case 'log_chunk': {
          this.need('agent', 'log_chunk');
          const id = str(msg.log_chunk?.request_id, 'log_chunk.request_id', {
            required: true,
            max: 256,
          });
          // The replica that asked died: nobody reads this log any more, so stop it.
          if (!(await router.reply(id, this.clusterId, msg)) && msg.log_chunk?.eof !== true)
            commands.cancel(this.clusterId, id);
          return;
        }
        case 'offload_sync':
          this.need('virtual-node', 'offload_sync');
          await this.offloadSync(msg);
          return;
        default:
          throw invalid('msg', 'empty ClusterMessage');
      }
    }

    private need(component: Component, field: string): void {
      if (this.component !== component) {
        throw new SpillwayError(
          ErrorCode.PERMISSION_DENIED,
          `${field}: only the ${component} stream may send this`,
          {
            field,
          },
        );
      }
    }

    private async coreHeartbeat(): Promise<void> {
      // Throttled: the store need not be written for every capacity delta.
      const now = Date.now();
      if (now - this.lastCoreBeat < Math.min(1_000, opts.heartbeatIntervalMs / 2)) return;
      this.lastCoreBeat = now;
      await core.heartbeat(this.clusterId, this.component!);
    }

    private async hello(h: NonNullable<ClusterMessage__Output['hello']>): Promise<void> {
      const component = componentFromProto(h.component);
      str(h.version, 'hello.version', { max: 64 });
      str(h.kubernetes_version, 'hello.kubernetes_version', { max: 64 });
      const resources = h.gpu_resources ?? [];
      if (resources.length > LIMITS.resourcesPerNode)
        throw invalid('hello.gpu_resources', 'too many entries');
      resources.forEach((r, i) => resourceName(r, `hello.gpu_resources[${i}]`));
      this.component = component;
      const key = keyOf(this.clusterId, component);
      const previous = sessions.get(key);
      sessions.set(key, this);
      previous?.end(
        new SpillwayError(
          ErrorCode.CONFLICT,
          'replaced by a newer stream for the same cluster and component',
        ),
        { replaced: true },
      );
      this.beat = setInterval(() => void this.tick(), opts.heartbeatIntervalMs);
      await router.claim(this.clusterId, component, this.sinceMs);
      await core.connected(this.clusterId, component, this.peer.serial);
      // Welcome only once the connection is recorded: a client that reconnects elsewhere
      // right after it must not be overtaken by this replica's late write.
      this.write({
        welcome: {
          cluster_id: this.clusterId,
          broker_id: core.brokerId,
          heartbeat_interval_ms: opts.heartbeatIntervalMs,
          heartbeat_timeout_ms: opts.heartbeatTimeoutMs,
        },
      });
      this.lastCoreBeat = Date.now();
      this.write({ peerings: peeringStateToProto(await core.peeringState(this.clusterId)) });
      this.log.info({ streamComponent: component, version: h.version }, 'stream connected');
    }

    /** Our heartbeat, and a re-check that the certificate still holds. */
    private async tick(): Promise<void> {
      if (this.ended) return;
      if (Date.now() > this.peer.notAfter.getTime()) {
        this.end(
          new SpillwayError(
            ErrorCode.CERT_EXPIRED,
            'client certificate expired; renew and reconnect',
          ),
        );
        return;
      }
      try {
        if (await core.isRevoked(this.peer.serial)) {
          this.end(
            new SpillwayError(
              ErrorCode.CERT_REVOKED,
              `certificate ${this.peer.serial} has been revoked`,
            ),
          );
          return;
        }
      } catch (err) {
        logFailure(this.log, err, 'revocation check failed');
      }
      this.write({ heartbeat: { sent_unix_ms: Date.now() } });
    }

    private async podStatus(msg: ClusterMessage__Output): Promise<void> {
      const s = msg.pod_status;
      if (!s) throw invalid('pod_status', 'is required');
      const pod = podRefFromProto(s.pod, 'pod_status.pod');
      const statusJson = str(s.status_json, 'pod_status.status_json', { max: STATUS_JSON_MAX });
      let phase = '';
      if (statusJson !== '') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(statusJson);
        } catch {
          throw invalid('pod_status.status_json', 'is not JSON');
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          throw invalid('pod_status.status_json', 'must be a JSON object (v1.PodStatus)');
        }
        const p = (parsed as { phase?: unknown }).phase;
        phase = typeof p === 'string' ? p.slice(0, 64) : '';
      }
      const remoteNamespace = s.remote_namespace
        ? dnsName(s.remote_namespace, 'pod_status.remote_namespace')
        : '';
      const remoteName = s.remote_name ? dnsName(s.remote_name, 'pod_status.remote_name') : '';
      const nodeName = s.node_name ? dnsName(s.node_name, 'pod_status.node_name') : '';
      const observed = int(s.observed_unix_ms, 'pod_status.observed_unix_ms');
      const report = {
        pod,
        remoteNamespace,
        remoteName,
        nodeName,
        phase,
        deleted: s.deleted === true,
      };
      if (!(await this.peeredWith(pod.originCluster, 'pod_status'))) {
        // A removed peering's pods are deleted by the donor afterwards: their end must still
        // close the reservation, or its GPUs stay counted. core checks this donor held it.
        if (report.deleted || phase === 'Succeeded' || phase === 'Failed') {
          await core.podStatus(this.clusterId, report);
        }
        return;
      }
      await core.podStatus(this.clusterId, report);
      const delivered = await router.send(pod.originCluster, 'virtual-node', {
        pod_status: {
          pod: s.pod,
          donor_cluster: this.clusterId,
          remote_namespace: remoteNamespace,
          remote_name: remoteName,
          node_name: nodeName,
          status_json: statusJson,
          deleted: s.deleted === true,
          observed_unix_ms: observed,
        },
      });
      if (!delivered)
        this.log.debug(
          { origin: pod.originCluster },
          'pod status not delivered: origin shim not connected',
        );
    }

    private async podEvent(msg: ClusterMessage__Output): Promise<void> {
      const e = msg.pod_event;
      if (!e) throw invalid('pod_event', 'is required');
      const pod = podRefFromProto(e.pod, 'pod_event.pod');
      const type = str(e.type, 'pod_event.type', { required: true });
      if (type !== 'Normal' && type !== 'Warning')
        throw invalid('pod_event.type', 'must be Normal or Warning');
      const reason = str(e.reason, 'pod_event.reason', { max: 128 });
      const message = str(e.message, 'pod_event.message', { max: EVENT_MESSAGE_MAX });
      const count = int(e.count, 'pod_event.count', { max: 1_000_000_000 });
      const last = int(e.last_unix_ms, 'pod_event.last_unix_ms');
      if (!(await this.peeredWith(pod.originCluster, 'pod_event'))) return;
      await router.send(pod.originCluster, 'virtual-node', {
        pod_event: {
          pod: e.pod,
          donor_cluster: this.clusterId,
          type,
          reason,
          message,
          count,
          last_unix_ms: last,
        },
      });
    }

    /** A donor may only speak about pods of origins it is peered with; others are dropped. */
    private async peeredWith(origin: string, what: string): Promise<boolean> {
      try {
        // While a peering drains, its running pods must still report until they end.
        await core.assertPeered(origin, this.clusterId, { allowDraining: true });
        return true;
      } catch (err) {
        if (
          isSpillwayError(err, ErrorCode.NO_PEERING) ||
          isSpillwayError(err, ErrorCode.NOT_FOUND)
        ) {
          this.log.warn({ origin }, `${what} dropped: not peered with that origin`);
          return false;
        }
        throw err;
      }
    }

    private async offloadSync(msg: ClusterMessage__Output): Promise<void> {
      const s = msg.offload_sync;
      if (!s) throw invalid('offload_sync', 'is required');
      const donor = clusterIdField(s.donor_cluster, 'offload_sync.donor_cluster');
      const pods = s.pods ?? [];
      if (pods.length > LIMITS.podsPerSync)
        throw invalid('offload_sync.pods', `at most ${LIMITS.podsPerSync} pods`);
      pods.forEach((p, i) => {
        const ref = podRefFromProto(p, `offload_sync.pods[${i}]`);
        if (ref.originCluster !== this.clusterId) {
          throw new SpillwayError(
            ErrorCode.PERMISSION_DENIED,
            `offload_sync.pods[${i}].origin_cluster: ${ref.originCluster} is not the caller (${this.clusterId})`,
            { field: `offload_sync.pods[${i}].origin_cluster` },
          );
        }
      });
      const asOf = int(s.as_of_unix_ms, 'offload_sync.as_of_unix_ms');
      try {
        await core.assertPeered(this.clusterId, donor, { allowDraining: true });
      } catch (err) {
        if (isSpillwayError(err, ErrorCode.NO_PEERING)) {
          this.log.warn({ donor }, 'offload_sync dropped: not peered with that donor');
          return;
        }
        throw err;
      }
      const delivered = await router.send(donor, 'agent', {
        command: {
          request_id: router.newRequestId(),
          origin_cluster: this.clusterId,
          offload_sync: { donor_cluster: donor, pods, as_of_unix_ms: asOf },
        },
      });
      if (!delivered) this.log.debug({ donor }, 'offload_sync not delivered: donor not connected');
    }
  }

  function connect(call: grpc.ServerDuplexStream<ClusterMessage__Output, BrokerMessage>): void {
    // Taken before auth, which reads the store: a stream that waited out a store outage
    // must not count as newer than the one its client opened elsewhere meanwhile.
    const arrivedMs = Date.now();
    void (async () => {
      let peer: PeerIdentity;
      try {
        if (stopping) throw new SpillwayError(ErrorCode.UNAVAILABLE, 'broker is shutting down');
        peer = await auth(call);
      } catch (err) {
        logFailure(logger, err, 'Connect refused');
        call.emit('error', toServiceError(err));
        return;
      }
      // The client gave up on this stream while it waited: it must not take over its newer one.
      if (call.cancelled) return;
      const session = new Session(call, peer, arrivedMs);
      call.on('data', (m: ClusterMessage__Output) => {
        call.pause();
        session
          .handle(m)
          .catch((err: unknown) => {
            logFailure(session.log, err, 'stream message refused');
            // A store outage is not the agent's fault: it reconnects and resends a snapshot.
            session.end(
              isSpillwayError(err, ErrorCode.STORE_UNAVAILABLE)
                ? new SpillwayError(ErrorCode.UNAVAILABLE, err.message)
                : err,
            );
          })
          .finally(() => {
            if (session.live) call.resume();
          });
      });
      call.on('end', () => session.gone());
      call.on('cancelled', () => session.gone());
      call.on('close', () => session.gone());
    })();
  }

  // ---- routing and core events -------------------------------------------------------------

  /** Pushes under way: stop() lets them finish before the router stops. */
  const pushes = new Set<Promise<void>>();
  const onPeeringsChanged = (ids: string[]): void => {
    const push = (async () => {
      for (const id of new Set(ids)) {
        try {
          const msg: BrokerMessage = { peerings: peeringStateToProto(await core.peeringState(id)) };
          await router.send(id, 'agent', msg);
          await router.send(id, 'virtual-node', msg);
        } catch (err) {
          logFailure(logger, err, 'peering push failed', { cluster: id });
        }
      }
    })().finally(() => pushes.delete(push));
    pushes.add(push);
  };

  const onClusterRevoked = (id: string): void => {
    for (const s of [...sessions.values()]) {
      if (s.clusterId === id)
        s.end(new SpillwayError(ErrorCode.CERT_REVOKED, `cluster ${id} has been removed`));
    }
  };

  /** Ends every stream and waits until the core has recorded each disconnect. */
  async function endAll(err: SpillwayError): Promise<void> {
    const all = [...sessions.values()];
    for (const s of all) s.end(err);
    await Promise.all(all.map((s) => s.cleaned));
  }

  return {
    async listen(host: string, port: number): Promise<number> {
      if (server) throw new Error('already listening');
      stopping = false;
      await router.start({
        deliverLocal: (clusterId, component, msg) =>
          sessions.get(keyOf(clusterId, component))?.write(msg) ?? false,
        onReply: commands.onReply,
        onEvict: (clusterId, component, sinceMs) => {
          const s = sessions.get(keyOf(clusterId, component));
          if (s && s.sinceMs < sinceMs) {
            s.end(
              new SpillwayError(
                ErrorCode.CONFLICT,
                'replaced by a newer stream on another broker replica',
              ),
              {
                replaced: true,
              },
            );
          }
        },
        onGone: (clusterId, component) => {
          if (component !== 'agent') return;
          commands.donorGone(clusterId);
        },
      });
      core.events.on('peeringsChanged', onPeeringsChanged);
      core.events.on('clusterRevoked', onClusterRevoked);
      const s = new grpc.Server({ ...CHANNEL_OPTIONS });
      const handlers = createServiceHandlers({ core, router, logger, auth, commands });
      s.addService(safeService(proto.ClusterService.service), {
        ...handlers.cluster,
        Connect: connect,
      });
      s.addService(safeService(proto.PodService.service), handlers.pod);
      s.addService(safeService(proto.PlacementService.service), handlers.placement);
      server = s;
      try {
        return await new Promise<number>((resolve, reject) => {
          s.bindAsync(
            `${host.includes(':') ? `[${host}]` : host}:${port}`,
            serverCredentials(provider),
            (err, bound) => (err ? reject(err) : resolve(bound)),
          );
        });
      } catch (err) {
        server = undefined;
        core.events.off('peeringsChanged', onPeeringsChanged);
        core.events.off('clusterRevoked', onClusterRevoked);
        await router.stop();
        throw new SpillwayError(
          ErrorCode.UNAVAILABLE,
          `cannot listen on ${host}:${port}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    },

    async stop(graceMs: number): Promise<void> {
      const s = server;
      if (!s) return;
      stopping = true;
      server = undefined;
      core.events.off('peeringsChanged', onPeeringsChanged);
      core.events.off('clusterRevoked', onClusterRevoked);
      await endAll(new SpillwayError(ErrorCode.UNAVAILABLE, 'broker is shutting down'));
      commands.allGone();
      // An acknowledged change still reaches streams held elsewhere while this replica goes.
      await Promise.allSettled([...pushes]);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          s.forceShutdown();
          resolve();
        }, graceMs);
        s.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await router.stop();
    },

    reloadCertificates(next): void {
      provider.update({
        ...(next.ca === undefined ? {} : { caPem: next.ca }),
        ...(next.serverCert === undefined ? {} : { certPem: next.serverCert }),
        ...(next.serverKey === undefined ? {} : { keyPem: next.serverKey }),
      });
      logger.info('serving certificates reloaded');
    },

    sessions() {
      return [...sessions.values()]
        .filter((s) => s.component !== undefined)
        .map((s) => ({
          clusterId: s.clusterId,
          component: s.component!,
          connectedAt: new Date(s.sinceMs).toISOString(),
        }));
    },
  };
}

function emptyReport(): NonNullable<ClusterMessage__Output['capacity']> {
  return { full: false, nodes: [], removed_nodes: [], sequence: '0' };
}
