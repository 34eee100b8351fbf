// Removes the previous run's test reports so the summary counts only this run.
import { rmSync } from 'node:fs';
rmSync(new URL('../.spillway/test-results/', import.meta.url), { recursive: true, force: true });
