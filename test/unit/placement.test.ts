/** Placement plumbing that needs no server: queue names, the routing rule, the torchrun command, shard merges (the evaluate merge is the kernel's: kernels/tests/test_evaluate.py). */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RunConfig } from '../../pipeline/config';
import { controlWorkerQueues, gpuWorkerQueues, pinnedHost, stepQueue } from '../../pipeline/placement';
import { stepRow, type StepResult } from '../../pipeline/steps';
import { kernelCommand } from '../../activities/kernelLaunch';
import { mergeJsonlByKey } from '../../activities/deviceShards';
import { cleanupTmp, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const config = (placement: Record<string, unknown> = {}) =>
  RunConfig.parse({ runName: 'p', runDir: '/r', baseModel: '/m', dataFile: '/d', placement });

test('workers poll the shared, host and pool queues; steps go to the one their placement names', () => {
  expect(gpuWorkerQueues({ gpuQueue: 'wmss-gpu', host: 'node7' })).toEqual({
    shared: ['wmss-gpu'],
    pinned: ['wmss-gpu@node7'],
  });
  expect(gpuWorkerQueues({ gpuQueue: 'wmss-gpu', host: 'node7', pool: 'h100' })).toEqual({
    shared: ['wmss-gpu', 'wmss-gpu:h100'],
    pinned: ['wmss-gpu@node7', 'wmss-gpu:h100@node7'],
  });
  expect(controlWorkerQueues({ controlQueue: 'wmss', host: 'node7' })).toEqual({
    shared: 'wmss',
    pinned: 'wmss@node7',
  });
  const pooled = config({ gpuPool: 'h100' }).placement;
  expect(stepQueue('gpu', pooled)).toBe('wmss-gpu:h100');
  expect(stepQueue('gpu', pooled, 'node7')).toBe('wmss-gpu:h100@node7');
  expect(stepQueue('cpu', pooled, 'node7')).toBe('wmss@node7');
});

test("local storage pins roots to the root host and every other step to its first input's host", () => {
  const result = (host: string) => ({ host }) as StepResult;
  const local = config({ storage: 'local' }).placement;
  expect(pinnedHost(stepRow('sft'), local, {}, 'a')).toBe('a');
  expect(pinnedHost(stepRow('entropy1'), local, { sft: result('b') }, 'a')).toBe('b');
  expect(pinnedHost(stepRow('fuse'), local, { snapshot: result('c'), sft: result('c') }, 'a')).toBe('c');
  expect(pinnedHost(stepRow('entropy1'), config().placement, { sft: result('b') }, undefined)).toBeUndefined();
  expect(config().placement.hostTimeout).toBe('10m');
  expect(() => config({ hostTimeout: 'soon' })).toThrow(/duration/);
});

test('training on N devices is torchrun with N ranks on this host; one device is plain python', () => {
  expect(kernelCommand('/v/python', 'sft', '/j.json')).toEqual({
    file: '/v/python',
    args: ['-m', 'wmss_kernels', 'sft', '--job', '/j.json'],
  });
  expect(kernelCommand('/v/python', 'joint', '/j.json', 4)).toEqual({
    file: '/v/python',
    args: [
      '-m',
      'torch.distributed.run',
      '--standalone',
      '--nnodes',
      '1',
      '--nproc-per-node',
      '4',
      '-m',
      'wmss_kernels',
      'joint',
      '--job',
      '/j.json',
    ],
  });
});

test('entropy shard outputs merge in idx order, lines kept byte for byte', async () => {
  const dir = tmpDir();
  writeFileSync(path.join(dir, 'a'), '{"idx": 0, "entropy_0": 1.5}\n{"idx": 2, "entropy_0": 1e-05}\n');
  writeFileSync(path.join(dir, 'b'), '{"idx": 1, "entropy_0": 2.25}\n{"idx": 3, "entropy_0": 0.1}\n');
  expect(await mergeJsonlByKey([path.join(dir, 'a'), path.join(dir, 'b')], 'idx', path.join(dir, 'out'))).toBe(4);
  expect(readFileSync(path.join(dir, 'out'), 'utf8')).toBe(
    '{"idx": 0, "entropy_0": 1.5}\n{"idx": 1, "entropy_0": 2.25}\n{"idx": 2, "entropy_0": 1e-05}\n{"idx": 3, "entropy_0": 0.1}\n',
  );
});
