// spillctl local list|stop: the processes `join --local` started.
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { listLocal, localClusters, stopLocal } from '../local.js';
import { render, type OutputFormat } from '../output.js';

export async function cmdLocalStop(ctx: Context, clusters: string[], all: boolean): Promise<void> {
  if (clusters.length === 0 && !all) {
    throw new UsageError('name the clusters to stop, or pass --all');
  }
  const names = all ? localClusters(ctx.stateDir) : clusters;
  let count = 0;
  for (const name of names) {
    for (const p of await stopLocal(ctx.stateDir, name)) {
      ctx.out(`stopped ${p.component} of ${p.cluster} (pid ${p.pid})\n`);
      count++;
    }
  }
  if (count === 0) ctx.out('nothing was running\n');
}

export function cmdLocalList(ctx: Context, output: OutputFormat): void {
  const rows = listLocal(ctx.stateDir);
  ctx.out(
    render(
      output,
      { processes: rows },
      rows,
      [
        { header: 'CLUSTER', value: (r) => r.cluster },
        { header: 'COMPONENT', value: (r) => r.component },
        { header: 'PID', value: (r) => String(r.pid) },
        { header: 'STATUS', value: (r) => (r.running ? 'running' : 'exited') },
        { header: 'STARTED', value: (r) => r.startedAt },
        { header: 'LOG', value: (r) => r.log, wide: true },
      ],
      `No local processes under ${ctx.stateDir}.`,
    ),
  );
}
