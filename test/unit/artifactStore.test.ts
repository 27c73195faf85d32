import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readManifest, runStep, type StepSpec } from '../../activities/store/artifactStore';
import { ErrorTypes } from '../../pipeline/errors';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

function spec(overrides: Partial<StepSpec> & { calls?: { n: number } } = {}): StepSpec {
  const calls = overrides.calls ?? { n: 0 };
  return {
    cacheKey: { v: 1 },
    outputs: { out: 'entropy/out.txt', dir: 'model' },
    mode: 'atomic',
    produce: async ({ paths }) => {
      calls.n++;
      await fsp.writeFile(paths.out, 'hello\n');
      await fsp.mkdir(path.join(paths.dir, 'sub'), { recursive: true });
      await fsp.writeFile(path.join(paths.dir, 'a.bin'), Buffer.alloc(1000, 1));
      await fsp.writeFile(path.join(paths.dir, 'sub', 'b.json'), '{}');
      return { metrics: { rows: 3 } };
    },
    ...overrides,
  };
}

describe('runStep', () => {
  it('publishes atomically and writes a manifest with sizes and digests', async () => {
    const runDir = tmpDir();
    const result = await runStep(stepInput('merge', runDir), spec());
    expect(result).toMatchObject({
      stepId: 'merge',
      cached: false,
      outputs: { out: 'entropy/out.txt', dir: 'model' },
      metrics: { rows: 3 },
    });
    expect(readFileSync(path.join(runDir, 'entropy/out.txt'), 'utf8')).toBe('hello\n');
    expect(readdirSync(path.join(runDir, 'entropy'))).toEqual(['out.txt']);
    const manifest = await readManifest(runDir, 'merge');
    expect(manifest?.cacheKey).toBe(result.cacheKey);
    expect(manifest?.outputs.out).toMatchObject({
      kind: 'file',
      size: 6,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(manifest?.outputs.dir.files?.map((f) => f.path)).toEqual(['a.bin', 'sub/b.json']);
    expect(manifest?.wmssFlowVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('is a cache hit when key and outputs match, without running produce', async () => {
    const runDir = tmpDir();
    const calls = { n: 0 };
    const first = await runStep(stepInput('merge', runDir), spec({ calls }));
    const second = await runStep(stepInput('merge', runDir), spec({ calls }));
    expect(calls.n).toBe(1);
    expect(second).toMatchObject({ cached: true, cacheKey: first.cacheKey, metrics: { rows: 3 } });
    const full = await runStep(stepInput('merge', runDir), spec({ calls, verify: 'full' }));
    expect(full.cached).toBe(true);
  });

  it('re-runs when the key changes or an output changed', async () => {
    const runDir = tmpDir();
    const calls = { n: 0 };
    await runStep(stepInput('merge', runDir), spec({ calls }));
    await runStep(stepInput('merge', runDir), spec({ calls, cacheKey: { v: 2 } }));
    expect(calls.n).toBe(2);
    await fsp.appendFile(path.join(runDir, 'model/a.bin'), 'x');
    expect((await runStep(stepInput('merge', runDir), spec({ calls, cacheKey: { v: 2 } }))).cached).toBe(false);
    expect(calls.n).toBe(3);
    // same size, other bytes: only 'full' verification notices
    await fsp.writeFile(path.join(runDir, 'entropy/out.txt'), 'HELLO\n');
    expect((await runStep(stepInput('merge', runDir), spec({ calls, cacheKey: { v: 2 } }))).cached).toBe(true);
    expect(
      (await runStep(stepInput('merge', runDir), spec({ calls, cacheKey: { v: 2 }, verify: 'full' }))).cached,
    ).toBe(false);
    expect(readFileSync(path.join(runDir, 'entropy/out.txt'), 'utf8')).toBe('hello\n');
  });

  it('a dependency with new outputs changes the key', async () => {
    const runDir = tmpDir();
    const dep = await runStep(stepInput('entropy0', runDir), spec({ outputs: { out: 'entropy/e0.txt', dir: 'm' } }));
    const a = await runStep(stepInput('merge', runDir, {}, { entropy0: dep }), spec());
    await fsp.rm(path.join(runDir, 'entropy/e0.txt'));
    const dep2 = await runStep(
      stepInput('entropy0', runDir),
      spec({
        outputs: { out: 'entropy/e0.txt', dir: 'm' },
        produce: async ({ paths }) => {
          await fsp.writeFile(paths.out, 'other');
          await fsp.mkdir(paths.dir);
          return {};
        },
      }),
    );
    expect(dep2.cacheKey).toBe(dep.cacheKey);
    const b = await runStep(stepInput('merge', runDir, {}, { entropy0: dep2 }), spec());
    expect(b.cached).toBe(false);
    expect(b.cacheKey).not.toBe(a.cacheKey);
  });

  it('a crash in produce leaves no visible output, no staging and no manifest', async () => {
    const runDir = tmpDir();
    const err = await failureOf(
      runStep(
        stepInput('merge', runDir),
        spec({
          produce: async ({ paths }) => {
            await fsp.writeFile(paths.out, 'half');
            await fsp.mkdir(paths.dir);
            throw new Error('boom');
          },
        }),
      ),
    );
    expect(err.message).toBe('boom');
    expect(readdirSync(path.join(runDir, 'entropy'))).toEqual([]);
    expect(existsSync(path.join(runDir, 'model'))).toBe(false);
    expect(await readManifest(runDir, 'merge')).toBeUndefined();
  });

  it('a failed re-run keeps the old outputs but drops the old manifest; stale staging is removed at the next start', async () => {
    const runDir = tmpDir();
    await runStep(stepInput('merge', runDir), spec());
    await fsp.writeFile(path.join(runDir, 'entropy/out.txt.partial-deadbeef'), 'stale');
    await failureOf(
      runStep(
        stepInput('merge', runDir),
        spec({
          cacheKey: { v: 9 },
          produce: async () => {
            throw new Error('boom');
          },
        }),
      ),
    );
    expect(readFileSync(path.join(runDir, 'entropy/out.txt'), 'utf8')).toBe('hello\n');
    expect(readdirSync(path.join(runDir, 'entropy'))).toEqual(['out.txt']);
    expect(await readManifest(runDir, 'merge')).toBeUndefined();
  });

  it('replaces an existing output directory only through staging', async () => {
    const runDir = tmpDir();
    await runStep(stepInput('merge', runDir), spec());
    await runStep(
      stepInput('merge', runDir),
      spec({
        cacheKey: { v: 2 },
        produce: async ({ paths }) => {
          expect(existsSync(path.join(runDir, 'model/a.bin'))).toBe(true); // the old output stays visible while producing
          await fsp.writeFile(paths.out, 'new\n');
          await fsp.mkdir(paths.dir);
          await fsp.writeFile(path.join(paths.dir, 'c.bin'), 'c');
          return {};
        },
      }),
    );
    expect(readdirSync(path.join(runDir, 'model'))).toEqual(['c.bin']);
    expect(readdirSync(runDir).sort()).toEqual(['.wmss', 'entropy', 'model']);
  });

  it('refuses output paths that escape the run dir, and a relative run dir', async () => {
    const runDir = tmpDir();
    for (const bad of ['../x', '/etc/passwd', 'a/../../x']) {
      const f = await failureOf(runStep(stepInput('merge', runDir), spec({ outputs: { out: bad } })));
      expect(f).toMatchObject({ type: ErrorTypes.ArtifactConflict, nonRetryable: true });
    }
    const returned = await failureOf(
      runStep(
        stepInput('merge', runDir),
        spec({
          produce: async ({ paths }) => {
            await fsp.writeFile(paths.out, 'x');
            await fsp.mkdir(paths.dir);
            return { outputs: { extra: '/tmp' } };
          },
        }),
      ),
    );
    expect(returned.type).toBe(ErrorTypes.ArtifactConflict);
    const rel = await failureOf(runStep(stepInput('merge', 'relative/run'), spec()));
    expect(rel.type).toBe(ErrorTypes.ArtifactConflict);
  });

  it('in-place mode records outputs returned by produce (absolute inside the run dir accepted)', async () => {
    const runDir = tmpDir();
    const result = await runStep(stepInput('sft', runDir), {
      cacheKey: { v: 1 },
      outputs: { dir: 'stage1_m1' },
      mode: 'in-place',
      produce: async ({ paths }) => {
        expect(paths.dir).toBe(path.join(runDir, 'stage1_m1'));
        await fsp.mkdir(path.join(paths.dir, 'checkpoint-4'), { recursive: true });
        await fsp.writeFile(path.join(paths.dir, 'checkpoint-4', 'COMPLETE'), 'ok');
        return { outputs: { checkpoint: path.join(paths.dir, 'checkpoint-4') } };
      },
    });
    expect(result.outputs).toEqual({ dir: 'stage1_m1', checkpoint: 'stage1_m1/checkpoint-4' });
    expect((await readManifest(runDir, 'sft'))?.outputs.checkpoint.kind).toBe('dir');
  });
});
