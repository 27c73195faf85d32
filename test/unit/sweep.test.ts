/** Sweep specs (pipeline/sweep.ts): expansion, refusals naming the field, and which steps the points share. */
import {
  checkSweepSpec,
  configFieldKnown,
  expandSweep,
  seedSources,
  sharedSteps,
  SweepSpec,
} from '../../pipeline/sweep';

const base = { baseModel: '/models/base', dataFile: '/data/train.jsonl' };
const spec = (extra: Record<string, unknown>) =>
  SweepSpec.parse({ sweepName: 'lam', sweepDir: '/runs/lam', config: base, ...extra });

test('a grid expands to every combination, each point a run of its own in <sweepDir>/p<i>', () => {
  const points = expandSweep(spec({ grid: { seed: [1, 2], 'joint.fusionLambda': [0.3, 0.5, 0.7] } }));
  expect(points).toHaveLength(6);
  expect(points.map((p) => p.name)).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5']);
  expect(points[4].overrides).toEqual({ seed: 2, 'joint.fusionLambda': 0.5 });
  const c = points[4].config;
  expect([c.runName, c.runDir]).toEqual(['lam-p4', '/runs/lam/p4']);
  expect([c.sft.seed, c.joint.seed, c.resample.seed, c.joint.fusionLambda]).toEqual([2, 2, 2, 0.5]);
  // the base config's own sections are kept beside the override
  const withJoint = expandSweep(
    SweepSpec.parse({
      sweepName: 's',
      sweepDir: '/r',
      config: { ...base, joint: { lr: 0.01 } },
      grid: { 'joint.fusionLambda': [0.2] },
    }),
  );
  expect(withJoint[0].config.joint).toMatchObject({ lr: 0.01, fusionLambda: 0.2 });
});

test('a points list, combined with a grid, and the preset of the base config applies to each point', () => {
  const points = expandSweep(
    SweepSpec.parse({
      sweepName: 's',
      sweepDir: '/r',
      config: { ...base, preset: 'paper' },
      points: [{ 'weighting.formula': 'repo' }, {}],
      grid: { seed: [7] },
    }),
  );
  expect(points.map((p) => [p.config.weighting.formula, p.config.resample.dedupe, p.config.sft.seed])).toEqual([
    ['repo', true, 7],
    ['paper', true, 7],
  ]);
});

test.each([
  [
    { grid: { 'joint.fusionLamda': [0.3] } },
    /^invalid sweep: grid\.joint\.fusionLamda: unknown config field "joint\.fusionLamda"/,
  ],
  [{ grid: { learningRate: [1] } }, /^invalid sweep: grid\.learningRate: unknown config field/],
  [{ points: [{ 'sft.lr': 1e-4 }, { 'sft.lrr': 1 }] }, /^invalid sweep: points\.1\.sft\.lrr: unknown config field/],
  [{ grid: {} }, /^invalid sweep: grid: empty grid/],
  [{ grid: { seed: [] } }, /^invalid sweep: grid\.seed: empty list of values/],
  [{ points: [] }, /^invalid sweep: points: empty list of points/],
  [{}, /^invalid sweep: grid: a sweep needs a grid or a points list/],
  [{ grid: { runDir: ['/x'] } }, /^invalid sweep: grid\.runDir: runDir is set per point/],
  [
    { grid: { 'joint.fusionLambda': [1.5] } },
    /^invalid sweep: point p0 \{"joint\.fusionLambda":1\.5\}: joint\.fusionLambda: Too big/,
  ],
  [{ grid: { seed: [1] }, extra: 1 }, /^invalid sweep: \(root\)|Unrecognized key.*extra/],
])('refuses %j naming the field', (extra, message) => {
  let caught: unknown;
  try {
    checkSweepSpec({ sweepName: 'lam', sweepDir: '/runs/lam', config: base, ...extra });
  } catch (err) {
    caught = err;
  }
  expect(caught).toMatchObject({ type: 'InvalidConfig', nonRetryable: true });
  expect((caught as Error).message).toMatch(message);
});

test('config fields are looked up in the schema, sections and leaves', () => {
  expect(configFieldKnown('joint.fusionLambda')).toBe(true);
  expect(configFieldKnown('joint')).toBe(true);
  expect(configFieldKnown('eval.sampling.seed')).toBe(true);
  expect(configFieldKnown('placement.gpuPool')).toBe(true);
  expect(configFieldKnown('joint.fusionLambda.x')).toBe(false);
  expect(configFieldKnown('nope')).toBe(false);
});

test('a λ sweep shares steps 0–4 (and 3); a seed sweep only what no seed reaches', () => {
  const configs = (grid: Record<string, unknown[]>) => expandSweep(spec({ grid })).map((p) => p.config);
  expect(sharedSteps(configs({ 'joint.fusionLambda': [0.3, 0.7] }))).toEqual([
    'entropy0',
    'sft',
    'snapshot',
    'entropy1',
    'merge',
  ]);
  expect(sharedSteps(configs({ seed: [1, 2] }))).toEqual(['entropy0', 'snapshot']);
  expect(sharedSteps(configs({ 'weighting.formula': ['repo', 'paper'] }))).toEqual([
    'entropy0',
    'sft',
    'snapshot',
    'entropy1',
    'fuse',
  ]);
  // one differing eval setting shares everything but the evaluation
  expect(sharedSteps(configs({ 'eval.batchSize': [4, 8] }))).toEqual([
    'entropy0',
    'sft',
    'snapshot',
    'entropy1',
    'merge',
    'fuse',
    'joint',
    'extract',
  ]);
});

test('step 5c is shared across λ (its key leaves λ out) but not across seeds or its own settings', () => {
  const configs = (grid: Record<string, unknown[]>) =>
    expandSweep(spec({ config: { ...base, baseline: { sft: true } }, grid })).map((p) => p.config);
  expect(sharedSteps(configs({ 'joint.fusionLambda': [0.3, 0.7] }))).toContain('continuedSft');
  expect(sharedSteps(configs({ 'joint.freezeWeak': [true, false] }))).toContain('continuedSft');
  expect(sharedSteps(configs({ 'joint.lr': [1e-4, 1e-3] }))).not.toContain('continuedSft');
  expect(sharedSteps(configs({ 'baseline.data': ['resampled', 'original'] }))).not.toContain('continuedSft');
  expect(sharedSteps(configs({ seed: [1, 2] }))).not.toContain('continuedSft');
});

test('each point is seeded from the earlier points it shares steps with, the one that gives the most first', () => {
  const configs = (grid: Record<string, unknown[]>) =>
    expandSweep(spec({ config: { ...base, baseline: { sft: true } }, grid })).map((p) => p.config);
  const perSeed = ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'continuedSft'];
  const sources = seedSources(configs({ seed: [1, 2, 3], 'joint.fusionLambda': [0.3, 0.5, 0.7] }));
  expect(sources.map((s) => s.map((x) => x.donor))).toEqual([[], [0], [0], [0], [3], [3], [0], [6], [6]]);
  expect(sources[1][0].steps).toEqual(perSeed);
  expect(sources[3][0].steps).toEqual(['entropy0', 'snapshot']);
  expect(sources[8][0].steps).toEqual(perSeed);
  // one more setting of 5b and 5c: a point takes λ's fuse step from one point and 5c from another
  const two = seedSources(
    configs({ 'joint.promptFormat': ['conversation', 'stage1'], 'joint.fusionLambda': [0.3, 0.5] }),
  );
  // p0 conversation 0.3, p1 conversation 0.5, p2 stage1 0.3, p3 stage1 0.5
  expect(two[3]).toEqual([
    { donor: 1, steps: ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'fuse'] },
    { donor: 2, steps: ['continuedSft'] },
  ]);
  // a point that shares nothing with any earlier one starts on its own
  const apart = expandSweep(spec({ points: [{}, { baseModel: '/models/other', seed: 9 }] })).map((p) => p.config);
  expect(seedSources(apart)).toEqual([[], []]);
});
