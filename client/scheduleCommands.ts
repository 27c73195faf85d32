/** `wmss schedule …`: scheduled retraining with Temporal Schedules (client/commands/schedule.ts does the work). */
import type { Command } from 'commander';
import { createSchedule, describeSchedule, listSchedules, parseOverlap, scheduleHandle } from './commands/schedule';
import { withClient } from './cliArgs';
import { readRunConfigForRun } from './runConfigFile';

export function addScheduleCommands(program: Command): void {
  const schedule = program
    .command('schedule')
    .description(
      'scheduled retraining with Temporal Schedules (create, list, describe, pause, unpause, trigger, backfill, delete)',
    );
  schedule
    .command('create')
    .description(
      'schedule a run config: each action starts the pipeline with it; date templates like {date} in its paths resolve to the scheduled day',
    )
    .requiredOption('--config <file>', 'run config (JSON), as for `wmss start`')
    .option('--cron <expression>', 'cron expression (UTC), e.g. "0 3 * * *"')
    .option('--every <interval>', 'fixed interval, e.g. 1d, 12h, 30m')
    .option('--id <scheduleId>', 'schedule id (default wmss-<runName>)')
    .option(
      '--overlap <policy>',
      'when the previous run is still going: SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER, TERMINATE_OTHER, ALLOW_ALL',
      'SKIP',
    )
    .option('--no-pause-on-failure', 'keep scheduling after a failed run (default: pause the schedule)')
    .option('--catchup-window <duration>', 'how far back missed actions are still taken after an outage', '1d')
    .option('--paused', 'create it paused')
    .action((o) =>
      withClient(async (client) => {
        const config = readRunConfigForRun(o.config, { scheduled: true });
        const handle = await createSchedule(client, {
          config,
          scheduleId: o.id,
          cron: o.cron,
          every: o.every,
          overlap: parseOverlap(o.overlap),
          pauseOnFailure: o.pauseOnFailure,
          catchupWindow: o.catchupWindow,
          paused: Boolean(o.paused),
        });
        console.log(`created schedule ${handle.scheduleId}\n${await describeSchedule(handle)}`);
      }),
    );
  schedule
    .command('list')
    .description('the pipeline schedules on this namespace')
    .action(() => withClient(async (client) => console.log(await listSchedules(client))));
  schedule
    .command('describe <id>')
    .description('spec, policies, state, recent and next runs')
    .action((id: string) =>
      withClient(async (client) => console.log(await describeSchedule(await scheduleHandle(client, id)))),
    );
  schedule
    .command('pause <id>')
    .option('--note <text>', 'why', 'paused with wmss schedule pause')
    .action((id: string, o) =>
      withClient(async (client) => {
        await (await scheduleHandle(client, id)).pause(o.note);
        console.log(`paused ${id}`);
      }),
    );
  schedule
    .command('unpause <id>')
    .option('--note <text>', 'why', 'unpaused with wmss schedule unpause')
    .action((id: string, o) =>
      withClient(async (client) => {
        await (await scheduleHandle(client, id)).unpause(o.note);
        console.log(`unpaused ${id}`);
      }),
    );
  schedule
    .command('trigger <id>')
    .description('start a run now (the overlap policy applies: with SKIP nothing starts while a run is going)')
    .option('--overlap <policy>', 'override the overlap policy for this run')
    .action((id: string, o) =>
      withClient(async (client) => {
        const handle = await scheduleHandle(client, id);
        // Temporal's trigger ignores the schedule's overlap policy (ALLOW_ALL) unless given one.
        await handle.trigger(o.overlap ? parseOverlap(o.overlap) : (await handle.describe()).policies.overlap);
        console.log(
          `triggered ${id}; follow it with \`wmss schedule describe ${id}\` and \`wmss watch <workflow id>\``,
        );
      }),
    );
  schedule
    .command('backfill <id>')
    .description('take the actions the schedule would have taken between two times (ISO 8601)')
    .requiredOption('--start <time>', 'e.g. 2026-11-01T00:00:00Z')
    .requiredOption('--end <time>', 'e.g. 2026-11-07T00:00:00Z')
    .option('--overlap <policy>', 'overlap policy for the backfilled runs', 'BUFFER_ALL')
    .action((id: string, o) =>
      withClient(async (client) => {
        const start = new Date(o.start);
        const end = new Date(o.end);
        if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start)
          throw new Error('--start and --end must be ISO times with --end after --start');
        await (await scheduleHandle(client, id)).backfill([{ start, end, overlap: parseOverlap(o.overlap) }]);
        console.log(`backfill of ${id} from ${start.toISOString()} to ${end.toISOString()} requested`);
      }),
    );
  schedule
    .command('delete <id>')
    .description('delete the schedule (runs it started keep going)')
    .action((id: string) =>
      withClient(async (client) => {
        await (await scheduleHandle(client, id)).delete();
        console.log(`deleted schedule ${id}`);
      }),
    );
}
