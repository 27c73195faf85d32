/**
 * The faults of the chaos runs A and B of faults.test.ts: each acts once its condition holds,
 * killing a worker (or a kernel, or both) during one of steps 0–7 and noting what it saw.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { kernelPids, killPids, newestCheckpoint, processAlive, waitUntil } from '../../testkit/faultKit';
import { inRun, manifestOf, marker, stage1, stage3, stagedOf, TRAIN, type Run } from './faultRuns';

/** One thing the driver does once its condition holds. */
export interface Fault {
  run: Run;
  name: string;
  when: () => boolean | Promise<boolean>;
  act: () => Promise<void>;
  fired?: boolean;
}

/** Kill the worker(s), note what was killed, start fresh ones at once (their start-up overlaps the heartbeat timeout). */
async function killAndRestart(run: Run, name: string, which: ('gpu' | 'control')[]): Promise<void> {
  run.seen[`${name}:killed`] = which.map((w) => run[w].pid);
  run.seen[`${name}:at`] = Date.now();
  await Promise.all(which.map((w) => run[w].kill()));
  which.forEach((w) => run[w].start());
}

export function chaosFaults(a: Run, b: Run): Fault[] {
  return [
    // --- run A
    {
      // Step 1's kernel alone, SIGKILL mid-training: the worker lives and reports KernelCrashed.
      run: a,
      name: 'sft-kernel',
      when: async () => (await newestCheckpoint(stage1(a))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(a.config.runDir, 'sft', 1);
        expect(pids.length).toBeGreaterThan(0);
        killPids(pids);
        await waitUntil('the killed kernel to be gone', () => pids.every((p) => !processAlive(p)), 10_000);
        a.seen['sft-kernel:at'] = Date.now();
        a.seen['sft-kernel:checkpoint'] = await newestCheckpoint(stage1(a));
      },
    },
    {
      // Step 0 paused in its publish window (entropy staged, not renamed) and step 4 with its
      // outputs in place but no manifest: both workers killed at once.
      run: a,
      name: 'entropy0+snapshot',
      when: () => marker(a, 'entropy0', 'publish') && marker(a, 'snapshot', 'manifest'),
      act: async () => {
        a.seen['entropy0:staged'] = stagedOf(a, A.ENTROPY_0).length;
        a.seen['entropy0:final'] = existsSync(inRun(a, A.ENTROPY_0));
        a.seen['entropy0:manifest'] = manifestOf(a, 'entropy0');
        a.seen['snapshot:outputs'] = existsSync(inRun(a, `${A.STAGE0_DIR}/model.safetensors`));
        a.seen['snapshot:manifest'] = manifestOf(a, 'snapshot');
        await killAndRestart(a, 'entropy0+snapshot', ['gpu', 'control']);
      },
    },
    {
      run: a,
      name: 'entropy1+fuse',
      when: () => marker(a, 'entropy1', 'manifest') && marker(a, 'fuse', 'publish'),
      act: async () => {
        a.seen['entropy1:final'] = existsSync(inRun(a, A.ENTROPY_1));
        a.seen['entropy1:manifest'] = manifestOf(a, 'entropy1');
        a.seen['fuse:staged'] = stagedOf(a, A.FUSED_INIT_DIR).length;
        a.seen['fuse:final'] = existsSync(inRun(a, A.FUSED_INIT_DIR));
        await killAndRestart(a, 'entropy1+fuse', ['gpu', 'control']);
      },
    },
    {
      // Step 5b: the GPU worker alone; its kernel is told by Linux (PR_SET_PDEATHSIG), saves a
      // checkpoint on the spot and exits by itself.
      run: a,
      name: 'joint-worker',
      when: async () => (await newestCheckpoint(stage3(a))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(a.config.runDir, 'joint', 1);
        expect(pids.length).toBeGreaterThan(0);
        a.seen['joint:checkpointAtKill'] = await newestCheckpoint(stage3(a));
        await killAndRestart(a, 'joint-worker', ['gpu']);
        const t = Date.now();
        await waitUntil(
          'the orphaned joint kernel to save and exit',
          () => pids.every((p) => !processAlive(p)),
          30_000,
        );
        a.seen['joint:kernelExitMs'] = Date.now() - t;
        a.seen['joint:checkpointAfterExit'] = await newestCheckpoint(stage3(a));
      },
    },
    {
      // Step 7's kernel hangs (alive, silent): noted here, detected by the stall limit.
      run: a,
      name: 'evaluate-hang',
      when: () => marker(a, 'evaluate', 'hang'),
      act: async () => {
        a.seen['evaluate-hang:at'] = Date.now();
        a.seen['evaluate-hang:pids'] = kernelPids(a.config.runDir, 'evaluate', 1);
      },
    },
    {
      run: a,
      name: 'evaluate-hang-alive',
      when: () => Date.now() - ((a.seen['evaluate-hang:at'] as number | undefined) ?? Infinity) > 10_000,
      act: async () => {
        a.seen['evaluate-hang:aliveAfter10s'] = (a.seen['evaluate-hang:pids'] as number[]).every(processAlive);
      },
    },
    // --- run B
    {
      // Step 1: the GPU worker and its kernel at the same instant, as a lost machine.
      run: b,
      name: 'sft-machine',
      when: async () => (await newestCheckpoint(stage1(b))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(b.config.runDir, 'sft', 1);
        expect(pids.length).toBeGreaterThan(0);
        for (const pid of pids) killPids([-pid]);
        await killAndRestart(b, 'sft-machine', ['gpu']);
        await waitUntil('the killed kernel to be gone', () => pids.every((p) => !processAlive(p)), 10_000);
        b.seen['sft:checkpointAtKill'] = await newestCheckpoint(stage1(b));
      },
    },
    {
      // Step 3 killed in the middle of its renames: the merged file is in place, without a manifest.
      run: b,
      name: 'merge',
      when: () => marker(b, 'merge', 'rename'),
      act: async () => {
        b.seen['merge:finalMerged'] = existsSync(inRun(b, A.ENTROPY_MERGED));
        b.seen['merge:stagedOthers'] = [A.SAMPLE_WEIGHTS, A.RESAMPLED_POSITIONS, A.RESAMPLE_STATS].filter(
          (f) => stagedOf(b, f).length === 1,
        ).length;
        b.seen['merge:manifest'] = manifestOf(b, 'merge');
        await killAndRestart(b, 'merge', ['control']);
      },
    },
    {
      // Step 5b's kernel dies while writing its second checkpoint: files written, no COMPLETE.
      run: b,
      name: 'joint-checkpoint',
      when: () => marker(b, 'joint', 'die-before-complete'),
      act: async () => {
        const partial = path.join(stage3(b), `checkpoint-${2 * TRAIN.saveEvery}.partial`);
        b.seen['joint:partialFiles'] = existsSync(partial) ? readdirSync(partial).sort() : [];
        b.seen['joint:finalDir'] = existsSync(path.join(stage3(b), `checkpoint-${2 * TRAIN.saveEvery}`));
        b.seen['joint:newestComplete'] = await newestCheckpoint(stage3(b));
      },
    },
    {
      run: b,
      name: 'extract',
      when: () => marker(b, 'extract', 'publish'),
      act: async () => {
        b.seen['extract:staged'] = stagedOf(b, A.extractedDir(b.config)).length;
        await killAndRestart(b, 'extract', ['control']);
      },
    },
    {
      // Step 7: worker and kernel together as soon as the kernel has started.
      run: b,
      name: 'evaluate',
      when: () => kernelPids(b.config.runDir, 'evaluate', 1).length > 0,
      act: async () => {
        const pids = kernelPids(b.config.runDir, 'evaluate', 1);
        for (const pid of pids) killPids([-pid]);
        await killAndRestart(b, 'evaluate', ['gpu']);
        b.seen['evaluate:kernelKilled'] = pids.length;
      },
    },
  ];
}
