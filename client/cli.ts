/** The `wmss` command line. Each command is a thin wrapper over client/commands/*. */
import path from 'node:path';
import { Command } from 'commander';
import { STEPS } from '../pipeline/steps';
import { workflowIdFor } from '../pipeline/workflowApi';
import { startWorker } from '../workers/start';
import { connectClient, temporalTarget, webUiLink } from './connection';
import { serverAnswers, startDevServer } from './devServer';
import { configReference } from './configReference';
import { runDemo } from './commands/demo';
import { startPipeline, waitForResult } from './commands/start';
import { renderSnapshot, snapshotRun } from './commands/status';
import { renderPlan } from './commands/plan';
import { absolutize, ConfigFileError, readRunConfig } from './runConfigFile';

/** Accepts a workflow id or a run name. */
const idOf = (idOrName: string) => (idOrName.startsWith('wmss-') ? idOrName : workflowIdFor(idOrName));

async function withClient<T>(fn: (client: Awaited<ReturnType<typeof connectClient>>) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

export function buildProgram(): Command {
  const program = new Command('wmss').description('Durable WMSS training pipeline on Temporal').showHelpAfterError();

  program
    .command('server')
    .description('run `temporal server start-dev` with a SQLite file and the Web UI (foreground)')
    .option('--db <file>', 'SQLite file of the dev server', '.wmss/temporal.db')
    .option('--port <n>', 'gRPC port', '7233')
    .option('--ui-port <n>', 'Web UI port', '8233')
    .option('--ip <addr>', 'address to bind', '127.0.0.1')
    .action(async (o) => {
      const address = `${o.ip}:${o.port}`;
      if (await serverAnswers(address)) {
        console.log(`a Temporal server already answers at ${address}; using it`);
        return;
      }
      const server = await startDevServer({ dbFile: path.resolve(o.db), port: Number(o.port), uiPort: Number(o.uiPort), ip: o.ip, logFile: path.resolve(path.dirname(o.db), 'temporal-server.log') });
      console.log(`Temporal dev server at ${server.address}, Web UI ${server.uiUrl}, data ${path.resolve(o.db)} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.stop();
    });

  program
    .command('worker <kind>')
    .description('run a worker: control (workflows + CPU steps) or gpu (kernel steps)')
    .option('--gpus <set>', 'devices this GPU worker owns: cpu, or a list like 0,1', 'cpu')
    .option('--threads <n>', 'CPU threads per kernel (default: all cores)')
    .option('--control-queue <name>', 'control task queue', 'wmss')
    .option('--gpu-queue <name>', 'GPU task queue', 'wmss-gpu')
    .action(async (kind: string, o) => {
      if (kind !== 'control' && kind !== 'gpu') throw new Error(`worker kind must be control or gpu, not "${kind}"`);
      await startWorker(kind, { gpus: o.gpus, threads: o.threads, controlQueue: o.controlQueue, gpuQueue: o.gpuQueue });
    });

  program
    .command('start <config>')
    .description('validate a run config (JSON) and start the pipeline')
    .option('--wait', 'wait for the run to finish and print its result')
    .action(async (file: string, o) => {
      const config = absolutize(readRunConfig(file));
      await withClient(async (client) => {
        const handle = await startPipeline(client, config);
        console.log(`started ${handle.workflowId}\nWeb UI: ${webUiLink(handle.workflowId)}\nfollow: wmss watch ${config.runName}`);
        if (o.wait) console.log(JSON.stringify(await waitForResult(client, handle.workflowId), null, 2));
      });
    });

  program
    .command('plan <config>')
    .description('show the step graph of a config and which steps already have outputs')
    .action(async (file: string) => console.log(await renderPlan(absolutize(readRunConfig(file)))));

  program
    .command('status <run>')
    .description('print the state of every step of a run (run name or workflow id)')
    .action((run: string) => withClient(async (client) => console.log(renderSnapshot(await snapshotRun(client, idOf(run))))));

  program
    .command('watch <run>')
    .description('follow a run until it ends')
    .option('--every <seconds>', 'refresh interval', '3')
    .action((run: string, o) =>
      withClient(async (client) => {
        const id = idOf(run);
        for (;;) {
          const snap = await snapshotRun(client, id);
          console.log(`${new Date().toISOString()}\n${renderSnapshot(snap)}\n`);
          if (snap.workflowStatus !== 'RUNNING') return;
          await new Promise((r) => setTimeout(r, Number(o.every) * 1000));
        }
      }),
    );

  program
    .command('cancel <run>')
    .description('cancel a run: running kernels save a checkpoint and stop; `wmss start` with the same config resumes')
    .action((run: string) =>
      withClient(async (client) => {
        await client.workflow.getHandle(idOf(run)).cancel();
        console.log(`cancellation requested for ${idOf(run)}`);
      }),
    );

  program
    .command('result <run>')
    .description('wait for a run and print its result (JSON)')
    .action((run: string) => withClient(async (client) => console.log(JSON.stringify(await waitForResult(client, idOf(run)), null, 2))));

  program
    .command('demo')
    .description('run steps 0–7 on a tiny model on this machine (starts a dev server and workers if none)')
    .option('--dir <dir>', 'where the demo writes everything', 'runs/demo')
    .option('--run-name <name>', 'run name', 'demo')
    .option('--keep-server', 'keep the dev server and its Web UI up after the run (Ctrl-C to stop)')
    .option('--port <n>', 'dev server gRPC port when one is started', '7233')
    .option('--ui-port <n>', 'dev server Web UI port', '8233')
    .action(async (o) => {
      process.exitCode = await runDemo({ dir: o.dir, runName: o.runName, keepServer: Boolean(o.keepServer), port: Number(o.port), uiPort: Number(o.uiPort) });
    });

  program
    .command('config-reference')
    .description('print the run config reference (Markdown), generated from the schema')
    .action(() => console.log(configReference()));

  program
    .command('steps')
    .description('print the step table')
    .action(() => STEPS.forEach((s) => console.log(`${s.number.padEnd(3)} ${s.id.padEnd(9)} ${s.activity.padEnd(16)} ${s.queue}  needs: ${s.needs.join(', ') || '-'}`)));

  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err) => {
      const message = err instanceof Error ? err.message : String(err);
      console.error(`wmss: ${message}`);
      if (/ECONNREFUSED|connect|UNAVAILABLE/i.test(message)) console.error(`no Temporal server at ${temporalTarget().address}? start one with \`wmss server\` or set TEMPORAL_ADDRESS`);
      process.exit(err instanceof ConfigFileError ? 2 : 1);
    });
}
