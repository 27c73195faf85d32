/** What every bench under bench/ does at its end: write its figures where bench/README.md says, exit 1 on failure. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../activities/repoPaths';

/** Writes bench/results/<name>.json (pretty-printed) and returns its path. */
export function writeBenchResult(name: string, figures: unknown): string {
  const out = path.join(REPO_ROOT, 'bench', 'results', `${name}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(figures, null, 2)}\n`);
  return out;
}

/** Runs a bench's main; a failure prints its error and exits 1, so a broken bench cannot pass for a result. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
