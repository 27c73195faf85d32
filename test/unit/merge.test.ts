import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mergeAndWeight, mergeAndWeightFiles } from '../../activities/stepActivities/mergeActivity';
import { readEntropyColumns, mergeEntropies } from '../../activities/weights/joinEntropies';
import * as A from '../../pipeline/artifacts';
import { ErrorTypes } from '../../pipeline/errors';
import { RunConfig } from '../../pipeline/config';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

function lines(rows: string[]): string {
  return rows.map((r) => `${r}\n`).join('');
}

async function mergeTexts(e0: string[], e1: string[]) {
  const dir = tmpDir();
  const f0 = path.join(dir, 'entropy_0.jsonl');
  const f1 = path.join(dir, 'entropy_1.jsonl');
  writeFileSync(f0, lines(e0));
  writeFileSync(f1, lines(e1));
  return {
    f0,
    f1,
    run: async () =>
      mergeEntropies(await readEntropyColumns(f0, 'entropy_0'), await readEntropyColumns(f1, 'entropy_1')),
  };
}

const good0 = ['{"idx": 2, "entropy_0": 1.5}', '{"idx": 0, "entropy_0": 0.5}', '{"idx": 1, "entropy_0": 1}'];
const good1 = ['{"idx": 0, "entropy_1": 0.25}', '{"idx": 1, "entropy_1": 2}', '{"idx": 2, "entropy_1": 1.5}'];

describe('merge of the entropy files', () => {
  it('joins on idx and sorts', async () => {
    const m = await (await mergeTexts(good0, good1)).run();
    expect(Array.from(m.idx)).toEqual([0, 1, 2]);
    expect(Array.from(m.h0)).toEqual([0.5, 1, 1.5]);
    expect(Array.from(m.h1)).toEqual([0.25, 2, 1.5]);
  });

  const cases: [string, string[], string[], 0 | 1, number, string, RegExp][] = [
    [
      'NaN as a string',
      ['{"idx": 0, "entropy_0": "NaN"}'],
      ['{"idx": 0, "entropy_1": 1}'],
      0,
      1,
      'entropy_0',
      /must be a number, got a string \("NaN"\)/,
    ],
    [
      'null (NaN written by a lenient encoder)',
      ['{"idx": 0, "entropy_0": 1}', '{"idx": 1, "entropy_0": null}'],
      ['{"idx": 0, "entropy_1": 1}', '{"idx": 1, "entropy_1": 1}'],
      0,
      2,
      'entropy_0',
      /null/,
    ],
    [
      'negative entropy',
      good0,
      ['{"idx": 0, "entropy_1": 0.25}', '{"idx": 1, "entropy_1": -2}', '{"idx": 2, "entropy_1": 1}'],
      1,
      2,
      'entropy_1',
      /must be >= 0, got -2/,
    ],
    [
      'duplicate idx',
      [...good0, '{"idx": 0, "entropy_0": 3}'],
      good1,
      0,
      4,
      'idx',
      /duplicate idx 0 \(also on line 2\)/,
    ],
    [
      'idx only in the second file',
      good0,
      [...good1, '{"idx": 7, "entropy_1": 3}'],
      1,
      4,
      'idx',
      /idx 7 has no row in .*entropy_0\.jsonl .*3 rows.*4 rows/,
    ],
    ['idx only in the first file', good0, good1.slice(0, 2), 0, 1, 'idx', /idx 2 has no row in/],
    [
      'wrong field name',
      good0,
      ['{"idx": 0, "entropy_0": 0.25}'],
      1,
      1,
      'entropy_1',
      /missing field entropy_1 \(found entropy_0: wrong field name\?\)/,
    ],
    ['non-integer idx', ['{"idx": 1.5, "entropy_0": 1}'], good1, 0, 1, 'idx', /non-negative integer/],
  ];
  it.each(cases)('refuses %s, naming file, line and field', async (_name, e0, e1, fileNo, line, field, message) => {
    const t = await mergeTexts(e0, e1);
    const f = await failureOf(t.run());
    const file = fileNo === 0 ? t.f0 : t.f1;
    expect(f).toMatchObject({ type: ErrorTypes.InvalidInput, nonRetryable: true, details: [{ file, line, field }] });
    expect(f.message).toMatch(message);
    expect(f.message).toContain(`${file}:${line} (${field})`);
  });
});

describe('mergeAndWeight', () => {
  function writeRun(format: 'messages' | 'gsm8k') {
    const runDir = tmpDir();
    writeFileSync(path.join(runDir, 'entropy_0.jsonl'), lines(good0));
    writeFileSync(path.join(runDir, 'entropy_1.jsonl'), lines(good1));
    const data =
      format === 'messages'
        ? [
            '{"idx": 2, "messages": []}',
            '',
            '{"messages": [], "idx": 0}',
            '{"idx": 9, "messages": []}',
            '{"idx": 1, "messages": []}',
          ]
        : ['{"question": "a", "answer": "1"}', '{"question": "b", "answer": "2"}', '{"question": "c", "answer": "3"}'];
    writeFileSync(path.join(runDir, 'train.jsonl'), lines(data));
    return runDir;
  }
  const files = (runDir: string) => ({
    entropy0: path.join(runDir, 'entropy_0.jsonl'),
    entropy1: path.join(runDir, 'entropy_1.jsonl'),
    dataFile: path.join(runDir, 'train.jsonl'),
    out: {
      merged: path.join(runDir, 'm.jsonl'),
      weights: path.join(runDir, 'w.jsonl'),
      positions: path.join(runDir, 'p.txt'),
      stats: path.join(runDir, 's.json'),
    },
  });
  const settings = (extra: Record<string, unknown> = {}) =>
    RunConfig.parse({ runName: 'x', runDir: '/r', baseModel: '/b', dataFile: '/d', ...extra });

  it('writes the merged file, weights by idx, positions and stats', async () => {
    const runDir = writeRun('messages');
    const metrics = await mergeAndWeightFiles(files(runDir), settings());
    expect(readFileSync(path.join(runDir, 'm.jsonl'), 'utf8')).toBe(
      lines([
        '{"idx":0,"entropy_0":0.5,"entropy_1":0.25}',
        '{"idx":1,"entropy_0":1,"entropy_1":2}',
        '{"idx":2,"entropy_0":1.5,"entropy_1":1.5}',
      ]),
    );
    const weights = readFileSync(path.join(runDir, 'w.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(weights.map((w) => [w.idx, w.delta_entropy])).toEqual([
      [0, -0.25],
      [1, 1],
      [2, 0],
    ]);
    expect(weights.reduce((s, w) => s + w.weight, 0)).toBeCloseTo(1, 12);
    const positions = readFileSync(path.join(runDir, 'p.txt'), 'utf8').trim().split('\n').map(Number);
    expect(positions).toHaveLength(4); // 4 records (blank line not counted)
    expect(positions.every((p) => [0, 1, 3].includes(p))).toBe(true); // position 2 (idx 9) has no entropy
    const stats = JSON.parse(readFileSync(path.join(runDir, 's.json'), 'utf8'));
    expect(stats).toMatchObject({
      n: 4,
      draws: 4,
      missingEntropy: 1,
      entropyWithoutRecord: 0,
      deltaEntropy: { negative: 1, zero: 1, positive: 1 },
    });
    expect(stats.warnings).toEqual(['1 records have no entropy row and get weight 0']);
    expect(metrics).toMatchObject({ records: 4, draws: 4 });
  });

  it('gsm8k: idx = position; multiplier and dedupe', async () => {
    const runDir = writeRun('gsm8k');
    await mergeAndWeightFiles(
      files(runDir),
      settings({ dataFormat: 'gsm8k', resample: { multiplier: 3, dedupe: true } }),
    );
    const positions = readFileSync(path.join(runDir, 'p.txt'), 'utf8').trim().split('\n').map(Number);
    expect(new Set(positions).size).toBe(positions.length);
    expect(JSON.parse(readFileSync(path.join(runDir, 's.json'), 'utf8'))).toMatchObject({
      n: 3,
      draws: 9,
      written: positions.length,
    });
  });

  it('a record without idx is an error naming the data line', async () => {
    const runDir = writeRun('messages');
    writeFileSync(path.join(runDir, 'train.jsonl'), lines(['{"idx": 0}', '{"messages": []}']));
    const f = await failureOf(mergeAndWeightFiles(files(runDir), settings()));
    expect(f.details[0]).toMatchObject({ file: path.join(runDir, 'train.jsonl'), line: 2, field: 'idx' });
  });

  it('runs as a step under the artifact store, and is cached the second time', async () => {
    const runDir = tmpDir();
    writeFileSync(path.join(runDir, 'train.jsonl'), lines(['{"idx": 0}', '{"idx": 1}', '{"idx": 2}']));
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.join(runDir, 'entropy'));
    writeFileSync(path.join(runDir, A.ENTROPY_0), lines(good0));
    writeFileSync(path.join(runDir, A.ENTROPY_1), lines(good1));
    const first = await mergeAndWeight(stepInput('merge', runDir));
    expect(first.outputs).toEqual({
      merged: A.ENTROPY_MERGED,
      weights: A.SAMPLE_WEIGHTS,
      positions: A.RESAMPLED_POSITIONS,
      stats: A.RESAMPLE_STATS,
    });
    expect((await mergeAndWeight(stepInput('merge', runDir))).cached).toBe(true);
    expect((await mergeAndWeight(stepInput('merge', runDir, { resample: { seed: 7 } }))).cached).toBe(false);
  });
});
