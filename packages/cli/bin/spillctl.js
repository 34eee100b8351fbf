#!/usr/bin/env node
// The `spillctl` command that npm links into node_modules/.bin. It is committed rather than
// built because npm links a workspace's bin only if its file exists when `npm ci` runs, and
// on a fresh clone dist/ does not exist yet: `npx spillctl` would then ask the registry.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    `spillctl: ${fileURLToPath(main)} is missing: spillctl is not built yet; run \`npm run build\` at the repository root first\n`,
  );
  process.exit(1);
}
await import(main.href);
