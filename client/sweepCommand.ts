/** `wmss sweep <sweep.json> [--wait]`: start a sweep (client/commands/startSweep.ts, docs/sweeps.md). */
import type { Command } from 'commander';
import { webUiLink } from '../temporal/connection';
import { withClient } from './cliArgs';
import { readSweepFile, startSweep } from './commands/startSweep';
import { explainWorkflowError } from './commands/failure';

export function addSweepCommand(program: Command): void {
  program
    .command('sweep <file>')
    .description(
      'start one run per point of a sweep (seeds × λ, or a list of config overrides); shared steps run once; results aggregated into <sweepDir>/sweep.json',
    )
    .option('--wait', 'wait for the sweep to end and print its result')
    .action(async (file: string, o: { wait?: boolean }) => {
      const spec = readSweepFile(file);
      await withClient(async (client) => {
        const handle = await startSweep(client, spec);
        console.log(
          `started ${handle.workflowId}\nWeb UI: ${webUiLink(handle.workflowId)}\nreport when done: wmss report ${spec.sweepDir}`,
        );
        if (!o.wait) return;
        const result = await handle.result().catch((err) => explainWorkflowError(handle.workflowId, err));
        console.log(JSON.stringify(result, null, 2));
      });
    });
}
