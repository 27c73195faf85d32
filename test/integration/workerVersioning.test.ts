/**
 * Worker Versioning on a real dev server: workers of version v1 (control + GPU, Worker Deployment
 * "wmss-it"), a run started on v1, then workers of v2 and v2 made current while the first run is
 * still going. The first run must finish on v1 workers only (pinned), and a run started after the
 * roll-out runs on v2 workers only. The first run has alerts on, so its history exercises them. WMSS_RECORD_HISTORY=1 also saves the v1 run's history as a
 * replay fixture (test/fixtures/histories/versioned-v1.json).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { NotifyConfig } from '../../pipeline/notify';
import { temporalCli } from '../../client/devServer';
import { createControlWorker, createGpuWorkers } from '../../workers/createWorkers';
import { freePort, runCommand, startHarness, tinyRunConfig, until, type Harness } from '../../testkit/harness';
import { tinyOverrides } from '../../testkit/tinyRuns';

jest.setTimeout(900_000);

const DEPLOYMENT = 'wmss-it';
let h: Harness;
const running: { workers: Worker[]; done: Promise<void>[] }[] = [];

/** A control and a GPU worker of one version; every task they take names the version in its identity. */
async function startVersion(buildId: string): Promise<void> {
  const version = { deploymentName: DEPLOYMENT, buildId };
  const identity = (kind: string) => ({ identity: `${kind}-${buildId}` });
  const workers = [
    await createControlWorker({ connection: h.connection, version }, identity('control')),
    ...(await createGpuWorkers(
      { connection: h.connection, devices: { kind: 'cpu' }, threads: 1, version },
      identity('gpu'),
    )),
  ];
  running.push({ workers, done: workers.map((w) => w.run()) });
}

/** `temporal worker deployment set-current-version`, as an operator runs it (the version must have polled first). */
async function setCurrentVersion(buildId: string): Promise<void> {
  const args = ['worker', 'deployment', 'set-current-version', '--deployment-name', DEPLOYMENT, '--build-id', buildId];
  await until(
    `version ${buildId} to become current`,
    async () => {
      const out = await runCommand(temporalCli(), [...args, '--address', h.server.address, '--yes']);
      return out.code === 0;
    },
    60_000,
  );
}

type HistoryEvent = {
  activityTaskStartedEventAttributes?: { identity?: string };
  workflowTaskCompletedEventAttributes?: { identity?: string };
};

/** The identities of the workers that ran the workflow tasks and the activities of a run. */
async function identitiesOf(workflowId: string): Promise<Set<string>> {
  const history = await h.client.workflow.getHandle(workflowId).fetchHistory();
  const events = (history.events ?? []) as HistoryEvent[];
  return new Set(
    events
      .map((e) => e.activityTaskStartedEventAttributes?.identity ?? e.workflowTaskCompletedEventAttributes?.identity)
      .filter((id): id is string => Boolean(id)),
  );
}

beforeAll(async () => {
  h = await startHarness({ workers: false });
  await startVersion('v1');
  await setCurrentVersion('v1');
}, 300_000);

afterAll(async () => {
  for (const set of running) set.workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
  await Promise.allSettled(running.flatMap((s) => s.done));
  await h?.stop();
});

test('a run started on v1 finishes on v1 workers while v2 serves the runs started after the roll-out', async () => {
  // with alerts (to a port nobody listens on): the recorded history then has the stall watcher's
  // timers and checks and the alert's child workflow for the replay test to cover
  const notify = NotifyConfig.parse({
    webhook: `http://127.0.0.1:${await freePort()}/alerts`,
    on: ['stalled', 'completed'],
    stalledAfterSeconds: 10,
  });
  const first = { ...tinyRunConfig(h.assets, path.join(h.dir, 'run-v1'), 'it-v1', tinyOverrides), notify };
  const a = await startPipeline(h.client, first);
  // the run is under way on v1 before v2 exists
  await until('the v1 run to start a step', async () => (await identitiesOf(a.workflowId)).has('gpu-v1'), 120_000);
  const described = await a.describe();
  expect(described.raw.workflowExecutionInfo?.versioningInfo?.behavior).toBeTruthy();

  await startVersion('v2');
  await setCurrentVersion('v2');
  expect((await a.describe()).status.name).toBe('RUNNING');
  const second = tinyRunConfig(h.assets, path.join(h.dir, 'run-v2'), 'it-v2', tinyOverrides);
  const b = await startPipeline(h.client, second);

  const [ra, rb] = (await Promise.all([a.result(), b.result()])) as PipelineResult[];
  expect(Object.keys(ra.steps).length).toBeGreaterThan(5);
  expect(Object.keys(rb.steps).length).toBeGreaterThan(5);

  const onV1 = await identitiesOf(a.workflowId);
  const onV2 = await identitiesOf(b.workflowId);
  expect([...onV1].sort()).toEqual(['control-v1', 'gpu-v1']);
  expect([...onV2].sort()).toEqual(['control-v2', 'gpu-v2']);

  // the server records the pin: run A stays on v1, run B on v2
  const infoA = (await a.describe()).raw.workflowExecutionInfo?.versioningInfo;
  const infoB = (await b.describe()).raw.workflowExecutionInfo?.versioningInfo;
  expect(String(infoA?.behavior)).toMatch(/1|PINNED/);
  expect(infoA?.deploymentVersion?.buildId).toBe('v1');
  expect(infoB?.deploymentVersion?.buildId).toBe('v2');

  // its alerts (child workflows) outlive it: still retrying the dead endpoint, none cancelled with the run's end
  const children = ((await a.fetchHistory()).events ?? []).flatMap((e) => {
    const id = e.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.workflowId;
    return id ? [id] : [];
  });
  expect(children.some((id) => id.includes('.alert-') && id.includes('-completed-'))).toBe(true);
  for (const id of children) expect((await h.client.workflow.getHandle(id).describe()).status.name).toBe('RUNNING');

  if (process.env.WMSS_RECORD_HISTORY === '1') {
    const out = await runCommand(temporalCli(), [
      'workflow',
      'show',
      '--workflow-id',
      a.workflowId,
      '--output',
      'json',
      '--address',
      h.server.address,
    ]);
    expect(out.code).toBe(0);
    writeFileSync(path.join(__dirname, '..', 'fixtures', 'histories', 'versioned-v1.json'), out.stdout);
  }
});
