// A fleet of simulated donor agents spread over a few load processes (sim-agents.ts), each
// agent joined with its own single-use token minted through the broker's REST API.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromWorker, SimAgentSpec, ToWorker, WorkerStats } from '../sim-agents.js';
import type { BrokerProcess } from './broker.js';

const WORKER = fileURLToPath(new URL('../sim-agents.js', import.meta.url));

export const PRODUCTS = ['NVIDIA-H100-80GB-HBM3', 'NVIDIA-A100-SXM4-80GB', 'NVIDIA-L4'] as const;

/** A quarter H100, half A100, a quarter L4. */
export function productOf(i: number): string {
  const k = i % 4;
  return k === 0 ? PRODUCTS[0] : k === 3 ? PRODUCTS[2] : PRODUCTS[1];
}

export interface FleetOptions {
  /** Replicas to spread agents over (round-robin); REST calls go to the first. */
  brokers: BrokerProcess[];
  donors: number;
  nodes: number;
  gpusPerNode: number;
  reportEveryMs: number;
  workers: number;
  idPrefix?: string;
  log?: (line: string) => void;
}

export interface Fleet {
  ids: string[];
  pids: number[];
  /** Join latencies (token + CSR → certificate), ms. */
  joinMs: number[];
  setupSeconds: number;
  stats(): Promise<WorkerStats>;
  /** Moves agent i to addresses[i % n] and waits until every stream is back. */
  retarget(addresses: string[]): Promise<void>;
  stop(): Promise<void>;
}

/** Runs `fn` over `items` with at most `n` at once. */
export async function pool<T, R>(
  items: readonly T[],
  n: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

function onceMessage<T extends FromWorker['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
  onOther?: (m: FromWorker) => void,
): Promise<Extract<FromWorker, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`load process sent no ${type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMsg = (m: FromWorker): void => {
      if (m.type === type) {
        cleanup();
        resolve(m as Extract<FromWorker, { type: T }>);
      } else if (m.type === 'error') {
        cleanup();
        reject(new Error(`load process failed: ${m.message}`));
      } else onOther?.(m);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`load process exited with ${code} before ${type}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.once('exit', onExit);
  });
}

export async function startFleet(o: FleetOptions): Promise<Fleet> {
  const t0 = performance.now();
  const main = o.brokers[0]!;
  const prefix = o.idPrefix ?? 'donor';
  const ids = Array.from({ length: o.donors }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);
  const mint = async (id: string, i: number): Promise<SimAgentSpec> => {
    const res = await main.rest<{ token: string }>('POST', '/api/v1/join-tokens', {
      clusterId: id,
      role: 'donor',
      ttl: '1h',
    });
    return {
      index: i,
      id,
      token: res.token,
      address: o.brokers[i % o.brokers.length]!.grpcAddress,
      product: productOf(i),
    };
  };
  const specs: SimAgentSpec[] = await pool(ids, 16, mint);
  const workers: ChildProcess[] = [];
  const slices: SimAgentSpec[][] = Array.from({ length: o.workers }, () => []);
  specs.forEach((s, i) => slices[i % o.workers]!.push(s));
  const progress = new Map<number, number>();
  const ready = await Promise.all(
    slices.map(async (agents, w) => {
      const child = fork(WORKER, [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: ['--no-deprecation'],
      });
      workers.push(child);
      const msg: ToWorker = {
        type: 'start',
        caPem: main.caPem,
        agents,
        nodes: o.nodes,
        gpusPerNode: o.gpusPerNode,
        reportEveryMs: o.reportEveryMs,
        joinConcurrency: 4,
      };
      child.send(msg);
      return onceMessage(child, 'ready', 30 * 60_000, (m) => {
        if (m.type !== 'progress') return;
        progress.set(w, m.joined);
        const total = [...progress.values()].reduce((s, v) => s + v, 0);
        if (total % 100 === 0) o.log?.(`  agents joined: ${total}/${o.donors}`);
      });
    }),
  );
  // A join that failed (a starved broker drops connections) is retried with a new token.
  const joinMs = ready.flatMap((r) => r.joinMs);
  let failed = ready.map((r) => r.failed);
  for (let attempt = 1; attempt <= 3 && failed.some((f) => f.length > 0); attempt++) {
    o.log?.(`  retrying ${failed.flat().length} failed joins (attempt ${attempt})`);
    const again = await Promise.all(
      failed.map(async (list, w) => {
        if (list.length === 0) return { failed: [] as string[], joinMs: [] as number[] };
        const child = workers[w]!;
        const fresh = await Promise.all(list.map((id) => mint(id, ids.indexOf(id))));
        const p = onceMessage(child, 'ready', 10 * 60_000);
        child.send({ type: 'join', agents: fresh } satisfies ToWorker);
        return p;
      }),
    );
    joinMs.push(...again.flatMap((r) => r.joinMs));
    failed = again.map((r) => r.failed);
  }
  const final = await Promise.all(
    workers.map((w) => {
      const p = onceMessage(w, 'stats', 30_000);
      w.send({ type: 'stats' } satisfies ToWorker);
      return p;
    }),
  );
  const joined = final.reduce((s, r) => s + r.joined, 0);
  const connected = final.reduce((s, r) => s + r.connected, 0);
  if (joined !== o.donors || connected !== o.donors) {
    for (const w of workers) w.kill('SIGKILL');
    throw new Error(
      `fleet: ${joined}/${o.donors} joined, ${connected} connected; ${final.flatMap((r) => r.failures).join('; ')}`,
    );
  }
  return {
    ids,
    pids: workers.map((w) => w.pid!),
    joinMs,
    setupSeconds: (performance.now() - t0) / 1000,
    async stats() {
      const all = await Promise.all(
        workers.map((w) => {
          const p = onceMessage(w, 'stats', 30_000);
          w.send({ type: 'stats' } satisfies ToWorker);
          return p;
        }),
      );
      return {
        joined: all.reduce((s, r) => s + r.joined, 0),
        connected: all.reduce((s, r) => s + r.connected, 0),
        disconnects: all.reduce((s, r) => s + r.disconnects, 0),
        reports: all.reduce((s, r) => s + r.reports, 0),
        failures: all.flatMap((r) => r.failures),
      };
    },
    async retarget(addresses) {
      await Promise.all(
        workers.map((w) => {
          const p = onceMessage(w, 'retargeted', 10 * 60_000);
          w.send({ type: 'retarget', addresses } satisfies ToWorker);
          return p;
        }),
      );
    },
    async stop() {
      await Promise.allSettled(
        workers.map(async (w) => {
          if (w.exitCode !== null) return;
          const exited = new Promise((r) => w.once('exit', r));
          w.send({ type: 'stop' } satisfies ToWorker);
          const timer = setTimeout(() => w.kill('SIGKILL'), 15_000);
          await exited;
          clearTimeout(timer);
        }),
      );
    },
  };
}

export interface ClusterSummary {
  id: string;
  state: string;
}

/** Polls the broker until `ids` are all Ready (their agents connected and reporting). */
export async function waitAllReady(
  broker: BrokerProcess,
  ids: readonly string[],
  timeoutMs: number,
): Promise<void> {
  const want = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  let notReady = ids.length;
  let lastError = '';
  while (Date.now() < deadline) {
    let clusters: ClusterSummary[];
    try {
      ({ clusters } = await broker.rest<{ clusters: ClusterSummary[] }>('GET', '/api/v1/clusters'));
    } catch (err) {
      // An overloaded broker answers 503 (its store timed out) while agents reconnect: wait.
      lastError = String(err);
      await new Promise((r) => setTimeout(r, 1_000));
      continue;
    }
    notReady = clusters.filter((c) => want.has(c.id) && c.state !== 'Ready').length;
    const seen = clusters.filter((c) => want.has(c.id)).length;
    if (notReady === 0 && seen === want.size) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(
    `${notReady} of ${ids.length} donors not Ready after ${timeoutMs} ms${lastError ? `; last error: ${lastError}` : ''}`,
  );
}
