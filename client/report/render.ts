/**
 * The run report as two documents from the same data and charts:
 *   report/index.html  self-contained (charts inline as SVG, CSS inline, no external references)
 *   report/report.md   with the charts as SVG files beside it
 */
import type { ReportData } from './collect';
import type { Chart } from './charts';
import { datasets, LABEL_NAMES, orderedLabels } from './labels';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';
import { paperProtocol } from '../../activities/evalDatasets';
import { CODE_COLUMNS, MATH_COLUMNS, PUBLISHED_SOURCE, PUBLISHED_TABLE1 } from './published';
import { escapeXml as esc, fmt } from './svg';
import { statsHtml, statsMarkdown } from './statsSection';

export const DAG_TEXT = `            ┌── 0 entropy(base) ─────────────────────────────┐
  config ───┼── 1 SFT(base) → m1 ── 2 entropy(m1) ───────────┴── 3 merge + weights + resample ──┐
            └── 4 snapshot base → m0 ───────────────────────────────────────────────────────────┴── 5a fuse(m0, m1)
                                                         → 5b joint training → 6 extract sub-model → 7 evaluate`;

/** The unweighted mean pass@1 over the seven sets (the paper's Avg), when a model has all seven. */
export function sevenSetAverage(sets: Record<string, { pass_at_1: number }> | undefined): number | undefined {
  if (!sets || !BENCHMARK_NAMES.every((n) => sets[n] !== undefined)) return undefined;
  return BENCHMARK_NAMES.reduce((s, n) => s + sets[n].pass_at_1, 0) / BENCHMARK_NAMES.length;
}

/**
 * Why this run's figures do not compare with the paper's, or undefined when they might: another
 * protocol, or a set evaluated on fewer rows than it has.
 */
export function comparability(data: ReportData): string | undefined {
  const reasons: string[] = [];
  for (const [label, protocol] of Object.entries(data.evalProtocol))
    if (protocol !== 'paper') reasons.push(`${label} evaluated with the ${protocol} protocol, not the paper's`);
  const rows = paperProtocol().sets;
  const partial = BENCHMARK_NAMES.filter((n) =>
    Object.values(data.accuracy).some((a) => a[n] && a[n].n < rows[n].rows),
  );
  if (partial.length) reasons.push(`${partial.join(', ')} evaluated on a subset of rows`);
  const missing = BENCHMARK_NAMES.filter((n) => !Object.values(data.accuracy).some((a) => a[n]));
  if (missing.length && missing.length < BENCHMARK_NAMES.length) reasons.push(`${missing.join(', ')} not evaluated`);
  if (missing.length === BENCHMARK_NAMES.length) reasons.push('none of the seven sets evaluated');
  return reasons.length ? reasons.join('; ') : undefined;
}

const pct = (v: number | undefined) => (v === undefined ? '–' : `${(100 * v).toFixed(1)}`);
const tokens = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(0));
const secs = (ms: number | undefined) =>
  ms === undefined ? '–' : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;

/** Rows of the tables both documents show, as plain cells. */
export function tables(data: ReportData) {
  const steps = data.steps.map((s) => [
    s.number,
    s.title,
    s.startedAt ? s.startedAt.replace('T', ' ').slice(0, 19) : 'not finished',
    secs(s.ms) + (s.attempts && s.attempts > 1 ? ` (${s.attempts} attempts)` : ''),
    s.host ?? '',
    s.cacheKey ? s.cacheKey.slice(0, 12) : '',
  ]);
  const labels = orderedLabels(data);
  const delta = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined ? `${(100 * (a - b)).toFixed(1)}` : '–';
  const accuracy = datasets(data).map((d) => {
    const s = (l: string) => data.accuracy[l]?.[d];
    const n = labels.map((l) => s(l)?.n).find((x) => x !== undefined);
    return [
      d,
      String(n ?? ''),
      ...labels.flatMap((l) => [pct(s(l)?.pass_at_1), pct(s(l)?.truncation_rate), tokens(s(l)?.mean_output_tokens)]),
      delta(s('wmss')?.pass_at_1, s('m1')?.pass_at_1),
    ];
  });
  const avg = (l: string) => sevenSetAverage(data.accuracy[l]);
  if (labels.some((l) => avg(l) !== undefined))
    accuracy.push([
      'average of the seven',
      '',
      ...labels.flatMap((l) => [pct(avg(l)), '', '']),
      delta(avg('wmss'), avg('m1')),
    ]);
  const beside = [
    ...labels.map((l) => [
      `this run: ${LABEL_NAMES[l] ?? l}`,
      ...BENCHMARK_NAMES.map((n) => pct(data.accuracy[l]?.[n]?.pass_at_1)),
      pct(avg(l)),
    ]),
    ...PUBLISHED_TABLE1.map((r) => [`paper: ${r.base} ${r.method}`, ...r.math.map((v) => v.toFixed(1))]),
  ];
  const stats = Object.entries(data.resampleStats ?? {})
    .filter(([, v]) => typeof v !== 'object' || v === null || Array.isArray(v))
    .map(([k, v]) => [
      k,
      typeof v === 'number' ? fmt(v) : Array.isArray(v) ? (v.length ? v.join('; ') : '–') : String(v),
    ]);
  for (const [k, v] of Object.entries(data.resampleStats ?? {})) {
    if (v && typeof v === 'object' && !Array.isArray(v))
      stats.push([
        k,
        Object.entries(v as Record<string, unknown>)
          .map(([a, b]) => `${a} ${typeof b === 'number' ? fmt(b) : String(b)}`)
          .join(', '),
      ]);
  }
  const published = PUBLISHED_TABLE1.map((r) => [
    r.base,
    r.method,
    ...r.math.map((v) => v.toFixed(1)),
    ...r.code.map((v) => v.toFixed(1)),
  ]);
  return {
    steps: { head: ['step', 'what', 'started (UTC)', 'took', 'host', 'cache key'], rows: steps },
    accuracy: {
      head: [
        'eval set',
        'n',
        ...labels.flatMap((l) => [`${LABEL_NAMES[l] ?? l} pass@1 %`, `${l} truncated %`, `${l} new tokens (mean)`]),
        'WMSS − m1 pass@1 (pts)',
      ],
      rows: accuracy,
    },
    beside: { head: ['pass@1 %', ...MATH_COLUMNS], rows: beside },
    stats: { head: ['statistic', 'value'], rows: stats },
    published: {
      head: ['base', 'method', ...MATH_COLUMNS.map((c) => `math ${c}`), ...CODE_COLUMNS.map((c) => `code ${c}`)],
      rows: published,
    },
  };
}

const ACCURACY_NOTE =
  "Per set: pass@1 (greedy; when sampling, the unbiased estimate from the n generations per prompt), the share of generations cut off at the token budget, and the mean number of generated tokens, from results/<model>/<set>/eval_summary.json (step 7). The last row is the unweighted mean pass@1 over the seven sets, the paper's Avg.";

function besideNote(data: ReportData): string {
  const why = comparability(data);
  return `This run's pass@1 on the seven math sets beside the paper's Table 1 (data/eval/paper-table1.json). ${why ? `Not comparable: ${why}.` : 'Same protocol and full sets; still comparable only for the same base model, training data and budget.'}`;
}

function configJson(data: ReportData): { title: string; json: string } {
  if (data.config) return { title: 'Run config (the workflow input)', json: JSON.stringify(data.config, null, 2) };
  return {
    title:
      'Config slices recorded in the step manifests (the workflow input was not available: report made from a run dir)',
    json: JSON.stringify(data.recordedConfig, null, 2),
  };
}

const lossNote = (l: ReportData['loss']['stage1']) =>
  l
    ? `${l.points.length} logged optimizer steps, from \`${l.checkpoint}/trainer_state.json\`${l.points.length ? `; first ${fmt(l.points[0].loss)}, last ${fmt(l.points[l.points.length - 1].loss)}` : ''}.`
    : 'not available.';

function htmlTable(t: { head: string[]; rows: string[][] }, cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${t.head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${t.rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function mdTable(t: { head: string[]; rows: string[][] }): string {
  const cell = (c: string) => c.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${t.head.map(cell).join(' | ')} |`,
    `|${t.head.map(() => '---').join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

function title(data: ReportData): string {
  return `WMSS run report: ${data.runName ?? data.runDir}`;
}

export function renderHtml(data: ReportData, charts: Chart[]): string {
  const t = tables(data);
  const c = (file: string) => charts.find((x) => x.file === file)?.svg ?? '';
  const cfg = configJson(data);
  const figure = (file: string, caption: string) =>
    `<figure>${c(file)}<figcaption>${esc(caption)}</figcaption></figure>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title(data))}</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;max-width:1320px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:12px;max-height:420px}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}figcaption{font-size:12px;color:#555;max-width:640px}
.note{color:#666;font-size:13px}.missing{color:#a33}
</style></head><body>
<h1>${esc(title(data))}</h1>
<p class="note">Run dir <code>${esc(data.runDir)}</code>${data.workflowId ? `, workflow <code>${esc(data.workflowId)}</code>` : ''}. Generated ${esc(data.generatedAt)} by <code>wmss report</code>.</p>
${data.missing.length ? `<p class="missing">Not (yet) available: ${data.missing.map(esc).join('; ')}.</p>` : ''}
<h2 id="accuracy">Accuracy: base, m1 and the WMSS model side by side</h2>
<p class="note">${esc(ACCURACY_NOTE)}</p>
${htmlTable(t.accuracy)}
${figure('accuracy.svg', 'pass@1 per eval set, from results/<model>/summary.json (step 7).')}
${data.paired ? statsHtml(data.paired, htmlTable) : ''}
<h3 id="beside-paper">Beside the paper's Table 1</h3>
<p class="note">${esc(besideNote(data))}</p>
${htmlTable(t.beside, 'published')}
<h2 id="dag">Pipeline and step timings</h2>
<pre>${esc(DAG_TEXT)}</pre>
${htmlTable(t.steps)}
${figure('dag-timings.svg', 'Start and duration of each step as recorded in <run dir>/.wmss/manifests (a cache hit keeps the timings of the run that produced the output).')}
<h2 id="loss">Training loss</h2>
${figure('loss-stage1.svg', `Stage 1: ${lossNote(data.loss.stage1)}`)}
${figure('loss-stage3.svg', `Stage 3: ${lossNote(data.loss.stage3)}`)}
<h2 id="entropy">Entropy (steps 0 and 2)</h2>
${figure('entropy-h0.svg', 'Mean answer-token entropy per training sample under the base model.')}
${figure('entropy-h1.svg', 'The same under m1 after Stage-1 SFT.')}
${figure('entropy-delta.svg', 'ΔH per sample; the dashed line is ΔH = 0.')}
<h2 id="weights">Sample weights and resampling (step 3)</h2>
${figure('sample-weights.svg', 'Distribution of the per-sample draw probabilities (entropy/sample_weights.jsonl), on a log scale.')}
${c('resample-multiplicity.svg') ? figure('resample-multiplicity.svg', 'Multiplicity of the drawn samples in entropy/resampled_positions.txt.') : ''}
${htmlTable(t.stats)}
<h2 id="published">Published numbers, for context</h2>
<p class="note">${esc(PUBLISHED_SOURCE)} These are full-scale results on other models and benchmarks; a run's own numbers are comparable only with the same base model, data, budget and evaluation protocol.</p>
${htmlTable(t.published, 'published')}
<h2 id="config">Config</h2>
<p class="note">${esc(cfg.title)}</p>
<pre>${esc(cfg.json)}</pre>
</body></html>
`;
}

export function renderMarkdown(data: ReportData, charts: Chart[]): string {
  const t = tables(data);
  const img = (file: string) => {
    const ch = charts.find((x) => x.file === file);
    return ch ? `![${ch.title}](${ch.file})` : '';
  };
  const cfg = configJson(data);
  return [
    `# ${title(data)}`,
    '',
    `Run dir \`${data.runDir}\`${data.workflowId ? `, workflow \`${data.workflowId}\`` : ''}. Generated ${data.generatedAt} by \`wmss report\`; the same report as one self-contained file: \`index.html\`.`,
    '',
    ...(data.missing.length ? [`**Not (yet) available:** ${data.missing.join('; ')}.`, ''] : []),
    '## Accuracy: base, m1 and the WMSS model side by side',
    '',
    ACCURACY_NOTE,
    '',
    mdTable(t.accuracy),
    '',
    img('accuracy.svg'),
    '',
    ...(data.paired ? statsMarkdown(data.paired, mdTable) : []),
    "### Beside the paper's Table 1",
    '',
    besideNote(data),
    '',
    mdTable(t.beside),
    '',
    '## Pipeline and step timings',
    '',
    '```',
    DAG_TEXT,
    '```',
    '',
    mdTable(t.steps),
    '',
    img('dag-timings.svg'),
    '',
    '## Training loss',
    '',
    `Stage 1: ${lossNote(data.loss.stage1)}`,
    '',
    img('loss-stage1.svg'),
    '',
    `Stage 3: ${lossNote(data.loss.stage3)}`,
    '',
    img('loss-stage3.svg'),
    '',
    '## Entropy (steps 0 and 2)',
    '',
    img('entropy-h0.svg'),
    img('entropy-h1.svg'),
    img('entropy-delta.svg'),
    '',
    '## Sample weights and resampling (step 3)',
    '',
    img('sample-weights.svg'),
    img('resample-multiplicity.svg'),
    '',
    mdTable(t.stats),
    '',
    '## Published numbers, for context',
    '',
    `${PUBLISHED_SOURCE} These are full-scale results on other models and benchmarks; a run's own numbers are comparable only with the same base model, data, budget and evaluation protocol.`,
    '',
    mdTable(t.published),
    '',
    '## Config',
    '',
    cfg.title,
    '',
    '```json',
    cfg.json,
    '```',
    '',
  ].join('\n');
}
