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
  constructor(
    readonly code: TestbedErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
