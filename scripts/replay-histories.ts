/**
 * Replays recorded run histories against the compiled workflow code and exits non-zero on any
 * non-determinism: `node dist/scripts/replay-histories.js <history.json>...`.
 * Run as its own process because protobufjs' JSON decoding does not work inside jest's sandbox.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';

async function main(files: string[]) {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const workflowsPath = require.resolve(path.join(__dirname, '..', 'workflows'));
  let failed = 0;
  for (const file of files) {
    try {
      const history = JSON.parse(readFileSync(file, 'utf8'));
      // the recorded run's own workflow id: workflow code that derives ids from it (alert child
      // workflows) must see the same one as when it ran
      const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
      await Worker.runReplayHistory({ workflowsPath }, history, started?.workflowId ?? path.basename(file));
      console.log(`replayed ${file}`);
    } catch (err) {
      failed += 1;
      console.error(`NON-DETERMINISM in ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

void main(process.argv.slice(2));
