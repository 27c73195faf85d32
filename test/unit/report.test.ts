/** The report's step-7 tables: per set pass@1, truncation and tokens per model, the seven-set average, the paper beside. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { collectReportData } from '../../client/report/collect';
import { PUBLISHED_TABLE1 } from '../../client/report/published';
import { buildCharts } from '../../client/report/charts';
import { comparability, renderMarkdown, sevenSetAverage, tables } from '../../client/report/render';
import { paperProtocol } from '../../activities/evalDatasets';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';
import { cleanupTmp, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const FULL = Object.fromEntries(Object.entries(paperProtocol().sets).map(([k, v]) => [k, v.rows]));

function runWith(
  results: Record<string, { protocol: string; sets: Record<string, [number, number, number, number?]> }>,
): string {
  const runDir = tmpDir();
  for (const [label, r] of Object.entries(results)) {
    mkdirSync(path.join(runDir, 'results', label), { recursive: true });
    const datasets = Object.fromEntries(
      Object.entries(r.sets).map(([name, [passAt1, truncation, tokens, n]]) => {
        const rows = n ?? FULL[name] ?? 10;
        return [
          name,
          {
            n: rows,
            correct: Math.round(passAt1 * rows),
            pass_at_1: passAt1,
            truncated: Math.round(truncation * rows),
            truncation_rate: truncation,
            mean_output_tokens: tokens,
          },
        ];
      }),
    );
    writeFileSync(
      path.join(runDir, 'results', label, 'summary.json'),
      JSON.stringify({ model_path: `/m/${label}`, label, protocol: r.protocol, datasets }),
    );
  }
  return runDir;
}

const seven = (p: number, extra: Record<string, [number, number, number, number?]> = {}) => ({
  ...Object.fromEntries(BENCHMARK_NAMES.map((n, i) => [n, [p + i / 100, 0.1, 1000 + i] as [number, number, number]])),
  ...extra,
});

test('per set: pass@1, truncation and tokens for base, m1 and WMSS; the seven-set average; the paper beside', async () => {
  const runDir = runWith({
    base: { protocol: 'paper', sets: seven(0.2) },
    m1: { protocol: 'paper', sets: seven(0.5) },
    wmss: { protocol: 'paper', sets: seven(0.6, { arithmetic: [0.25, 0, 12, 200] }) },
  });
  const data = await collectReportData(runDir);
  const t = tables(data);
  expect(t.accuracy.head).toEqual([
    'eval set',
    'n',
    'base model pass@1 %',
    'base truncated %',
    'base new tokens (mean)',
    'm1 (Stage-1 SFT) pass@1 %',
    'm1 truncated %',
    'm1 new tokens (mean)',
    'WMSS (extracted) pass@1 %',
    'wmss truncated %',
    'wmss new tokens (mean)',
    'WMSS − m1 pass@1 (pts)',
  ]);
  // the seven in the paper's column order, then the run's own sets, then the average
  expect(t.accuracy.rows.map((r) => r[0])).toEqual([...BENCHMARK_NAMES, 'arithmetic', 'average of the seven']);
  expect(t.accuracy.rows[0]).toEqual([
    'aime2025',
    '30',
    '20.0',
    '10.0',
    '1000',
    '50.0',
    '10.0',
    '1000',
    '60.0',
    '10.0',
    '1000',
    '10.0',
  ]);
  expect(t.accuracy.rows[7]).toEqual(['arithmetic', '200', '–', '–', '–', '–', '–', '–', '25.0', '0.0', '12', '–']);
  // mean of p + 0.00 … p + 0.06 = p + 0.03
  expect(t.accuracy.rows[8]).toEqual([
    'average of the seven',
    '',
    '23.0',
    '',
    '',
    '53.0',
    '',
    '',
    '63.0',
    '',
    '',
    '10.0',
  ]);
  expect(t.beside.head).toEqual(['pass@1 %', 'AIME25', 'MATH500', 'AMC23', 'AQuA', 'GSM8K', 'MAWPS', 'SVAMP', 'Avg']);
  expect(t.beside.rows[2]).toEqual([
    'this run: WMSS (extracted)',
    '60.0',
    '61.0',
    '62.0',
    '63.0',
    '64.0',
    '65.0',
    '66.0',
    '63.0',
  ]);
  expect(t.beside.rows).toHaveLength(3 + PUBLISHED_TABLE1.length);
  expect(t.beside.rows).toContainEqual([
    'paper: Qwen3-4B-Base WMSS',
    '20.0',
    '71.4',
    '50.0',
    '67.7',
    '88.5',
    '96.2',
    '90.3',
    '69.1',
  ]);
  expect(comparability(data)).toBeUndefined();
  const md = renderMarkdown(data, buildCharts(data));
  expect(md).toContain("### Beside the paper's Table 1");
  expect(md).toContain('Same protocol and full sets');
});

test('a subset, a missing set or the lenient protocol is flagged as not comparable, and no average is made up', async () => {
  const runDir = runWith({
    wmss: { protocol: 'lenient', sets: { ...seven(0.3), aime2025: [0.5, 1, 48, 4] } },
    m1: { protocol: 'paper', sets: { gsm8k: [0.5, 0, 100] } },
  });
  const data = await collectReportData(runDir);
  expect(comparability(data)).toBe(
    "wmss evaluated with the lenient protocol, not the paper's; aime2025 evaluated on a subset of rows",
  );
  expect(sevenSetAverage(data.accuracy.m1)).toBeUndefined();
  const t = tables(data);
  const avg = t.accuracy.rows.find((r) => r[0] === 'average of the seven')!;
  expect(avg[2]).toBe('–'); // m1 lacks six of the seven sets
  expect(t.beside.rows[0]).toEqual(['this run: m1 (Stage-1 SFT)', '–', '–', '–', '–', '50.0', '–', '–', '–']);
});
