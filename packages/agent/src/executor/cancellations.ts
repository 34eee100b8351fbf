/**
 * The streaming commands (logs) under way, by request id, so that a cancel from the broker,
 * or the end of the broker stream that asked for them, stops each one on the donor.
 */
export class Cancellations {
  private readonly open = new Map<string, AbortController>();

  /** A signal for `requestId`, aborted by cancel() or endAll(); call done() when it ends. */
  begin(requestId: string): AbortSignal {
    // A request id is never reused; a repeat is a resend of the same command: stop the first.
    this.open.get(requestId)?.abort(new Error('superseded by a resend'));
    const c = new AbortController();
    this.open.set(requestId, c);
    return c.signal;
  }

  done(requestId: string, signal: AbortSignal): void {
    const c = this.open.get(requestId);
    if (c?.signal === signal) this.open.delete(requestId);
  }

  /** True when the request was still under way. */
  cancel(requestId: string, why: string): boolean {
    const c = this.open.get(requestId);
    if (!c) return false;
    this.open.delete(requestId);
    c.abort(new Error(why));
    return true;
  }

  /** Aborts every open request; returns how many there were. */
  endAll(why: string): number {
    const all = [...this.open.values()];
    this.open.clear();
    for (const c of all) c.abort(new Error(why));
    return all.length;
  }

  get size(): number {
    return this.open.size;
  }
}
