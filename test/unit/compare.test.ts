/** `wmss compare` (client/commands/compare.ts): the sweep it starts is the demo's run config, seeds × λ. */
import { compareSweep } from '../../client/commands/compare';
import { checkSweepSpec, seedSources } from '../../pipeline/sweep';

const GRID = { seeds: [1, 2, 3], formats: ['conversation', 'stage1'], lambdas: [0.3, 0.5, 0.7] };

test('3 seeds × 2 prompt formats × 3 values of λ of the demo config, the baseline arm on, on the held-out sums', () => {
  const { points } = checkSweepSpec(compareSweep('/tmp/cmp', GRID));
  expect(points).toHaveLength(18);
  expect(
    points.slice(0, 7).map((p) => [p.config.sft.seed, p.config.joint.promptFormat, p.config.joint.fusionLambda]),
  ).toEqual([
    [1, 'conversation', 0.3],
    [1, 'conversation', 0.5],
    [1, 'conversation', 0.7],
    [1, 'stage1', 0.3],
    [1, 'stage1', 0.5],
    [1, 'stage1', 0.7],
    [2, 'conversation', 0.3],
  ]);
  for (const p of points) {
    expect(p.config.baseline.sft).toBe(true);
    expect(p.config.eval.benchmarks.map((b) => b.name)).toEqual(['arithmetic']);
    expect(p.config.runDir).toBe(`/tmp/cmp/sweep/${p.name}`);
    // room for Stage-1's system prompt in both formats: the format is the one difference
    expect(p.config.joint.maxLength).toBe(p.config.sft.maxLength);
  }
  // Stage-1 SFT once per seed, the baseline arm once per seed and format, the fuse step once per seed and λ
  const sources = seedSources(points.map((p) => p.config));
  const runs = (id: string) => points.filter((_, i) => !sources[i].some((s) => s.steps.includes(id as never))).length;
  expect([runs('sft'), runs('continuedSft'), runs('fuse'), runs('joint')]).toEqual([3, 6, 9, 18]);
});

test('--set fields apply to every point; an unknown one is refused naming it', () => {
  const { points } = checkSweepSpec(
    compareSweep('/tmp/cmp', { seeds: [1], formats: ['stage1'], lambdas: [0.5] }, { 'joint.lr': 1e-4 }),
  );
  expect(points.map((p) => p.config.joint.lr)).toEqual([1e-4]);
  expect(() =>
    checkSweepSpec(compareSweep('/tmp/cmp', { seeds: [1], formats: ['stage1'], lambdas: [0.5] }, { 'joint.lrr': 1 })),
  ).toThrow(/points\.0\.joint\.lrr: unknown config field/);
});
