/** The `wmss` command line. Each command is a thin wrapper over client/commands/*. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { addWorkerCommand } from '../workers/workerCommand';
import { addConnectionFlags, connectClient, temporalTarget, webUiLink } from '../temporal/connection';
import { serverAnswers, startDevServer } from './devServer';
import { configReference } from './configReference';
import { stepTableMarkdown, stepTablePlain } from './stepTable';
import { runDemo } from './commands/demo';
import { runCompare } from './commands/compare';
import { startPipeline, waitForResult } from './commands/start';
import { exitCodeOf, renderSnapshot, snapshotRun } from './commands/status';
import { listRuns, renderRunList, resolveWorkflowId } from './commands/resolveRun';
import { watchRun } from './commands/watch';
import { isRunDir, runOfWorkflow, writeReport } from './commands/report';
import { startTensorboard, tensorboardPlan } from './commands/tensorboard';
import { addScheduleCommands } from './scheduleCommands';
import { addSweepCommand } from './sweepCommand';
import { isSweepDir, writeSweepReport } from './report/sweepReport';
import { positiveInteger, positiveSeconds, withClient } from './cliArgs';
import { renderPlan } from './commands/plan';
import { effectiveValues, renderEffectiveValues } from './commands/effectiveConfig';
import { configToResume } from './commands/resume';
import { checkpointNow, rerun } from './commands/runControls';
import { explainWorkflowError } from './commands/failure';
import { absolutize, ConfigFileError, loadRunConfig, readRunConfigForRun } from './runConfigFile';

/** Accepts a workflow id (any start method: wmss, temporal CLI, Schedule) or a run name: commands/resolveRun.ts. */
const idOf = (client: Awaited<ReturnType<typeof connectClient>>, idOrName: string) =>
  resolveWorkflowId(client, idOrName);

/** `--wait`: the run's result as JSON, or its failure explained (and a non-zero exit). */
async function printResult(client: Awaited<ReturnType<typeof connectClient>>, workflowId: string): Promise<void> {
  const result = await waitForResult(client, workflowId).catch((err) => explainWorkflowError(workflowId, err));
  console.log(JSON.stringify(result, null, 2));
}

export function buildProgram(): Command {
  const program = new Command('wmss').description('Durable WMSS training pipeline on Temporal').showHelpAfterError();

  // How every command reaches Temporal (temporal/connection.ts): flags over TEMPORAL_* variables over
  // the profile file (TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml) over defaults.
  addConnectionFlags(program);

  program
    .command('server')
    .description('run `temporal server start-dev` with a SQLite file and the Web UI (foreground)')
    .option('--db <file>', 'SQLite file of the dev server', '.wmss/temporal.db')
    .option('--port <n>', 'gRPC port', '7233')
    .option('--ui-port <n>', 'Web UI port (default: gRPC port + 1000, as temporal server start-dev)')
    .option('--ip <addr>', 'address to bind', '127.0.0.1')
    .action(async (o) => {
      const address = `${o.ip}:${o.port}`;
      const configured = process.env.TEMPORAL_ADDRESS;
      if (configured && (await serverAnswers(configured))) {
        console.log(`a Temporal server already answers at TEMPORAL_ADDRESS=${configured}; using it`);
        return;
      }
      if (await serverAnswers(address)) {
        console.log(`a Temporal server already answers at ${address}; using it`);
        return;
      }
      const uiPort = o.uiPort ? Number(o.uiPort) : Number(o.port) + 1000;
      const server = await startDevServer({
        dbFile: path.resolve(o.db),
        port: Number(o.port),
        uiPort,
        ip: o.ip,
        logFile: path.resolve(path.dirname(o.db), 'temporal-server.log'),
      });
      console.log(
        `Temporal dev server at ${server.address}, Web UI ${server.uiUrl}, data ${path.resolve(o.db)} (Ctrl-C to stop)`,
      );
      // Other wmss commands derive the UI from the gRPC port (+1000); a UI elsewhere needs telling.
      if (uiPort !== Number(o.port) + 1000)
        console.log(`for Web UI links in other shells: export WMSS_UI_URL=${server.uiUrl}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.stop();
    });

  addWorkerCommand(program);

  program
    .command('start <config>')
    .description('validate a run config (JSON) and start the pipeline')
    .option('--wait', 'wait for the run to finish and print its result')
    .action(async (file: string, o) => {
      const config = readRunConfigForRun(file);
      await withClient(async (client) => {
        const handle = await startPipeline(client, config);
        console.log(
          `started ${handle.workflowId}\nWeb UI: ${webUiLink(handle.workflowId)}\nfollow: wmss watch ${config.runName}`,
        );
        if (o.wait) await printResult(client, handle.workflowId);
      });
    });

  program
    .command('resume <target>')
    .description(
      'start a run again from a run dir, config file, run name or workflow id; finished steps are reused and training resumes from its last checkpoint',
    )
    .option('--wait', 'wait for the run to finish and print its result')
    .action((target: string, o) =>
      withClient(async (client) => {
        const config = absolutize(await configToResume(client, target));
        const handle = await startPipeline(client, config);
        console.log(
          `resumed ${config.runName} as ${handle.workflowId} (finished steps are reused)\nWeb UI: ${webUiLink(handle.workflowId)}`,
        );
        if (o.wait) await printResult(client, handle.workflowId);
      }),
    );

  program
    .command('plan <config>')
    .description('show the step graph of a config and which steps already have outputs')
    .action(async (file: string) => {
      const config = readRunConfigForRun(file);
      // then every effective value and where it came from (file line, preset, default)
      console.log(
        `${await renderPlan(config)}\n${renderEffectiveValues(effectiveValues(loadRunConfig(file), config))}`,
      );
    });

  program
    .command('status [run]')
    .description('a table of every step of a run (run name or workflow id); without a run, the newest runs')
    .option('--limit <n>', 'runs listed without a run argument', positiveInteger, 20)
    .action((run: string | undefined, o) =>
      withClient(async (client) => {
        if (!run) return console.log(renderRunList(await listRuns(client, o.limit)));
        const snap = await snapshotRun(client, await idOf(client, run));
        console.log(renderSnapshot(snap));
        process.exitCode = exitCodeOf(snap);
      }),
    );

  program
    .command('watch <run>')
    .description(
      "progress bars of the running steps (samples or optimizer steps, loss, tokens/s, ETA) and the run's ETA, until it ends",
    )
    .option('--every <seconds>', 'refresh interval', positiveSeconds, 2)
    .option('--plain', 'plain lines instead of bars (the default when the output is not a terminal)')
    .action((run: string, o) =>
      withClient(async (client) => {
        const last = await watchRun(client, await idOf(client, run), {
          everyMs: o.every * 1000,
          plain: o.plain ? true : undefined,
        });
        process.exitCode = last.workflowStatus === 'COMPLETED' ? 0 : 1;
      }),
    );

  program
    .command('cancel <run>')
    .description('cancel a run: running kernels save a checkpoint and stop; `wmss start` with the same config resumes')
    .action((run: string) =>
      withClient(async (client) => {
        const id = await idOf(client, run);
        const handle = client.workflow.getHandle(id);
        // Cancelling a closed run is accepted by the server and does nothing: say so instead.
        const { status } = await handle.describe();
        if (status.name !== 'RUNNING')
          throw new Error(
            `run ${id} has already ended (${status.name.toLowerCase()}); nothing to cancel. \`wmss status ${run}\` shows how it ended`,
          );
        await handle.cancel();
        console.log(`cancellation requested for ${id}`);
      }),
    );

  program
    .command('checkpoint <run>')
    .description('the running training step saves a checkpoint now; prints its path once it is complete')
    .option('--step <step>', 'which training step when both could run: 1 (sft) or 5b (joint)')
    .action((run: string, o) =>
      withClient(async (client) => {
        const saved = await checkpointNow(client, await idOf(client, run), o.step);
        const what = saved.final ? 'the step had finished; its final checkpoint' : 'checkpoint saved';
        console.log(`${what}: ${saved.path} (step ${saved.step} of ${saved.stepId})`);
      }),
    );

  program
    .command('rerun <run> <step>')
    .description(
      'run a step (number or id) and every step after it again: their cache entries are invalidated; refused while one of them runs; a closed run is started again',
    )
    .action((run: string, step: string) =>
      withClient(async (client) => {
        const id = await idOf(client, run);
        const reply = await rerun(client, id, step);
        console.log(
          `${reply.restarted ? `started ${id} again; ` : ''}re-running ${reply.steps.join(', ')}${reply.invalidated.length ? `\ninvalidated: ${reply.invalidated.join('; ')}` : ''}\nfollow it with \`wmss watch ${id}\``,
        );
      }),
    );

  program
    .command('result <run>')
    .description('wait for a run and print its result (JSON)')
    .action((run: string) =>
      withClient(async (client) => {
        const id = await idOf(client, run);
        console.log(
          JSON.stringify(await waitForResult(client, id).catch((err) => explainWorkflowError(id, err)), null, 2),
        );
      }),
    );

  program
    .command('report <run>')
    .description(
      'write <runDir>/report/index.html (self-contained) and report.md with plots; <run> is a run dir, run name or workflow id',
    )
    .action(async (run: string) => {
      // a sweep dir (with sweep.json): the sweep's report (client/report/sweepReport.ts)
      if (isSweepDir(run)) {
        const files = writeSweepReport(path.resolve(run));
        return console.log(
          `sweep report: ${files.html}\n              ${files.markdown} (+ ${files.charts.length} SVG chart)`,
        );
      }
      // A directory argument must be a run dir: report writes report/ into it.
      if (!isRunDir(run) && existsSync(run))
        throw new Error(
          `${run} is not a wmss run dir (it has no .wmss/ with step manifests); \`wmss report\` writes only into run dirs. Pass a run dir, run name or workflow id`,
        );
      const files = isRunDir(run)
        ? await writeReport(path.resolve(run))
        : await withClient(async (client) => {
            const r = await runOfWorkflow(client, run);
            return writeReport(r.runDir, {
              config: r.config,
              workflowId: r.workflowId,
              runName: r.runName,
              spans: r.spans,
            });
          });
      console.log(`report: ${files.html}\n        ${files.markdown} (+ ${files.charts.length} SVG charts)`);
      if (files.data.missing.length) console.log(`not (yet) available:\n  ${files.data.missing.join('\n  ')}`);
    });

  program
    .command('tensorboard <run>')
    .description(
      "open the run's TensorBoard (<runDir>/tensorboard): start it when installed, else print the command; <run> is a run dir, run name or workflow id",
    )
    .option('--port <n>', 'TensorBoard port', '6006')
    .option('--print', 'only print the command')
    .action(async (run: string, o: { port: string; print?: boolean }) => {
      const runDir = isRunDir(run)
        ? path.resolve(run)
        : await withClient(async (client) => (await runOfWorkflow(client, run)).runDir);
      const plan = tensorboardPlan(runDir, Number(o.port));
      if (!existsSync(plan.logdir)) console.log(`no event files yet: ${plan.logdir} does not exist`);
      if (o.print || !plan.executable) {
        console.log(plan.command);
        if (!plan.executable) console.log('(tensorboard is not installed in this checkout: pip install tensorboard)');
        return;
      }
      console.log(`${plan.command}
TensorBoard: http://localhost:${o.port}`);
      process.exitCode = await startTensorboard(plan, Number(o.port));
    });

  addScheduleCommands(program);
  addSweepCommand(program);

  program
    .command('demo')
    .description('run steps 0–7 on a tiny model on this machine (starts a dev server and workers if none)')
    .option('--dir <dir>', 'where the demo writes everything', 'runs/demo')
    .option('--run-name <name>', 'run name', 'demo')
    .option('--keep-server', 'keep the dev server and its Web UI up after the run (Ctrl-C to stop)')
    .option('--port <n>', 'dev server gRPC port when one is started', '7233')
    .option('--ui-port <n>', 'dev server Web UI port', '8233')
    .action(async (o) => {
      process.exitCode = await runDemo({
        dir: o.dir,
        runName: o.runName,
        keepServer: Boolean(o.keepServer),
        port: Number(o.port),
        uiPort: Number(o.uiPort),
      });
    });

  program
    .command('compare')
    .description(
      "does WMSS help on the demo's task? 3 seeds × 2 prompt formats × λ 0.3, 0.5, 0.7 of the demo run, then the sweep report (make compare; docs/compare.md)",
    )
    .option('--dir <dir>', 'where the comparison writes everything', 'runs/compare')
    .option('--seeds <list>', 'comma-separated seeds', '1,2,3')
    .option('--lambdas <list>', 'comma-separated values of joint.fusionLambda', '0.3,0.5,0.7')
    .option('--formats <list>', 'comma-separated values of joint.promptFormat', 'conversation,stage1')
    .option('--publish <dir>', 'copy report.md and its chart into this directory (docs/compare)')
    .option(
      '--set <field=value...>',
      'a run config field for every point, e.g. joint.lr=1e-4 (the value read as JSON when it parses)',
    )
    .option('--keep-server', 'keep the dev server and its Web UI up after the sweep (Ctrl-C to stop)')
    .option('--port <n>', 'dev server gRPC port when one is started', '7233')
    .option('--ui-port <n>', 'dev server Web UI port', '8233')
    .action(async (o) => {
      const list = (text: string, what: string) =>
        text.split(',').map((v) => {
          const n = Number(v);
          if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${what}: "${v}" is not a number`);
          return n;
        });
      process.exitCode = await runCompare({
        dir: o.dir,
        seeds: list(o.seeds, 'seeds'),
        lambdas: list(o.lambdas, 'lambdas'),
        formats: String(o.formats).split(','),
        publish: o.publish,
        set: Object.fromEntries(
          ((o.set as string[] | undefined) ?? []).map((pair) => {
            const eq = pair.indexOf('=');
            if (eq < 1) throw new Error(`--set ${pair}: expected field=value`);
            const text = pair.slice(eq + 1);
            let value: unknown = text;
            try {
              value = JSON.parse(text);
            } catch {
              // a plain string
            }
            return [pair.slice(0, eq), value];
          }),
        ),
        keepServer: Boolean(o.keepServer),
        port: Number(o.port),
        uiPort: Number(o.uiPort),
      });
    });

  program
    .command('config-reference')
    .description('print the run config reference (Markdown), generated from the schema')
    .action(() => console.log(configReference()));

  program
    .command('steps')
    .description("print the step table; --markdown: with each step's timeouts and retry policy, as in docs/recovery.md")
    .option('--markdown', 'the Markdown table with timeouts and retry policies')
    .action((o: { markdown?: boolean }) =>
      o.markdown ? console.log(stepTableMarkdown()) : console.log(stepTablePlain()),
    );

  return program;
}

/** Runs the CLI on argv; `bin/wmss` and `node dist/client/cli.js` both come here. */
export function main(argv: string[] = process.argv): void {
  // `wmss watch … | head` closes the pipe early: that is the reader being done, not an error.
  const quietOnEpipe = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  };
  process.stdout.on('error', quietOnEpipe);
  process.stderr.on('error', quietOnEpipe);
  buildProgram()
    .parseAsync(argv)
    .catch((err) => {
      const message = err instanceof Error ? err.message : String(err);
      console.error(`wmss: ${message}`);
      if (/ECONNREFUSED|connect|UNAVAILABLE/i.test(message)) {
        let where = 'the configured address';
        try {
          const t = temporalTarget();
          where = `${t.address} (${t.security})`;
        } catch {
          // the connection settings themselves are the problem: the message above says which
        }
        console.error(
          `no Temporal server at ${where}? start one with \`wmss server\`, or set TEMPORAL_ADDRESS / --address (and the TLS settings: docs/security.md)`,
        );
      }
      process.exit(err instanceof ConfigFileError ? 2 : 1);
    });
}

// `require.main` is bin/wmss when the installed command runs, so the bin script calls main() itself.
if (require.main === module) main();
