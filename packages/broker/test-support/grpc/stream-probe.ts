import * as grpc from '@grpc/grpc-js';
import type { BrokerMessage__Output, ClusterMessage } from '@spillway/api';
import { GRPC_CODE_METADATA_KEY, GRPC_FIELD_METADATA_KEY } from '@spillway/common';

/**
 * A raw Connect stream for tests: records what the broker sends and how the stream ends,
 * so a test can send exactly the messages a misbehaving cluster would.
 */
export interface EndStatus {
  code: grpc.status;
  details: string;
  spillwayCode: string | undefined;
  field: string | undefined;
}

export class StreamProbe {
  readonly messages: BrokerMessage__Output[] = [];
  readonly ended: Promise<EndStatus>;
  private waiters: (() => void)[] = [];
  private endedWith: EndStatus | undefined;

  constructor(readonly call: grpc.ClientDuplexStream<ClusterMessage, BrokerMessage__Output>) {
    call.on('data', (m: BrokerMessage__Output) => {
      this.messages.push(m);
      this.wake();
    });
    this.ended = new Promise<EndStatus>((resolve) => {
      const done = (s: Partial<grpc.StatusObject> & { code: grpc.status }): void => {
        if (this.endedWith) return;
        const md = s.metadata;
        const code = md?.get(GRPC_CODE_METADATA_KEY)[0];
        const field = md?.get(GRPC_FIELD_METADATA_KEY)[0];
        this.endedWith = {
          code: s.code,
          details: s.details ?? '',
          spillwayCode: typeof code === 'string' ? code : undefined,
          field: typeof field === 'string' ? field : undefined,
        };
        resolve(this.endedWith);
        this.wake();
      };
      call.on('status', (s: grpc.StatusObject) => done(s));
      call.on('error', (e: grpc.ServiceError) => done(e));
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(msg: ClusterMessage): void {
    this.call.write(msg);
  }

  /** The first message (from `from` on) matching `pred`; fails after `timeoutMs`. */
  async next(
    pred: (m: BrokerMessage__Output) => boolean,
    timeoutMs = 5_000,
    from = 0,
  ): Promise<BrokerMessage__Output> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(pred);
      if (found) return found;
      if (this.endedWith)
        throw new Error(
          `stream ended (${this.endedWith.code} ${this.endedWith.details}) before the message`,
        );
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a broker message');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** How the stream ended; fails if it is still open after `timeoutMs`. */
  async end(timeoutMs = 5_000): Promise<EndStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('stream still open')), timeoutMs);
    });
    try {
      return await Promise.race([this.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  get isEnded(): boolean {
    return this.endedWith !== undefined;
  }

  close(): void {
    this.call.cancel();
  }
}
