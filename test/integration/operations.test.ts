/**
 * Operating a run (docs/operating.md): the workers' Prometheus endpoint scraped during a real run
 * has our series with the run's labels; alerts reach a webhook on loopback for a completed, a
 * failed and a stalled run, with the token from the worker's environment; a webhook nobody
 * answers does not fail the run.
 */
import path from 'node:path';
import type { PipelineResult } from '../../pipeline/workflowApi';
import type { RunConfig } from '../../pipeline/config';
import { startPipeline } from '../../client/commands/start';
import { REPO_ROOT } from '../../activities/repoPaths';
import { freePort, startHarness, tinyRunConfig, until, type Harness } from '../../testkit/harness';
import { tinyOverrides } from '../../testkit/tinyRuns';
import { metricSamples } from '../../testkit/prometheusText';
import { startWebhookSink, type Received, type WebhookSink } from '../../testkit/webhookSink';

jest.setTimeout(900_000);

const TOKEN = 'tok-ops-test-7f3a';
let h: Harness;
let sink: WebhookSink;
let metricsPort: number;
let runDir: string;

beforeAll(async () => {
  process.env.WMSS_NOTIFY_TOKEN = TOKEN; // the worker's environment: this process
  metricsPort = await freePort();
  h = await startHarness({ metricsPort });
  sink = await startWebhookSink();
  runDir = path.join(h.dir, 'run');
}, 300_000);

afterAll(async () => {
  await h?.stop();
  await sink?.close();
});

const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
const ofRun = (text: string, name: string, workflowId: string) =>
  metricSamples(text, name).filter((s) => s.labels.run_id === workflowId);
const alertAt = (pathName: string) =>
  until(`an alert at ${pathName}`, async () => sink.received.find((r) => r.path === pathName));

function config(runName: string, notify: RunConfig['notify'], extra: Partial<RunConfig> = {}): RunConfig {
  return { ...tinyRunConfig(h.assets, runDir, runName, tinyOverrides), notify, ...extra };
}

test('metrics scraped during a run carry its run id and steps; the completed alert reaches the webhook', async () => {
  const notify = { webhook: sink.url('/done'), on: ['failed', 'completed'] as const, format: 'json' as const };
  const run = await startPipeline(
    h.client,
    config('it-ops', { ...notify, on: [...notify.on], tokenEnv: 'WMSS_NOTIFY_TOKEN', stalledAfterSeconds: 1800 }),
  );
  // during the run: a step is running here, and training reports loss and throughput
  const during = await until(
    'the training series of the running SFT',
    async () => {
      const text = await scrape();
      const loss = ofRun(text, 'wmss_training_loss', run.workflowId).filter((s) => s.labels.step === 'sft');
      return loss.length > 0 && ofRun(text, 'wmss_step_running', run.workflowId).some((s) => s.value === 1) && text;
    },
    300_000,
  );
  expect(ofRun(during, 'wmss_kernel_tokens_per_second', run.workflowId).length).toBeGreaterThan(0);
  const result = (await run.result()) as PipelineResult;

  const after = await scrape();
  const durations = ofRun(after, 'wmss_step_duration_seconds_count', run.workflowId);
  expect(new Set(durations.map((s) => s.labels.step))).toEqual(new Set(Object.keys(result.steps)));
  expect(durations.every((s) => s.labels.outcome === 'completed')).toBe(true);
  expect(ofRun(after, 'wmss_step_queue_wait_seconds_count', run.workflowId).length).toBe(durations.length);
  // buckets up to a week (workers/telemetry.ts), not the exporter's defaults
  const buckets = ofRun(after, 'wmss_step_duration_seconds_bucket', run.workflowId).map((s) => s.labels.le);
  expect(buckets).toContain('604800');
  // the SDK's own series come out of the same endpoint
  expect(metricSamples(after, 'temporal_activity_execution_latency_count').length).toBeGreaterThan(0);

  const alert: Received = await alertAt('/done');
  expect(alert.body).toMatchObject({ event: 'completed', runName: 'it-ops', workflowId: run.workflowId, runDir });
  expect(String(alert.body.webUi)).toContain(`/workflows/${run.workflowId}/`);
  expect(alert.authorization).toBe(`Bearer ${TOKEN}`);
  // the token came from the worker's environment: nowhere in the run's history
  const history = JSON.stringify(await run.fetchHistory());
  expect(history).not.toContain(TOKEN);
});

test('a failed run posts its step, failure type and message, in the Slack format too', async () => {
  const bad = path.join(REPO_ROOT, 'test', 'fixtures', 'bad', 'data', 'invalid-json.jsonl');
  const notify = {
    webhook: sink.url('/failed'),
    on: ['failed' as const],
    format: 'slack' as const,
    tokenEnv: 'WMSS_NOTIFY_TOKEN',
    stalledAfterSeconds: 1800,
  };
  const run = await startPipeline(
    h.client,
    config('it-ops-bad', notify, { dataFile: bad, runDir: path.join(h.dir, 'bad') }),
  );
  await expect(run.result()).rejects.toThrow();
  const alert = await alertAt('/failed');
  expect(String(alert.body.text)).toMatch(
    /wmss run it-ops-bad failed at step \S+ \(.+\) \[InvalidInput\]: .*invalid-json\.jsonl/,
  );
  expect(String(alert.body.text)).toContain(run.workflowId);
  const failures = ofRun(await scrape(), 'wmss_step_attempt_failures_total', run.workflowId);
  expect(failures.some((s) => s.labels.failure_type === 'InvalidInput' && s.labels.retryable === 'false')).toBe(true);
});

test('a step that no worker takes is reported as stalled', async () => {
  // GPU steps go to a pool no worker serves: they stay scheduled, with no progress
  const notify = {
    webhook: sink.url('/stalled'),
    on: ['stalled' as const],
    format: 'json' as const,
    tokenEnv: 'WMSS_NOTIFY_TOKEN',
    stalledAfterSeconds: 5,
  };
  const base = config('it-ops-stall', notify, { runDir: path.join(h.dir, 'stall') });
  const run = await startPipeline(h.client, { ...base, placement: { ...base.placement, gpuPool: 'nobody' } });
  const alert = await alertAt('/stalled');
  expect(alert.body).toMatchObject({ event: 'stalled', runName: 'it-ops-stall' });
  expect(['entropy0', 'sft']).toContain((alert.body.step as { id: string }).id);
  expect(String(alert.body.message)).toMatch(/no progress since/);
  await run.cancel();
  await expect(run.result()).rejects.toThrow();
});

test('a webhook that nobody answers does not fail the run; its alert keeps being retried', async () => {
  const dead = `http://127.0.0.1:${await freePort()}/nobody`;
  const notify = {
    webhook: dead,
    on: ['completed' as const],
    format: 'json' as const,
    tokenEnv: 'WMSS_NOTIFY_TOKEN',
    stalledAfterSeconds: 1800,
  };
  // the first test's run dir: every step is a cache hit, so the run ends in seconds
  const run = await startPipeline(h.client, config('it-ops-dead', notify));
  const result = (await run.result()) as PipelineResult;
  expect(Object.values(result.steps).every((s) => s?.cached)).toBe(true);
  const delivery = h.client.workflow.getHandle(`${run.workflowId}.alert-1-completed-${run.firstExecutionRunId}`);
  const pending = await until(
    'a failed delivery attempt',
    async () => {
      const d = await delivery.describe();
      const p = d.raw.pendingActivities?.[0];
      return p && (p.attempt ?? 0) >= 2 && p;
    },
    60_000,
  );
  expect(pending.lastFailure?.message).toMatch(/cannot reach/);
  expect((await delivery.describe()).status.name).toBe('RUNNING');
  await delivery.terminate('test over');
});
