import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { componentLogger, createLogger } from './logging.js';

function capture(): { lines: string[]; destination: Writable } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, destination };
}

const count = (line: string, key: string): number => line.split(`"${key}":`).length - 1;

describe('logging', () => {
  it('writes each binding once, the innermost component winning', async () => {
    const { lines, destination } = capture();
    const root = createLogger({ bindings: { component: 'broker', brokerId: 'b1' }, destination });
    root.info('root');
    const grpc = componentLogger(root, 'grpc');
    grpc.info('grpc');
    componentLogger(grpc.child({ cluster: 'east' }), 'stream').info('nested');
    componentLogger(root, 'core', { brokerId: 'b1' }).info('core');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(count(line, 'component'), line).toBe(1);
      expect(count(line, 'brokerId'), line).toBe(1);
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => p.component)).toEqual(['broker', 'grpc', 'stream', 'core']);
    expect(parsed[2]).toMatchObject({ cluster: 'east', brokerId: 'b1' });
  });
});
