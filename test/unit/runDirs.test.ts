/**
 * A run dir that is a symlink (scratch space linked into a home dir; issue 21, defect 3): it is
 * resolved to its real path at the start of every step activity, so the real paths the kernels
 * report compare equal to it, while a symlink inside it that leads out is still refused.
 */
import { existsSync, mkdirSync, promises as fsp, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { resolveRun, withResolvedPaths } from '../../activities/runPaths';
import { runStep, type StepSpec } from '../../activities/store/artifactStore';
import { manifestFile } from '../../activities/store/manifest';
import { realRunDir } from '../../activities/store/runDirPaths';
import { ErrorTypes } from '../../pipeline/errors';
import type { StepInput } from '../../pipeline/steps';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

/** `<home>/run` → `<scratch>/run`, as on a cluster. */
function linkedRunDir(): { link: string; real: string } {
  const scratch = realpathSync(tmpDir('wmss-scratch-'));
  const home = tmpDir('wmss-home-');
  const real = path.join(scratch, 'run');
  mkdirSync(real);
  const link = path.join(home, 'run');
  symlinkSync(real, link);
  return { link, real };
}

/** A training step as the SFT kernel behaves: it reports its checkpoint by its resolved (real) path. */
const trainingStep = (escape?: string): StepSpec => ({
  cacheKey: { v: 1 },
  outputs: { dir: 'stage1_m1' },
  mode: 'in-place',
  produce: async ({ paths }) => {
    const ckpt = path.join(escape ?? paths.dir, 'checkpoint-4');
    await fsp.mkdir(ckpt, { recursive: true });
    await fsp.writeFile(path.join(ckpt, 'COMPLETE'), '');
    return { outputs: { checkpoint: realpathSync(ckpt) } };
  },
});

describe('realRunDir / resolveRun', () => {
  it('resolve a linked run dir, or its nearest existing ancestor, to the real path', () => {
    const { link, real } = linkedRunDir();
    expect(realRunDir(link)).toBe(real);
    expect(realRunDir(path.join(link, 'not-yet', 'deeper'))).toBe(path.join(real, 'not-yet', 'deeper'));
    expect(resolveRun({ runDir: link, baseModel: path.join(link, 'base'), dataFile: 'data.jsonl' })).toEqual({
      runDir: real,
      // inputs keep the spelling of the config: errors name them as the user wrote them
      baseModel: path.join(link, 'base'),
      dataFile: path.resolve('data.jsonl'),
    });
  });
});

describe('a step in a run dir that is a symlink', () => {
  const step = (spec: StepSpec) => withResolvedPaths({ run: (input: StepInput) => runStep(input, spec) }).run;

  it('publishes the checkpoint the kernel reports by its real path, with a manifest', async () => {
    const { link, real } = linkedRunDir();
    const result = await step(trainingStep())(stepInput('sft', link));
    expect(result.outputs).toEqual({ dir: 'stage1_m1', checkpoint: 'stage1_m1/checkpoint-4' });
    expect(existsSync(manifestFile(link, 'sft'))).toBe(true);
    expect(JSON.parse(readFileSync(manifestFile(real, 'sft'), 'utf8')).outputs.checkpoint.path).toBe(
      'stage1_m1/checkpoint-4',
    );
    // the same run through the link again: a verified cache hit
    expect((await step(trainingStep())(stepInput('sft', link))).cached).toBe(true);
  });

  it('still refuses a symlink inside it that leads out, and an output reported outside it', async () => {
    const { link } = linkedRunDir();
    const outside = tmpDir('wmss-outside-');
    symlinkSync(outside, path.join(link, 'stage1_m1'));
    const f = await failureOf(step(trainingStep())(stepInput('sft', link)));
    expect(f.type).toBe(ErrorTypes.ArtifactConflict);
    expect(f.message).toMatch(/symlink .* outside the run dir/);

    const { link: other } = linkedRunDir();
    const g = await failureOf(step(trainingStep(tmpDir('wmss-elsewhere-')))(stepInput('sft', other)));
    expect(g.type).toBe(ErrorTypes.ArtifactConflict);
    expect(existsSync(manifestFile(other, 'sft'))).toBe(false);
  });
});
