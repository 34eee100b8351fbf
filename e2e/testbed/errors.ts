/** Stable codes for what can go wrong in the test bed. */
export type TestbedErrorCode =
  | 'TESTBED_GO_MISSING'
  | 'TESTBED_BUILD_FAILED'
  | 'TESTBED_BINARIES_MISSING'
  | 'TESTBED_COMPONENT_EXITED'
  | 'TESTBED_TIMEOUT'
  | 'TESTBED_BAD_OPTIONS';

/** An error whose message is one line telling what went wrong and what to do. */
export class TestbedError extends Error {
  override readonly name = 'TestbedError';
  /** True when the message has already been shown to the user (by the build script). */
  readonly reported: boolean;
  constructor(
    readonly code: TestbedErrorCode,
    message: string,
    options?: { cause?: unknown; reported?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.reported = options?.reported ?? false;
  }
}
