/** Step 7's sets on the TypeScript side: the bundled registry, eval.benchmarks resolved, rows validated. */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EVAL_DATA_DIR, keepPreviousResults, paperProtocol, resolveEvalSets } from '../../activities/evalDatasets';
import { loadEvalRows } from '../../activities/onnx/data';
import { RunConfig } from '../../pipeline/config';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';
import { DEFAULT_SFT_SYSTEM_PROMPT } from '../../pipeline/stepDefinitions/sft';
import { cleanupTmp, failureOf, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const evalOf = (e: Record<string, unknown>) =>
  RunConfig.parse({ runName: 'r', runDir: '/r', baseModel: '/m', dataFile: '/d', eval: e }).eval;
const details = (f: { details?: unknown[] }) =>
  f.details?.[0] as { file: string; line: number | null; field: string | null };

test("the registry lists the seven sets of the config, in the paper's column order", () => {
  expect(Object.keys(paperProtocol().sets)).toEqual([...BENCHMARK_NAMES]);
});

test("the sft job's default system prompt is the original's Stage-1 prompt of paper-protocol.json, character for character", () => {
  expect(DEFAULT_SFT_SYSTEM_PROMPT).toBe(paperProtocol().sftSystemPrompt);
  expect(DEFAULT_SFT_SYSTEM_PROMPT.startsWith(' You are a helpful assistant.')).toBe(true);
});

test.each(BENCHMARK_NAMES.map((n) => [n]))('bundled %s loads with its count and digest', async (name) => {
  const [set] = resolveEvalSets(evalOf({ benchmarks: [name] }));
  const expected = { aime2025: 30, math500: 500, amc23: 40, aqua: 254, gsm8k: 1319, mawps: 238, svamp: 1000 }[name];
  expect(set).toMatchObject({
    name,
    format: 'json',
    expectedRows: expected,
    maxInputTokens: 4096,
    maxNewTokens: name === 'aime2025' || name === 'amc23' ? 8192 : 4096,
  });
  expect(createHash('sha256').update(readFileSync(set.path)).digest('hex')).toBe(set.sha256);
  const rows = await loadEvalRows(set);
  expect(rows).toHaveLength(expected);
  expect(rows.every((r) => r.question.length > 0 && r.gold.length > 0)).toBe(true);
});

test('benchmark entries: overrides win, a file named like a bundled set expects its count', () => {
  const sets = resolveEvalSets(
    evalOf({
      benchmarks: [
        { name: 'amc23', limit: 3, maxNewTokens: 64 },
        { name: 'gsm8k', path: '/data/my-gsm8k.jsonl' },
        { name: 'svamp', path: '/data/svamp-subset.json', allowRowCountMismatch: true },
        { name: 'mine', path: '/data/mine.txt', format: 'gsm8k', expectedRows: 7 },
      ],
    }),
  );
  expect(sets[0]).toMatchObject({ name: 'amc23', limit: 3, maxNewTokens: 64, maxInputTokens: 4096, expectedRows: 40 });
  expect(sets[1]).toMatchObject({
    path: '/data/my-gsm8k.jsonl',
    format: 'jsonl',
    expectedRows: 1319,
    sha256: null,
    maxNewTokens: 4096,
  });
  expect(sets[2]).toMatchObject({ format: 'json', expectedRows: null });
  expect(sets[3]).toMatchObject({ format: 'gsm8k', expectedRows: 7, maxNewTokens: 4096, limit: null });
});

test.each([
  [{ benchmarks: ['aime2024'] }, 'eval.benchmarks.0.name', /unknown set 'aime2024'.*aime2025/],
  [{ benchmarks: [{ name: 'x', path: '/data/x.csv' }] }, 'eval.benchmarks.0.format', /cannot tell the format/],
  [
    { benchmarks: [{ name: 'x', path: '/d/x.json', expectedRows: 3, allowRowCountMismatch: true }] },
    'eval.benchmarks.0.allowRowCountMismatch',
    /contradict/,
  ],
  [{ benchmarks: [{ name: 'gsm8k', format: 'json' }] }, 'eval.benchmarks.0.path', /file of your own/],
  [{ benchmarks: ['svamp', 'svamp'] }, 'eval.benchmarks.1.name', /duplicate set name 'svamp'/],
  [{ protocol: 'paper', enableThinking: false }, 'eval.enableThinking', /thinking on/],
  [{ backend: 'onnx', protocol: 'lenient', sampling: { temperature: 0.7, n: 4 } }, 'eval.sampling', /greedily only/],
  [{ sampling: { topP: 0 } }, 'eval.sampling.topP', /./],
])('refuses eval %j', (e, field, message) => {
  const parsed = RunConfig.safeParse({ runName: 'r', runDir: '/r', baseModel: '/m', dataFile: '/d', eval: e });
  expect(parsed.success).toBe(false);
  const issue = parsed.error!.issues.find((i) => i.path.join('.') === field);
  expect(issue?.message).toMatch(message);
});

test("sampling and the lenient protocol's own prompt are accepted", () => {
  expect(evalOf({ sampling: { temperature: 0.7, topP: 0.95, n: 8 } }).sampling).toEqual({
    temperature: 0.7,
    topP: 0.95,
    n: 8,
    seed: 42,
  });
  expect(evalOf({ protocol: 'lenient', systemPrompt: 'Be brief.', enableThinking: false }).systemPrompt).toBe(
    'Be brief.',
  );
});

test('bad set files are refused naming file, row and field', async () => {
  const dir = tmpDir();
  const file = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const count = file(
    'three.json',
    JSON.stringify([
      { question: 'a', answer: 1 },
      { question: 'b', answer: 2 },
      { question: 'c', answer: 3 },
    ]),
  );
  let f = await failureOf(loadEvalRows({ name: 'three', path: count, format: 'json', expectedRows: 4 }));
  expect(f.message).toMatch(/has 3 rows, expected 4/);
  expect(details(f)).toMatchObject({ file: count, field: 'expected_rows' });

  const missing = file(
    'missing.json',
    JSON.stringify([
      { question: 'a', answer: 1 },
      { instruction: 'b', output: '' },
    ]),
  );
  f = await failureOf(loadEvalRows({ name: 'm', path: missing, format: 'json' }));
  expect(f.message).toMatch(/no answer.*row 2 of the JSON list/);
  expect(details(f)).toEqual({ file: missing, line: 2, field: 'answer' });

  for (const [name, text] of [
    ['empty.json', '[]'],
    ['empty.jsonl', '\n'],
  ]) {
    const p = file(name, text);
    f = await failureOf(loadEvalRows({ name: 'e', path: p, format: name.endsWith('l') ? 'jsonl' : 'json' }));
    expect(f.message).toMatch(/has no rows/);
    expect(details(f).file).toBe(p);
  }

  const changed = file(
    'aime.json',
    readFileSync(path.join(EVAL_DATA_DIR, 'aime2025', 'test.json'), 'utf8').replace('"70"', '"71"'),
  );
  f = await failureOf(
    loadEvalRows({ name: 'aime2025', path: changed, format: 'json', sha256: paperProtocol().sets.aime2025.sha256 }),
  );
  expect(f.message).toMatch(/SHA-256.*the file was changed/);
  expect(details(f)).toMatchObject({ file: changed, field: 'sha256' });
});

test("the field lookup follows the original's order and skips blank values", async () => {
  const dir = tmpDir();
  const p = path.join(dir, 'd.jsonl');
  writeFileSync(
    p,
    [
      { instruction: 'I?', problem: 'P?', target: 5, solution: 'no' },
      { question: ' ', instruction: 'second', answer: '', ans: 0 },
      { prompt: [{ role: 'user', content: '2+2?' }], reward_model: { ground_truth: '4' }, answer: 'no' },
      { question: 'Q?', answer: 'x\n#### 1,000' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  expect((await loadEvalRows({ name: 'd', path: p, format: 'jsonl' })).map((r) => [r.question, r.gold])).toEqual([
    ['I?', '5'],
    ['second', '0'],
    ['2+2?', '4'],
    ['Q?', '1000'],
  ]);
});

test('results of an earlier run are kept aside unless overwrite', async () => {
  const runDir = tmpDir();
  expect(await keepPreviousResults(runDir, false)).toBeUndefined();
  mkdirSync(path.join(runDir, 'results', 'wmss'), { recursive: true });
  writeFileSync(path.join(runDir, 'results', 'wmss', 'summary.json'), '{}');
  const aside = await keepPreviousResults(runDir, false, new Date('2026-12-01T10:20:30.456Z'));
  expect(aside).toBe(path.join(runDir, 'results.previous-2026-12-01T10-20-30-456Z'));
  expect(existsSync(path.join(aside!, 'wmss', 'summary.json'))).toBe(true);
  expect(existsSync(path.join(runDir, 'results'))).toBe(false);
  mkdirSync(path.join(runDir, 'results'));
  expect(await keepPreviousResults(runDir, true)).toBeUndefined();
  expect(readdirSync(runDir).sort()).toEqual(['results', 'results.previous-2026-12-01T10-20-30-456Z']);
});
