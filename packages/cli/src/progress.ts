/**
 * Progress of long operations on stderr, so stdout stays parseable: a spinner line that
 * rewrites itself on a terminal, plain timestamped-free lines (each change once) otherwise.
 */
export interface Progress {
  /** The step now in progress; repeated identical updates print nothing new. */
  update(text: string): void;
  /** Ends the current step with a ✓ (or a plain line). */
  done(text: string): void;
  fail(text: string): void;
  stop(): void;
}

export interface ProgressStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export function createProgress(stream: ProgressStream, quiet = false): Progress {
  if (quiet) return { update() {}, done() {}, fail() {}, stop() {} };
  if (stream.isTTY === true) return new Spinner(stream);
  let last = '';
  return {
    update(text) {
      if (text !== last) stream.write(`${text}\n`);
      last = text;
    },
    done(text) {
      stream.write(`${text}\n`);
      last = '';
    },
    fail(text) {
      stream.write(`${text}\n`);
      last = '';
    },
    stop() {},
  };
}

class Spinner implements Progress {
  private text = '';
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();

  constructor(private readonly stream: ProgressStream) {}

  update(text: string): void {
    this.text = text;
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), 80);
      this.timer.unref();
    }
    this.draw();
  }

  done(text: string): void {
    this.end(`\u2713 ${text}`);
  }

  fail(text: string): void {
    this.end(`\u2717 ${text}`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.text) this.stream.write('\r\x1b[2K');
    this.text = '';
  }

  private end(line: string): void {
    this.stop();
    this.stream.write(`${line}\n`);
  }

  private draw(): void {
    const secs = Math.floor((Date.now() - this.started) / 1000);
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame]} ${this.text} (${secs}s)`);
  }
}
