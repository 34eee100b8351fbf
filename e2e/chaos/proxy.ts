// A TCP proxy the fault scenarios put between a Spillway part and the broker. It forwards
// bytes untouched (mTLS passes through end to end), and on command drops every connection,
// refuses new ones, or stalls: keeps the sockets open but stops moving bytes, which is what
// a black-holed link or a dead NAT entry looks like to both ends. With several targets it
// is the load balancer in front of broker replicas: each new connection goes to the next
// target that accepts it, so a killed replica is skipped.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

interface Link {
  client: Socket;
  upstream: Socket;
  target: string;
  stalled: boolean;
}

export class TcpProxy {
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private next = 0;
  private refusing = false;
  private stallNew = false;
  /** Connections accepted since start, by target: which replica got whom. */
  readonly accepted = new Map<string, number>();
  port = 0;

  constructor(
    readonly name: string,
    /** host:port targets, read at every new connection (replicas come and go). */
    private readonly targets: () => readonly string[],
  ) {}

  async listen(port = 0): Promise<number> {
    const server = createServer((client) => this.onClient(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Live connections, by target. */
  connections(): Map<string, number> {
    const out = new Map<string, number>();
    for (const l of this.links) out.set(l.target, (out.get(l.target) ?? 0) + 1);
    return out;
  }

  /** Drops every connection at once (RST to both ends), as a broken link does. */
  cut(): number {
    const n = this.links.size;
    for (const l of [...this.links]) this.drop(l);
    return n;
  }

  /** While on, new connections are reset as soon as they arrive: the broker is unreachable. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /**
   * Stops moving bytes on every open connection (and, with `includeNew`, on connections
   * made from now on) without closing anything. Neither end hears of it: only their
   * heartbeats and keepalives can tell.
   */
  stall(includeNew = false): void {
    this.stallNew = includeNew;
    for (const l of this.links) this.pause(l);
  }

  /** Ends a stall: what was held back flows again, on the connections still open. */
  resume(): void {
    this.stallNew = false;
    for (const l of this.links) {
      l.stalled = false;
      l.client.resume();
      l.upstream.resume();
    }
  }

  async close(): Promise<void> {
    this.cut();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private pause(l: Link): void {
    l.stalled = true;
    l.client.pause();
    l.upstream.pause();
  }

  private drop(l: Link): void {
    this.links.delete(l);
    l.client.resetAndDestroy();
    l.upstream.resetAndDestroy();
  }

  private onClient(client: Socket): void {
    client.setNoDelay(true);
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    client.pause();
    client.on('error', () => undefined);
    const targets = [...this.targets()];
    const tryTarget = (attempt: number): void => {
      if (attempt >= targets.length || client.destroyed) {
        client.resetAndDestroy();
        return;
      }
      const target = targets[(this.next + attempt) % targets.length]!;
      const [host, port] = target.split(':');
      const upstream = connect({ host: host!, port: Number(port) });
      upstream.setNoDelay(true);
      const onFail = (): void => {
        upstream.destroy();
        tryTarget(attempt + 1);
      };
      upstream.once('error', onFail);
      upstream.once('connect', () => {
        upstream.off('error', onFail);
        this.next = (this.next + attempt + 1) % Math.max(1, targets.length);
        this.accepted.set(target, (this.accepted.get(target) ?? 0) + 1);
        this.pipe(client, upstream, target);
      });
    };
    tryTarget(0);
  }

  private pipe(client: Socket, upstream: Socket, target: string): void {
    const link: Link = { client, upstream, target, stalled: false };
    this.links.add(link);
    const close = (): void => {
      if (!this.links.has(link)) return;
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', close);
    client.on('error', close);
    upstream.on('close', close);
    client.on('close', close);
    // Forwarded by hand rather than with pipe(), whose drain handling would resume a stall.
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => {
        if (!link.stalled) from.resume();
      });
      from.on('end', () => to.end());
    };
    forward(client, upstream);
    forward(upstream, client);
    if (this.stallNew) this.pause(link);
    else {
      client.resume();
      upstream.resume();
    }
  }
}
