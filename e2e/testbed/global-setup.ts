import { BIN_DIR_ENV, buildBinaries } from './binaries.js';
import { TestbedError } from './errors.js';

/**
 * Builds the test bed binaries once per run (seconds when cached) and hands
 * their directory to the test files. Missing Go fails the run with one line;
 * nothing is skipped.
 */
export default async function setup(): Promise<void> {
  const started = Date.now();
  try {
    process.env[BIN_DIR_ENV] = await buildBinaries();
  } catch (err) {
    if (err instanceof TestbedError) {
      // One line saying what to do, not a stack trace (nor the same line twice).
      if (!err.reported) process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`test bed: binaries ready in ${process.env[BIN_DIR_ENV]} (${seconds} s)\n`);
}
