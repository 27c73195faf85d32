/**
 * Records the event history of a finished run as a replay fixture for test/workflow/replay.test.ts:
 *   node dist/scripts/record-history.js <workflow-id> [name]
 * TEMPORAL_ADDRESS names the server (for the demo's history: `wmss server --db runs/demo/temporal.db`).
 * The history is exported with Temporal's CLI, in the JSON form the replayer reads.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { temporalCli } from '../client/devServer';
import { temporalTarget } from '../temporal/connection';

const [workflowId, name = workflowId] = process.argv.slice(2);
if (!workflowId) {
  console.error('usage: record-history <workflow-id> [name]');
  process.exit(2);
}
const target = temporalTarget();
const json = execFileSync(
  temporalCli(),
  [
    'workflow',
    'show',
    '--workflow-id',
    workflowId,
    '--output',
    'json',
    '--address',
    target.address,
    '--namespace',
    target.namespace,
  ],
  { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 },
);
const file = path.join(__dirname, '..', '..', 'test', 'fixtures', 'histories', `${name}.json`);
writeFileSync(file, json);
console.log(`wrote ${file} (${JSON.parse(json).events?.length ?? 0} events)`);
