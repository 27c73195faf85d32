/**
 * The shared-cluster safety pieces, on real files: the run dir lock (activities/runLock.ts) with
 * Temporal's answers injected, path confinement and ownership (what a step may replace), the
 * free-space check with an injected statfs, and checkpoint retention.
 */
import { existsSync, mkdirSync, promises as fsp, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  acquireRunLock,
  LOCK_FORMAT,
  lockDir,
  readRunLock,
  releaseRunLock,
  type LockRecord,
  type OwnerState,
} from '../../activities/runLock';
import { runStep, type StepSpec } from '../../activities/store/artifactStore';
import {
  checkpointSteps,
  completeCheckpoints,
  countLines,
  freeBytes,
  pruneCheckpoints,
  requireDiskSpace,
  trainingEstimate,
} from '../../activities/store/diskSpace';
import { confineReal } from '../../activities/store/runDirPaths';
import { ErrorTypes } from '../../pipeline/errors';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const record = (workflowId: string, runId = `${workflowId}-run`, namespace = 'default'): LockRecord => ({
  format: LOCK_FORMAT,
  namespace,
  workflowId,
  runId,
  runName: workflowId,
  host: 'h',
  pid: 1,
  acquiredAt: new Date(0).toISOString(),
});

describe('run dir lock', () => {
  const open = async (): Promise<OwnerState> => ({ state: 'open' });
  const completed = async (): Promise<OwnerState> => ({
    state: 'closed',
    status: 'COMPLETED',
    closeTime: new Date(),
    stopsAbruptly: false,
  });

  it('is taken once, re-taken by the same execution (an activity retry), and refused to another open run', async () => {
    const runDir = tmpDir();
    const a = record('wmss-a');
    const first = await acquireRunLock(runDir, a, { ownerState: open });
    expect(first).toMatchObject({ generation: 1, alreadyHeld: false });
    expect(JSON.parse(readFileSync(first.file, 'utf8'))).toMatchObject({ workflowId: 'wmss-a', runId: 'wmss-a-run' });
    expect(await acquireRunLock(runDir, a, { ownerState: open })).toMatchObject({ generation: 1, alreadyHeld: true });

    const asked: string[] = [];
    const refused = await failureOf(
      acquireRunLock(runDir, record('wmss-b'), {
        ownerState: async (o) => (asked.push(o.workflowId), { state: 'open' }),
      }),
    );
    expect(refused).toMatchObject({ type: ErrorTypes.RunDirLocked, nonRetryable: true });
    expect(refused.message).toContain('wmss-a');
    expect(refused.message).toContain('still running');
    expect(asked).toEqual(['wmss-a']);
    expect((await readRunLock(runDir))?.record?.workflowId).toBe('wmss-a');
  });

  it('a lock whose owner has closed (or is unknown to the server) is taken over; the same workflow id takes over its earlier run', async () => {
    const runDir = tmpDir();
    await acquireRunLock(runDir, record('wmss-a', 'r1'), { ownerState: open });
    const resumed = await acquireRunLock(runDir, record('wmss-a', 'r2'), { ownerState: completed });
    expect(resumed).toMatchObject({
      generation: 2,
      alreadyHeld: false,
      tookOverFrom: { workflowId: 'wmss-a', runId: 'r1' },
    });
    const other = await acquireRunLock(runDir, record('wmss-b'), { ownerState: async () => ({ state: 'unknown' }) });
    expect(other.generation).toBe(3);
    // only the newest generation is kept
    expect(readdirSync(lockDir(runDir)).filter((f) => f.endsWith('.json'))).toEqual(['000000000003.json']);
  });

  it("waits for a terminated owner's activities to stop (close time + grace) before taking over", async () => {
    const runDir = tmpDir();
    await acquireRunLock(runDir, record('wmss-a'), { ownerState: open });
    let now = 1_000_000;
    const waits: number[] = [];
    const got = await acquireRunLock(runDir, record('wmss-b'), {
      ownerState: async () => ({
        state: 'closed',
        status: 'TERMINATED',
        closeTime: new Date(990_000),
        stopsAbruptly: true,
      }),
      terminatedGraceMs: 60_000,
      now: () => now,
      sleep: async (ms) => {
        waits.push(ms);
        now += ms;
      },
    });
    expect(got.tookOverFrom?.workflowId).toBe('wmss-a');
    expect(now).toBe(1_050_000); // closed at 990 s + 60 s grace
    expect(waits.every((ms) => ms <= 5000)).toBe(true);
  });

  it('of many runs racing for a stale lock exactly one wins; the others are refused naming it', async () => {
    const runDir = tmpDir();
    await acquireRunLock(runDir, record('wmss-dead'), { ownerState: open });
    const ids = Array.from({ length: 12 }, (_, i) => `wmss-r${i}`);
    // every contender is a running workflow; only the old holder has closed
    const results = await Promise.allSettled(
      ids.map((id) =>
        acquireRunLock(runDir, record(id), {
          ownerState: async (o) => (o.workflowId === 'wmss-dead' ? { state: 'unknown' } : { state: 'open' }),
        }),
      ),
    );
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [ids[i]] : []));
    expect(won).toHaveLength(1);
    expect((await readRunLock(runDir))!.record!.workflowId).toBe(won[0]);
    for (const r of results)
      if (r.status === 'rejected') expect(String((r.reason as Error).message)).toContain(`${won[0]} (run`);
    expect(readdirSync(lockDir(runDir)).filter((f) => f.endsWith('.json'))).toEqual(['000000000002.json']);
  });

  it("release removes only the releasing execution's lock; an unreadable lock is refused, not broken", async () => {
    const runDir = tmpDir();
    await acquireRunLock(runDir, record('wmss-a'), { ownerState: open });
    expect(await releaseRunLock(runDir, record('wmss-b'))).toBe(false);
    expect(await readRunLock(runDir)).toBeDefined();
    expect(await releaseRunLock(runDir, record('wmss-a'))).toBe(true);
    expect(await readRunLock(runDir)).toBeUndefined();

    writeFileSync(path.join(lockDir(runDir), '000000000007.json'), '{not json');
    const refused = await failureOf(acquireRunLock(runDir, record('wmss-c'), { ownerState: open }));
    expect(refused.type).toBe(ErrorTypes.RunDirLocked);
    expect(refused.message).toContain('000000000007.json');
  });

  it('a lock from another namespace cannot be checked and is refused', async () => {
    const runDir = tmpDir();
    await acquireRunLock(runDir, record('wmss-a', 'r', 'prod'), { ownerState: open });
    const refused = await failureOf(
      acquireRunLock(runDir, record('wmss-b', 'r', 'default'), { ownerState: completed }),
    );
    expect(refused.message).toMatch(/another namespace/);
  });
});

describe('path confinement and ownership', () => {
  const writeOne = (outputs: Record<string, string> = { out: 'entropy/out.txt' }): StepSpec => ({
    cacheKey: { v: 1 },
    outputs,
    mode: 'atomic',
    produce: async ({ paths }) => {
      for (const p of Object.values(paths)) await fsp.writeFile(p, 'new\n');
      return {};
    },
  });

  it('refuses a symlink that leads out of the run dir, at any depth; accepts one that stays inside', async () => {
    const runDir = tmpDir();
    const outside = tmpDir('wmss-outside-');
    symlinkSync(outside, path.join(runDir, 'entropy'));
    const f = await failureOf(runStep(stepInput('merge', runDir), writeOne()));
    expect(f.type).toBe(ErrorTypes.ArtifactConflict);
    expect(f.message).toMatch(/symlink .* outside the run dir/);
    expect(readdirSync(outside)).toEqual([]);

    await expect(confineReal(runDir, path.join(runDir, 'entropy', 'deep', 'x'))).rejects.toThrow(/outside the run dir/);
    mkdirSync(path.join(runDir, 'real'));
    symlinkSync(path.join(runDir, 'real'), path.join(runDir, 'inside'));
    await expect(confineReal(runDir, path.join(runDir, 'inside', 'x'))).resolves.toBeDefined();
    await expect(confineReal(runDir, path.join(runDir, '..', 'x'))).rejects.toThrow(/outside/);
    // the run dir itself may be a symlink
    const linkedRun = path.join(tmpDir(), 'run');
    symlinkSync(runDir, linkedRun);
    await expect(confineReal(linkedRun, path.join(linkedRun, 'real', 'x'))).resolves.toBeDefined();
  });

  it("never replaces an output path that this run dir's records do not attribute to the step", async () => {
    const runDir = tmpDir();
    mkdirSync(path.join(runDir, 'entropy'));
    writeFileSync(path.join(runDir, 'entropy/out.txt'), "a person's file\n");
    const f = await failureOf(runStep(stepInput('merge', runDir), writeOne()));
    expect(f.type).toBe(ErrorTypes.ArtifactConflict);
    expect(f.message).toMatch(/never overwrites or deletes what it did not write/);
    expect(readFileSync(path.join(runDir, 'entropy/out.txt'), 'utf8')).toBe("a person's file\n");
    // an empty directory is taken; a non-empty one is not
    mkdirSync(path.join(runDir, 'results'));
    await expect(runStep(stepInput('evaluate', runDir), writeOne({ out: 'results' }))).resolves.toMatchObject({
      cached: false,
    });
    mkdirSync(path.join(runDir, 'stage0_m0'));
    writeFileSync(path.join(runDir, 'stage0_m0', 'config.json'), '{}');
    expect((await failureOf(runStep(stepInput('snapshot', runDir), writeOne({ out: 'stage0_m0' })))).type).toBe(
      ErrorTypes.ArtifactConflict,
    );
    expect(readdirSync(path.join(runDir, 'stage0_m0'))).toEqual(['config.json']);
  });

  it('replaces its own outputs on a re-run, also after the manifest was lost (crash between publish and manifest)', async () => {
    const runDir = tmpDir();
    await runStep(stepInput('merge', runDir), writeOne());
    await fsp.rm(path.join(runDir, '.wmss/manifests'), { recursive: true });
    const again = await runStep(stepInput('merge', runDir), { ...writeOne(), cacheKey: { v: 2 } });
    expect(again.cached).toBe(false);
    expect(JSON.parse(readFileSync(path.join(runDir, '.wmss/owned/merge.json'), 'utf8')).paths).toEqual([
      'entropy/out.txt',
    ]);
    // another step may not take it
    const f = await failureOf(runStep(stepInput('snapshot', runDir), writeOne()));
    expect(f.type).toBe(ErrorTypes.ArtifactConflict);
  });
});

describe('disk space', () => {
  const statfs = (free: number) => () => ({ bavail: free / 4096, bsize: 4096 });

  it('fails early with InsufficientDisk, naming the need, the headroom and what is free', async () => {
    const dir = tmpDir();
    const input = stepInput('sft', dir);
    await expect(
      requireDiskSpace(input.config, 'sft', dir, { bytes: 5e9, what: '2 checkpoints × 2.5 GB' }, statfs(7e9)),
    ).resolves.toBeUndefined();
    const f = await failureOf(
      requireDiskSpace(input.config, 'sft', dir, { bytes: 5e9, what: '2 checkpoints × 2.5 GB' }, statfs(5.5e9)),
    );
    expect(f).toMatchObject({ type: ErrorTypes.InsufficientDisk, nonRetryable: true });
    expect(f.message).toMatch(
      /step 1 .* needs about 5\.0 GB .*2 checkpoints × 2\.5 GB.* plus 1\.0 GB headroom .* only 5\.5 GB are free/,
    );
    expect(f.message).toMatch(/sft\.keepCheckpoints/);
    const off = stepInput('sft', dir, { disk: { check: false } });
    await expect(
      requireDiskSpace(off.config, 'sft', dir, { bytes: 5e9, what: 'x' }, statfs(0)),
    ).resolves.toBeUndefined();
  });

  it('reads the real file system of the nearest existing ancestor', async () => {
    const dir = tmpDir();
    const free = await freeBytes(path.join(dir, 'not', 'yet'));
    expect(free).toBeGreaterThan(0);
    const f = await failureOf(
      requireDiskSpace(
        stepInput('snapshot', dir, { disk: { headroomGB: 1e6 } }).config,
        'snapshot',
        path.join(dir, 'x'),
        { bytes: 1, what: 'one copy' },
      ),
    );
    expect(f.type).toBe(ErrorTypes.InsufficientDisk);
  });

  it('estimates training checkpoints: all that remain without retention, at most N + 1 at once with it', () => {
    expect(checkpointSteps(10, 3)).toEqual([3, 6, 9, 10]);
    expect(checkpointSteps(9, 3)).toEqual([3, 6, 9]);
    expect(checkpointSteps(9, 0)).toEqual([9]);
    const base = {
      params: 1e9,
      trainableParams: 1e9,
      bytesPerParam: 2,
      totalSteps: 100,
      saveEvery: 10,
      resumeStep: 0,
      existing: 0,
    };
    expect(trainingEstimate(base).bytes).toBe(10 * 3 * 2e9); // 10 checkpoints × (weights + 2 moments)
    expect(trainingEstimate({ ...base, resumeStep: 70, existing: 7 }).bytes).toBe(3 * 6e9);
    expect(trainingEstimate({ ...base, keepCheckpoints: 2 }).bytes).toBe(3 * 6e9);
    expect(trainingEstimate({ ...base, keepCheckpoints: 2, resumeStep: 50, existing: 2 }).bytes).toBe(1 * 6e9);
    expect(trainingEstimate({ ...base, trainableParams: 5e8 }).bytes).toBe(10 * 2 * 2e9);
  });

  it('counts non-blank lines of a data file', async () => {
    const file = path.join(tmpDir(), 'd.jsonl');
    writeFileSync(file, '{"a":1}\n\n  \n{"a":2}\n{"a":3}');
    expect(await countLines(file)).toBe(3);
  });
});

describe('checkpoint retention', () => {
  const makeCheckpoint = (dir: string, step: number, complete = true) => {
    mkdirSync(path.join(dir, `checkpoint-${step}`), { recursive: true });
    writeFileSync(path.join(dir, `checkpoint-${step}`, 'model.safetensors'), 'w');
    if (complete) writeFileSync(path.join(dir, `checkpoint-${step}`, 'COMPLETE'), 'ok\n');
  };

  it('keeps the newest N complete checkpoints and never touches incomplete ones', async () => {
    const dir = tmpDir();
    for (const s of [3, 6, 9, 12]) makeCheckpoint(dir, s);
    makeCheckpoint(dir, 15, false); // being written / crash leftover: the kernel's
    mkdirSync(path.join(dir, 'checkpoint-18.partial'));
    const removed = await pruneCheckpoints(dir, 2);
    expect(removed.map((d) => path.basename(d))).toEqual(['checkpoint-3', 'checkpoint-6']);
    expect(readdirSync(dir).sort()).toEqual([
      'checkpoint-12',
      'checkpoint-15',
      'checkpoint-18.partial',
      'checkpoint-9',
    ]);
    expect((await completeCheckpoints(dir)).map((c) => c.step)).toEqual([9, 12]);
    expect(await pruneCheckpoints(dir, undefined)).toEqual([]);
  });

  it('never deletes the newest complete checkpoint, even with keepCheckpoints 1', async () => {
    const dir = tmpDir();
    for (const s of [1, 2]) makeCheckpoint(dir, s);
    makeCheckpoint(dir, 3, false);
    await pruneCheckpoints(dir, 1);
    expect(existsSync(path.join(dir, 'checkpoint-2', 'COMPLETE'))).toBe(true);
    expect(existsSync(path.join(dir, 'checkpoint-1'))).toBe(false);
    expect(existsSync(path.join(dir, 'checkpoint-3'))).toBe(true);
  });
});
