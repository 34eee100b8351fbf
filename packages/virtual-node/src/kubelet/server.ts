import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { V1Pod } from '@kubernetes/client-node';
import type { BrokerClient } from '@spillway/api';
import {
  createCertificateAuthority,
  issueKeyAndCertificate,
  toSpillwayError,
  httpStatusOf,
  type Logger,
} from '@spillway/common';
import { parseLogRequest, UNSUPPORTED_PREFIXES } from './logs.js';

export interface KubeletServerOptions {
  host: string;
  port: number;
  /** PEM serving pair; a self-signed one for `address` is made when absent. */
  certPem?: string;
  keyPem?: string;
  /** When set, callers must present a client certificate this CA signed (the API server's). */
  clientCaPem?: string;
  /** The InternalIP the API server dials, put in a self-made certificate. */
  address: string;
  originCluster: string;
  broker: BrokerClient;
  /** The pod from the cache and the donor of its virtual node, if it is on one. */
  lookup: (namespace: string, name: string) => { pod: V1Pod; donor: string } | undefined;
  logger: Logger;
}

export interface KubeletServer {
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${message}\n`);
}

function selfSigned(address: string): { certPem: string; keyPem: string } {
  const ca = createCertificateAuthority({ commonName: 'Spillway virtual-node kubelet CA' });
  const isIp = /^[\d.]+$|:/.test(address);
  const pair = issueKeyAndCertificate({
    ca,
    profile: 'server',
    commonName: 'spillway-virtual-node',
    dnsNames: isIp ? ['localhost'] : [address, 'localhost'],
    ipAddresses: isIp ? [address, '127.0.0.1'] : ['127.0.0.1'],
    validSeconds: 365 * 86_400,
  });
  return { certPem: `${pair.certPem}${ca.certPem}`, keyPem: pair.keyPem };
}

/**
 * The kubelet endpoint of the virtual nodes (status.daemonEndpoints.kubeletEndpoint): the API
 * server dials it for `kubectl logs`, and the shim streams the container's log from the donor
 * agent through the broker. Exec, attach and port-forward are refused: the containers run on
 * another cluster.
 */
export async function startKubeletServer(opts: KubeletServerOptions): Promise<KubeletServer> {
  const log = opts.logger.child({ component: 'kubelet-server' });
  const tls =
    opts.certPem && opts.keyPem
      ? { certPem: opts.certPem, keyPem: opts.keyPem }
      : selfSigned(opts.address);
  const server: Server = createServer(
    {
      cert: tls.certPem,
      key: tls.keyPem,
      ...(opts.clientCaPem
        ? { ca: opts.clientCaPem, requestCert: true, rejectUnauthorized: true }
        : {}),
    },
    (req, res) => {
      void handle(req, res).catch((err: unknown) => {
        log.warn({ err }, 'kubelet request failed');
        send(res, 500, 'internal error');
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    if (opts.clientCaPem && !(req.socket as TLSSocket).authorized) {
      send(res, 401, 'a client certificate signed by the cluster CA is required');
      return;
    }
    if (url.pathname === '/healthz') {
      send(res, 200, 'ok');
      return;
    }
    if (UNSUPPORTED_PREFIXES.some((p) => url.pathname.startsWith(p))) {
      send(
        res,
        501,
        `${url.pathname.split('/')[1]} is not supported on Spillway virtual nodes: the pod runs on a donor cluster`,
      );
      return;
    }
    let lr;
    try {
      lr = parseLogRequest(url);
    } catch (err) {
      send(res, 400, (err as Error).message);
      return;
    }
    if (!lr) {
      send(res, 404, `${url.pathname} is not served by Spillway virtual nodes`);
      return;
    }
    if (req.method !== 'GET') {
      send(res, 405, 'only GET is supported');
      return;
    }
    const found = opts.lookup(lr.namespace, lr.pod);
    if (!found) {
      send(res, 404, `pod ${lr.namespace}/${lr.pod} is not on a Spillway virtual node`);
      return;
    }
    const { pod, donor } = found;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const chunks = opts.broker.streamLogs(
      {
        donor_cluster: donor,
        pod: {
          origin_cluster: opts.originCluster,
          namespace: lr.namespace,
          name: lr.pod,
          uid: pod.metadata?.uid ?? '',
        },
        container: lr.container,
        follow: lr.follow,
        previous: lr.previous,
        timestamps: lr.timestamps,
        tail_lines: lr.tailLines,
        since_seconds: lr.sinceSeconds,
      },
      { signal: abort.signal },
    );
    let sent = 0;
    try {
      for await (const chunk of chunks) {
        if (!res.headersSent)
          res.writeHead(200, {
            'content-type': 'text/plain; charset=utf-8',
            'transfer-encoding': 'chunked',
          });
        const part = lr.limitBytes > 0 ? chunk.subarray(0, lr.limitBytes - sent) : chunk;
        res.write(part);
        sent += part.length;
        if (lr.limitBytes > 0 && sent >= lr.limitBytes) {
          abort.abort();
          break;
        }
      }
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end();
    } catch (err) {
      if (abort.signal.aborted) return;
      const e = toSpillwayError(err);
      log.info(
        { pod: `${lr.namespace}/${lr.pod}`, donor, code: e.code, err: e.message },
        'log stream failed',
      );
      send(res, httpStatusOf(e), `donor ${donor}: ${e.message}`);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: opts.host, port, clientAuth: !!opts.clientCaPem }, 'kubelet endpoint listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
