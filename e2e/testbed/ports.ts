import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

// Ports are picked below the kernel's ephemeral range: a component binds its
// port a few seconds after it was picked, and in between an outgoing
// connection (the API server dialling etcd, say) could be given an ephemeral
// port as its local port, which the kernel never does outside that range.
const DEFAULT_EPHEMERAL_LOW = 32768;
const LOWEST = 20000;

// Ports handed out by this process, which must not go to a second component.
const handedOut = new Set<number>();

function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > LOWEST + 1000 ? n : DEFAULT_EPHEMERAL_LOW;
  } catch {
    return DEFAULT_EPHEMERAL_LOW;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () =>
      server.close(() => resolve(true)),
    );
  });
}

/** Returns `count` distinct loopback ports that were free a moment ago. */
export async function freePorts(count: number): Promise<number[]> {
  const high = ephemeralLow() - 1;
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries > 1000) throw new Error(`no free loopback port between ${LOWEST} and ${high}`);
    const port = LOWEST + Math.floor(Math.random() * (high - LOWEST + 1));
    if (handedOut.has(port) || !(await isFree(port))) continue;
    handedOut.add(port);
    ports.push(port);
  }
  return ports;
}
