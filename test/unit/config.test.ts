/** The run config schema: defaults as the original script, unknown keys and bad values refused. */
import { formatConfigIssues, RunConfig } from '../../pipeline/config';
import { extractedDir, stage3Dir } from '../../pipeline/artifacts';
import { STEPS } from '../../pipeline/steps';

const minimal = { runName: 'r1', runDir: '/runs/r1', baseModel: '/models/base', dataFile: '/data/train.jsonl' };

test("a minimal config gets the original script's defaults", () => {
  const c = RunConfig.parse(minimal);
  // Global batch 256 as the original's 8 GPUs × 1 × 32; the worker divides gradAccum by its GPU count.
  expect(c.sft.microBatch * c.sft.gradAccum).toBe(256);
  expect(c.sft).toMatchObject({
    lr: 1e-5,
    epochs: 1,
    microBatch: 1,
    maxLength: 4096,
    warmupRatio: 0,
    maxGradNorm: 1,
    gradientCheckpointing: true,
  });
  expect(c.joint).toMatchObject({ fusionLambda: 0.5, freezeWeak: false, lossOn: 'all', lr: 1e-5 });
  expect(c.weighting).toEqual({ formula: 'repo', alpha: 0.1, beta: 0.8, gamma: 0.1 });
  expect(c.resample).toEqual({ multiplier: 1, dedupe: false, seed: 42 });
  expect(c.extract).toEqual({ submodelIdx: 1, dtype: 'keep' });
  expect(c.entropy).toMatchObject({ definition: 'shifted', maxLength: 8192 });
  expect(c.eval.protocol).toBe('paper');
  expect(c.eval.benchmarks.map((b) => b.name)).toEqual([
    'aime2025',
    'math500',
    'amc23',
    'aqua',
    'gsm8k',
    'mawps',
    'svamp',
  ]);
  expect(c.eval.sampling).toEqual({ temperature: 0, topP: 1, n: 1, seed: 42 });
  expect(c.eval.overwrite).toBe(false);
  expect(stage3Dir(c)).toBe('stage3_fused_brownboost_freezefalse_wmss');
  expect(extractedDir(c)).toBe('stage3_fused_brownboost_freezefalse_wmss_extracted_m1');
});

test.each([
  [{ ...minimal, learningRate: 1 }, /Unrecognized key.*learningRate/],
  [{ ...minimal, joint: { fusionLamda: 0.4 } }, /joint: Unrecognized key.*fusionLamda/],
  [{ ...minimal, joint: { fusionLambda: 1.5 } }, /joint\.fusionLambda/],
  [{ ...minimal, sft: { gradAccum: 0 } }, /sft\.gradAccum/],
  [{ ...minimal, runName: '../etc' }, /runName/],
  [{ ...minimal, weighting: { formula: 'brownboost' } }, /weighting\.formula/],
  [{ ...minimal, weighting: { alpha: 0, beta: 0, gamma: 0 } }, /alpha \+ beta \+ gamma must be > 0/],
  [{ ...minimal, extract: { submodelIdx: 2 } }, /extract\.submodelIdx/],
  [{ ...minimal, eval: { benchmarks: [] } }, /eval\.benchmarks/],
  [{ ...minimal, eval: { datasets: [] } }, /eval\.benchmarks/],
  [
    { ...minimal, eval: { datasets: [{ name: 'a', path: '/a.json' }], benchmarks: ['gsm8k'] } },
    /eval: Unrecognized key.*datasets/,
  ],
  [{ runName: 'r' }, /runDir/],
])('refuses %j', (input, message) => {
  const parsed = RunConfig.safeParse(input);
  expect(parsed.success).toBe(false);
  expect(formatConfigIssues(parsed.error!)).toMatch(message);
});

test('eval.datasets of configs from before eval.benchmarks reads as benchmarks under the lenient protocol', () => {
  const legacy = RunConfig.parse({
    ...minimal,
    eval: {
      batchSize: 100,
      datasets: [
        { name: 'arithmetic', path: '/a.jsonl', format: 'gsm8k', maxNewTokens: 40 },
        { name: 'gsm8k', path: 'bundled:gsm8k', format: 'gsm8k', expectedRows: 1319, maxNewTokens: 4096 },
      ],
    },
  });
  expect(legacy.eval).toMatchObject({
    protocol: 'lenient',
    batchSize: 100,
    benchmarks: [
      { name: 'arithmetic', path: '/a.jsonl', format: 'gsm8k', maxNewTokens: 40 },
      { name: 'gsm8k', maxNewTokens: 4096 },
    ],
  });
});

test('the freeze flag names the stage-3 directory as the original did', () => {
  expect(stage3Dir(RunConfig.parse({ ...minimal, joint: { freezeWeak: true } }))).toBe(
    'stage3_fused_brownboost_freezetrue_wmss',
  );
});

test('the step table is acyclic and names the eight steps of the original', () => {
  const ids = new Set(STEPS.map((s) => s.id));
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (id: string) => {
    expect(visiting.has(id)).toBe(false); // a cycle
    if (done.has(id)) return;
    visiting.add(id);
    for (const need of STEPS.find((s) => s.id === id)!.needs) {
      expect(ids.has(need)).toBe(true);
      visit(need);
    }
    visiting.delete(id);
    done.add(id);
  };
  STEPS.forEach((s) => visit(s.id));
  expect(STEPS.map((s) => s.number)).toEqual(expect.arrayContaining(['0', '1', '2', '3', '4', '5a', '5b', '6', '7']));
});
