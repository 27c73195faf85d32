/** Config refusals of issue 17: model ids, the tracking section. Resolution itself: kernels/tests/test_hub.py. */
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { absolutize } from '../../client/runConfigFile';
import { trackingLines } from '../../client/commands/status';
import { tensorboardPlan } from '../../client/commands/tensorboard';
import { formatConfigIssues, RunConfig } from '../../pipeline/config';
import { looksLikeModelId, parseModelId } from '../../pipeline/modelRef';
import { trackingJob } from '../../pipeline/trackingConfig';
import { needsSetup } from '../../workflows/prepareRun';

const minimal = { runName: 'r1', runDir: '/runs/r1', baseModel: '/models/base', dataFile: '/data/train.jsonl' };
const issues = (input: unknown) => {
  const parsed = RunConfig.safeParse(input);
  return parsed.success ? '' : formatConfigIssues(parsed.error);
};

test('ids and directories are told apart without touching the disk', () => {
  expect(parseModelId('Qwen/Qwen3-8B-Base')).toEqual({ repo: 'Qwen/Qwen3-8B-Base', revision: 'main' });
  expect(parseModelId('Qwen/Qwen3-8B-Base@v1.0')).toEqual({ repo: 'Qwen/Qwen3-8B-Base', revision: 'v1.0' });
  expect(parseModelId('org/name@0123456789abcdef0123456789abcdef01234567')?.revision).toHaveLength(40);
  for (const dir of ['/models/base', './org/name', '../org/name', '~/m', 'runs/demo/assets/tiny-qwen3', 'tiny'])
    expect(looksLikeModelId(dir)).toBe(false);
});

test.each(['org//name', 'org/na me', 'org/name@', 'org/name@has space', '-org/name', 'org/..x', 'a/b@c@d'])(
  'a malformed id %j is refused naming baseModel',
  (baseModel) => {
    expect(issues({ ...minimal, baseModel })).toMatch(/^baseModel: .*neither a Hugging Face model id/);
  },
);

test('a well-formed id and a directory are accepted; only the id needs a set-up', () => {
  const byId = RunConfig.parse({ ...minimal, baseModel: 'wmss-demo/tiny-qwen3@main' });
  expect(needsSetup(byId)).toEqual({ baseModel: 'wmss-demo/tiny-qwen3@main' });
  expect(needsSetup(RunConfig.parse(minimal))).toBeUndefined();
  expect(
    needsSetup(RunConfig.parse({ ...minimal, tracking: { mlflow: { trackingUri: 'file:/tmp/mlruns' } } })),
  ).toEqual({});
});

test('tracking: TensorBoard by default, unknown tracker keys refused', () => {
  expect(RunConfig.parse(minimal).tracking).toEqual({ tensorboard: true });
  expect(issues({ ...minimal, tracking: { neptune: {} } })).toMatch(/^tracking: Unrecognized key: "neptune"/);
  expect(issues({ ...minimal, tracking: { mlflow: { trackingUri: 'file:/x', run: 'y' } } })).toMatch(
    /^tracking.mlflow: Unrecognized key: "run"/,
  );
  expect(issues({ ...minimal, tracking: { wandb: { project: 'p', mode: 'disabled' } } })).toMatch(
    /^tracking.wandb.mode: /,
  );
  expect(issues({ ...minimal, tracking: { mlflow: {} } })).toMatch(/^tracking.mlflow.trackingUri: /);
});

test("a kernel's tracking field: its step's TensorBoard dir, a shard apart, the run files in the run dir", () => {
  const tracking = RunConfig.parse({
    ...minimal,
    tracking: { mlflow: { trackingUri: 'http://mlflow:5000' }, wandb: { project: 'p', mode: 'offline' } },
  }).tracking;
  const job = trackingJob(tracking, '/runs/r1/', 'r1', 'entropy0', 'shard-1-of-2');
  expect(job.tensorboard_dir).toBe('/runs/r1/tensorboard/entropy0/shard-1-of-2');
  expect(trackingJob(tracking, '/runs/r1', 'r1', 'evaluate', 'merge').tensorboard_dir).toBe(
    '/runs/r1/tensorboard/evaluate',
  );
  expect(job.mlflow).toEqual({
    tracking_uri: 'http://mlflow:5000',
    experiment: 'wmss',
    run_file: '/runs/r1/tracking/mlflow.json',
  });
  expect(job.wandb).toMatchObject({
    mode: 'offline',
    run_file: '/runs/r1/tracking/wandb.json',
    dir: '/runs/r1/tracking',
  });
  expect(trackingJob({ tensorboard: false }, '/r', 'r', 'sft')).toMatchObject({ tensorboard_dir: null, mlflow: null });
});

test('`wmss start` keeps an id, unless a directory of that name exists where it runs', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-ids-'));
  const parsed = RunConfig.parse({ ...minimal, baseModel: 'org/name' });
  expect(absolutize(parsed, dir).baseModel).toBe('org/name');
  mkdirSync(path.join(dir, 'org', 'name'), { recursive: true });
  expect(absolutize(parsed, dir).baseModel).toBe(path.join(dir, 'org', 'name'));
  expect(absolutize(RunConfig.parse({ ...minimal, baseModel: 'm/a/b' }), dir).baseModel).toBe(path.join(dir, 'm/a/b'));
});

test('`wmss status` prints each tracker URL under the run dir; `wmss tensorboard` its log dir', () => {
  expect(trackingLines({ mlflow: 'http://mlflow:5000/#/experiments/1/runs/r', wandb: null })).toBe(
    '\nmlflow http://mlflow:5000/#/experiments/1/runs/r\nwandb (no URL)',
  );
  expect(trackingLines(undefined)).toBe('');
  const plan = tensorboardPlan('/runs/my run', 6007);
  expect(plan.logdir).toBe('/runs/my run/tensorboard');
  expect(plan.command).toMatch(/ --logdir '\/runs\/my run\/tensorboard' --port 6007 --bind_all$/);
});
