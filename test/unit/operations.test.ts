/**
 * The pure parts of operating a run: the alert config and payloads (pipeline/notify.ts), the step
 * metrics' bookkeeping (activities/stepMetrics.ts), the worker flags of metrics and versioning.
 */
import { ApplicationFailure, CancelledFailure, type MetricTags } from '@temporalio/common';
import { alertBody, NotifyConfig, type Alert } from '../../pipeline/notify';
import { checkRunConfig, parseRunConfig } from '../../pipeline/config';
import { failureLabels, recordProgress } from '../../activities/stepMetrics';
import { metricsTelemetry, parseMetricsPort } from '../../workers/telemetry';
import { deploymentVersion } from '../../workers/workerCommand';

const alert: Alert = {
  event: 'failed',
  runName: 'r1',
  runDir: '/data/r1',
  workflowId: 'wmss-r1',
  runId: 'abc',
  step: { id: 'sft', number: '1', title: 'Stage-1 SFT' },
  failureType: 'KernelOutOfMemory',
  message: 'CUDA out of memory',
  at: '2026-12-01T00:00:00.000Z',
};

describe('notify', () => {
  const base = { runName: 'r', runDir: '/r', baseModel: '/m', dataFile: '/d.jsonl' };

  test('defaults: failed and stalled, json, token from WMSS_NOTIFY_TOKEN, stalled after 30 min', () => {
    expect(NotifyConfig.parse({ webhook: 'https://hooks.example.com/x' })).toEqual({
      webhook: 'https://hooks.example.com/x',
      on: ['failed', 'stalled'],
      format: 'json',
      tokenEnv: 'WMSS_NOTIFY_TOKEN',
      stalledAfterSeconds: 1800,
    });
    // absent: no alerts, and no key at all in the parsed config (histories stay as they were)
    expect('notify' in parseRunConfig(base)).toBe(false);
  });

  test.each([
    [{ webhook: 'ftp://x/y' }, /notify\.webhook/],
    [{ webhook: 'https://x/y', on: ['exploded'] }, /notify\.on/],
    [{ webhook: 'https://x/y', format: 'xml' }, /notify\.format/],
    [{ webhook: 'https://x/y', tokenEnv: 'not a var' }, /notify\.tokenEnv/],
    [{ webhook: 'https://x/y', token: 'secret' }, /token/],
  ])('a bad notify section is refused by key: %j', (notify, key) => {
    expect(() => checkRunConfig({ ...base, notify })).toThrow(key);
  });

  test('json carries every field and the Web UI link; slack one line of text with the link', () => {
    expect(alertBody(alert, 'json', 'http://ui/wf')).toEqual({ ...alert, webUi: 'http://ui/wf' });
    expect(alertBody(alert, 'slack', 'http://ui/wf')).toEqual({
      text: 'wmss run r1 failed at step 1 (Stage-1 SFT) [KernelOutOfMemory]: CUDA out of memory <http://ui/wf|Web UI>',
    });
  });
});

describe('step metrics', () => {
  test('failure labels: typed, non-retryable by type or flag, cancellation apart', () => {
    expect(failureLabels(ApplicationFailure.create({ type: 'KernelOutOfMemory', message: 'x' }))).toEqual({
      failure_type: 'KernelOutOfMemory',
      retryable: 'true',
    });
    expect(failureLabels(ApplicationFailure.create({ type: 'InvalidInput', message: 'x' })).retryable).toBe('false');
    expect(failureLabels(ApplicationFailure.create({ type: 'X', message: 'x', nonRetryable: true })).retryable).toBe(
      'false',
    );
    expect(failureLabels(new CancelledFailure('stop'))).toEqual({ failure_type: 'Cancelled', retryable: 'false' });
    expect(failureLabels(new TypeError('boom'))).toEqual({ failure_type: 'TypeError', retryable: 'true' });
  });

  test('a heartbeat sets loss, tokens/s and progress; other details set nothing', () => {
    const set: Record<string, [number, MetricTags][]> = {};
    const gauge = (name: string) => ({ set: (v: number, t: MetricTags) => (set[name] ??= []).push([v, t]) });
    const s = {
      tokensPerS: gauge('tps'),
      loss: gauge('loss'),
      progress: gauge('progress'),
    } as unknown as Parameters<typeof recordProgress>[0];
    const tags = { run_id: 'wmss-r1', step: 'sft' };
    recordProgress(s, tags, { done: 3, total: 6, unit: 'steps', loss: 2.5, tokensPerS: 812.5, updatedAt: 'x' });
    recordProgress(s, tags, { done: 0, total: 0, unit: 'samples', phase: 'waiting', updatedAt: 'x' });
    recordProgress(s, tags, 'not an object');
    expect(set).toEqual({ tps: [[812.5, tags]], loss: [[2.5, tags]], progress: [[0.5, tags]] });
  });
});

describe('worker flags', () => {
  test('--metrics-port: a port, else an error naming the flag; prometheus on all interfaces by default', () => {
    expect(parseMetricsPort('9464')).toBe(9464);
    for (const bad of ['0', '70000', '94a', '-1']) expect(() => parseMetricsPort(bad)).toThrow(/--metrics-port/);
    expect(metricsTelemetry(undefined)).toBeUndefined();
    expect(metricsTelemetry({ port: 9464 })?.metrics).toMatchObject({ prometheus: { bindAddress: '0.0.0.0:9464' } });
  });

  test('--build-id / --deployment, from flags or the environment; none: unversioned', () => {
    expect(deploymentVersion(undefined, undefined, {})).toBeUndefined();
    expect(deploymentVersion(undefined, 'v2', {})).toEqual({ deploymentName: 'wmss', buildId: 'v2' });
    expect(deploymentVersion(undefined, undefined, { WMSS_BUILD_ID: 'v3', WMSS_DEPLOYMENT: 'lab' })).toEqual({
      deploymentName: 'lab',
      buildId: 'v3',
    });
    expect(() => deploymentVersion('lab', undefined, {})).toThrow(/--deployment needs --build-id/);
    expect(() => deploymentVersion(undefined, 'v 2', {})).toThrow(/--build-id must be/);
  });
});
