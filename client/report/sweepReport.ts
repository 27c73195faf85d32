/**
 * The report of a sweep (`wmss report <sweepDir>`): from <sweepDir>/sweep.json and each point's
 * eval_detail.csv, per point the paired comparison of WMSS with continued SFT (when present) and
 * m1, the spread of accuracy and difference across seeds for each setting, and accuracy against λ
 * as a chart. Written to <sweepDir>/report/index.html and report.md (+ SVG).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SEED_FIELDS } from '../../pipeline/sweep';
import type { SweepPointRecord } from '../../pipeline/sweepApi';
import { compare, comparisonsOf, outcomeSentence, pairedScores, pValue, readOutcomes, type Comparison } from './paired';
import { spread } from './stats';
import { NAMES } from './statsSection';
import { escapeXml as esc, lineChart } from './svg';

import { SWEEP_FILE } from '../../activities/sweepActivities';

export { SWEEP_FILE };

export function isSweepDir(dir: string): boolean {
  return existsSync(path.join(dir, SWEEP_FILE));
}

const pct = (v: number) => (Number.isFinite(v) ? (100 * v).toFixed(1) : '–');
const isSeedKey = (k: string) => k === 'seed' || SEED_FIELDS.includes(k);

interface PointStats {
  point: SweepPointRecord;
  comparisons: Comparison[];
  /** label → accuracy pooled over the paired sets (each label against wmss' problems) */
  accuracy: Record<string, number>;
}

export interface SweepReportFiles {
  html: string;
  markdown: string;
  charts: string[];
  /** the report's outcome sentences, one per setting and comparison */
  outcomes: string[];
}

export function writeSweepReport(sweepDir: string): SweepReportFiles {
  const sweep = JSON.parse(readFileSync(path.join(sweepDir, SWEEP_FILE), 'utf8')) as {
    sweepName: string;
    shared: string[];
    points: SweepPointRecord[];
  };
  const stats: PointStats[] = sweep.points
    .filter((p) => p.state === 'completed')
    .map((point) => {
      const outcomes = readOutcomes(point.runDir);
      const comparisons = comparisonsOf(outcomes)
        .map(([a, b]) => compare(outcomes, a, b))
        .filter((c): c is Comparison => c !== undefined);
      const accuracy: Record<string, number> = {};
      for (const c of comparisons) {
        accuracy[c.a] = c.accA.estimate;
        accuracy[c.b] = c.accB.estimate;
      }
      if (outcomes.base && outcomes.wmss) {
        const s = pairedScores(outcomes, 'base', 'wmss');
        if (s.a.length) accuracy.base = s.a.reduce((x, y) => x + y, 0) / s.a.length;
      }
      return { point, comparisons, accuracy };
    });

  // points that differ only in their seed form one setting; its spread is across those seeds
  const settingOf = (p: SweepPointRecord) => JSON.stringify(Object.entries(p.overrides).filter(([k]) => !isSeedKey(k)));
  const settings = new Map<string, PointStats[]>();
  for (const s of stats) settings.set(settingOf(s.point), [...(settings.get(settingOf(s.point)) ?? []), s]);

  const pointRows = stats.flatMap((s) =>
    s.comparisons.map((c) => [
      s.point.name,
      JSON.stringify(s.point.overrides),
      `${NAMES[c.a] ?? c.a} vs ${NAMES[c.b] ?? c.b}`,
      String(c.counts.n),
      `${pct(c.accA.estimate)} [${pct(c.accA.low)}, ${pct(c.accA.high)}]`,
      `${pct(c.accB.estimate)} [${pct(c.accB.low)}, ${pct(c.accB.high)}]`,
      `${pct(c.diff.estimate)} [${pct(c.diff.low)}, ${pct(c.diff.high)}]`,
      pValue(c.p),
    ]),
  );
  const spreadRows: string[][] = [];
  const sentences: string[] = [];
  for (const [setting, group] of settings) {
    const pairs = group[0].comparisons.map((c) => [c.a, c.b] as const);
    for (const [a, b] of pairs) {
      const cs = group.map((g) => g.comparisons.find((c) => c.a === a && c.b === b)).filter((c) => c !== undefined);
      const diff = spread(cs.map((c) => c.diff.estimate));
      const accA = spread(cs.map((c) => c.accA.estimate));
      const significant = cs.filter((c) => c.p < 0.05);
      const label = Object.fromEntries(JSON.parse(setting) as Array<[string, unknown]>);
      spreadRows.push([
        JSON.stringify(label),
        `${NAMES[a] ?? a} vs ${NAMES[b] ?? b}`,
        String(cs.length),
        // one seed has no spread to show
        cs.length > 1 ? `${pct(accA.mean)} ± ${pct(accA.sd)}` : `${pct(accA.mean)} (one seed)`,
        cs.length > 1
          ? `${pct(diff.mean)} ± ${pct(diff.sd)} (${pct(diff.min)} … ${pct(diff.max)})`
          : `${pct(diff.mean)} (one seed)`,
        `${significant.length} of ${cs.length}`,
      ]);
      sentences.push(
        cs.length === 1
          ? `${JSON.stringify(label)}: ${outcomeSentence(cs[0], NAMES)}`
          : `${JSON.stringify(label)}: across ${cs.length} seeds ${NAMES[a] ?? a} − ${NAMES[b] ?? b} = ${pct(diff.mean)} ± ${pct(diff.sd)} points (mean ± sd over seeds), significant (McNemar exact, p < 0.05) in ${significant.length} of ${cs.length} seeds; ${significant.length === cs.length && cs.every((c) => Math.sign(c.diff.estimate) === Math.sign(diff.mean)) ? 'consistent in sign and significance across these seeds, for these problems only' : 'not a consistent difference across seeds'}.`,
      );
    }
  }

  // accuracy against λ: mean over the seeds of each λ, one line per model
  const lambdaKey = 'joint.fusionLambda';
  const lambdaOf = (p: SweepPointRecord) =>
    typeof p.overrides[lambdaKey] === 'number' ? p.overrides[lambdaKey] : undefined;
  const labels = [...new Set(stats.flatMap((s) => Object.keys(s.accuracy)))].sort();
  const series = labels.map((label) => {
    const byLambda = new Map<number, number[]>();
    for (const s of stats) {
      const l = lambdaOf(s.point);
      if (l !== undefined && s.accuracy[label] !== undefined)
        byLambda.set(l, [...(byLambda.get(l) ?? []), s.accuracy[label]]);
    }
    const points = [...byLambda]
      .sort(([x], [y]) => x - y)
      .map(([x, ys]) => ({ x, y: (100 * ys.reduce((u, v) => u + v, 0)) / ys.length }));
    return { name: NAMES[label] ?? label, points };
  });
  const chart = lineChart('Accuracy against λ (mean over seeds)', series, 'λ (joint.fusionLambda)', 'accuracy %');

  const dir = path.join(sweepDir, 'report');
  mkdirSync(dir, { recursive: true });
  const chartFile = path.join(dir, 'accuracy-vs-lambda.svg');
  writeFileSync(chartFile, chart);
  const pointTable = {
    head: [
      'point',
      'overrides',
      'comparison (A vs B)',
      'n',
      'A % [95 % CI]',
      'B % [95 % CI]',
      'A − B pts [95 % CI]',
      'McNemar exact',
    ],
    rows: pointRows,
  };
  const spreadTable = {
    head: ['setting', 'comparison', 'seeds', 'A % mean ± sd', 'A − B pts mean ± sd (min … max)', 'significant'],
    rows: spreadRows,
  };
  const failed = sweep.points.filter((p) => p.state !== 'completed');
  const seeding = sweep.points
    .filter((p) => p.seededFrom && p.seeded?.length)
    .map((p) => `${p.name} ← ${p.seededFrom!.join(' + ')} (${p.seeded!.join(', ')})`)
    .join('; ');
  const intro = `Sweep ${sweep.sweepName}: ${sweep.points.length} points, ${stats.length} completed${failed.length ? ` (not: ${failed.map((p) => `${p.name} ${p.state}${p.error ? `: ${p.error}` : ''}`).join('; ')})` : ''}. Steps shared by all points (run once, then cache hits): ${sweep.shared.join(', ') || 'none'}.${seeding ? ` Seeded from an earlier point (its outputs, then cache hits): ${seeding}.` : ''}`;
  const md = (t: { head: string[]; rows: string[][] }) =>
    [
      `| ${t.head.join(' | ')} |`,
      `|${t.head.map(() => '---').join('|')}|`,
      ...t.rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n');
  const html = (t: { head: string[]; rows: string[][] }) =>
    `<table><thead><tr>${t.head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${t.rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const markdown = path.join(dir, 'report.md');
  writeFileSync(
    markdown,
    [
      `# WMSS sweep report: ${sweep.sweepName}`,
      '',
      intro,
      '',
      '## Outcome',
      '',
      ...sentences.flatMap((s) => [s, '']),
      '## Spread across seeds',
      '',
      md(spreadTable),
      '',
      '## Per point',
      '',
      md(pointTable),
      '',
      '![accuracy against λ](accuracy-vs-lambda.svg)',
      '',
    ].join('\n'),
  );
  const htmlFile = path.join(dir, 'index.html');
  writeFileSync(
    htmlFile,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(`WMSS sweep report: ${sweep.sweepName}`)}</title><style>body{font-family:Helvetica,Arial,sans-serif;max-width:1320px;margin:24px auto;padding:0 16px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body><h1>${esc(`WMSS sweep report: ${sweep.sweepName}`)}</h1><p>${esc(intro)}</p><h2>Outcome</h2>${sentences.map((s) => `<p>${esc(s)}</p>`).join('')}<h2>Spread across seeds</h2>${html(spreadTable)}<h2>Per point</h2>${html(pointTable)}<figure>${chart}</figure></body></html>\n`,
  );
  return { html: htmlFile, markdown, charts: [chartFile], outcomes: sentences };
}
