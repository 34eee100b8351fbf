#!/usr/bin/env node
// spillctl: wires the process (argv, stdio, env, Ctrl-C) to run(); all logic is in program.ts.
import { run } from './program.js';

const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
process.once('SIGTERM', () => controller.abort());

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  interrupted: controller.signal,
});
process.exitCode = code;
// Detached --local children and keep-alive sockets must not hold spillctl open.
setImmediate(() => process.exit(code));
