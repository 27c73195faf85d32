/**
 * The whole tiny pipeline with a run dir that is a symlink to a dir elsewhere (scratch space linked
 * into a home dir; issue 21, defect 3), and the data file and base model reached through symlinks
 * too: every step completes with its manifest. Before the fix SFT trained to the end and then
 * failed ArtifactConflict, since the kernel reports its checkpoint by the real path.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(600_000);

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

test('steps 0–7 in a symlinked run dir, with symlinked data file and base model, complete with manifests', async () => {
  const scratch = path.join(h.dir, 'scratch');
  const home = path.join(h.dir, 'home');
  mkdirSync(path.join(scratch, 'run'), { recursive: true });
  mkdirSync(home);
  const runDir = path.join(home, 'run');
  symlinkSync(path.join(scratch, 'run'), runDir);
  symlinkSync(path.join(h.assets, 'tiny-qwen3'), path.join(home, 'model'));
  symlinkSync(path.join(h.assets, 'data', 'train.jsonl'), path.join(home, 'train.jsonl'));

  const base = tinyRunConfig(h.assets, runDir, 'symlinked', {
    baseModel: path.join(home, 'model'),
    dataFile: path.join(home, 'train.jsonl'),
  });
  const config = RunConfig.parse({ ...base, eval: { ...base.eval, baselines: false } });
  const result = (await (await startPipeline(h.client, config)).result()) as PipelineResult;

  const steps = Object.keys(result.steps);
  expect(steps.sort()).toEqual([
    'entropy0',
    'entropy1',
    'evaluate',
    'extract',
    'fuse',
    'joint',
    'merge',
    'sft',
    'snapshot',
  ]);
  for (const step of steps)
    expect({ step, manifest: existsSync(path.join(runDir, A.manifestPath(step as never))) }).toEqual({
      step,
      manifest: true,
    });
  // the checkpoints are recorded relative to the run dir, whichever spelling of it
  expect(result.steps.sft.outputs.checkpoint).toMatch(/^stage1_m1\/checkpoint-\d+$/);
  expect(realpathSync(path.join(runDir, result.steps.sft.outputs.checkpoint))).toBe(
    realpathSync(path.join(scratch, 'run', result.steps.sft.outputs.checkpoint)),
  );
  const manifest = JSON.parse(readFileSync(path.join(runDir, A.manifestPath('sft')), 'utf8')) as {
    outputs: Record<string, { path: string }>;
  };
  expect(manifest.outputs.checkpoint.path).toBe(result.steps.sft.outputs.checkpoint);
  expect(Object.keys(result.accuracy)).toEqual(['wmss']);
});
