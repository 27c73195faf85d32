/**
 * The report's "Paired comparison" section: per eval set and pooled, WMSS against continued SFT
 * (when the run has the baseline arm) and against m1 on the same problems, with McNemar's exact
 * test, bootstrap intervals and the outcome sentence (client/report/paired.ts).
 */
import { LABEL_NAMES } from './labels';
import { compare, comparisonsOf, outcomeSentence, pValue, type Comparison, type Outcomes } from './paired';
import { escapeXml as esc } from './svg';

export const STATS_NOTE =
  "Each problem's outcome per model comes from results/<model>/<set>/eval_detail.csv (several generations per problem: their mean; a problem counts as solved at ≥ ½ in the test). Only problems every compared model answered are paired. McNemar's exact test uses the discordant problems (one model right, the other wrong), two-sided. Intervals: percentile bootstrap over problems, 2000 resamples, seed 42; the difference resamples problems in pairs. One run is one seed: its intervals say nothing about the spread across seeds.";

export const NAMES: Record<string, string> = {
  ...LABEL_NAMES,
  wmss: 'WMSS',
  sft: 'continued SFT',
  csft: 'continued SFT',
  continued_sft: 'continued SFT',
  baseline: 'continued SFT',
};

const pct = (v: number) => (100 * v).toFixed(1);
const ci = (low: number, high: number) => `[${pct(low)}, ${pct(high)}]`;

export interface StatsSection {
  comparisons: Comparison[];
  table: { head: string[]; rows: string[][] };
  sentences: string[];
}

/** One row per comparison and set, and one pooled over the sets (the one its sentence is about). */
export function statsSection(outcomes: Outcomes): StatsSection {
  const rows: string[][] = [];
  const comparisons: Comparison[] = [];
  const sentences: string[] = [];
  for (const [a, b] of comparisonsOf(outcomes)) {
    const pooled = compare(outcomes, a, b);
    if (!pooled) continue;
    comparisons.push(pooled);
    sentences.push(outcomeSentence(pooled, NAMES));
    const perSet = pooled.sets.length > 1 ? pooled.sets : [];
    for (const set of [...perSet, '(all)']) {
      const c =
        set === '(all)'
          ? pooled
          : compare({ [a]: { [set]: outcomes[a][set] }, [b]: { [set]: outcomes[b][set] } }, a, b)!;
      rows.push([
        `${NAMES[a] ?? a} vs ${NAMES[b] ?? b}`,
        set === '(all)' ? (pooled.sets.length > 1 ? 'all sets' : pooled.sets[0]) : set,
        String(c.counts.n),
        `${pct(c.accA.estimate)} ${ci(c.accA.low, c.accA.high)}`,
        `${pct(c.accB.estimate)} ${ci(c.accB.low, c.accB.high)}`,
        `${c.diff.estimate >= 0 ? '+' : ''}${pct(c.diff.estimate)} ${ci(c.diff.low, c.diff.high)}`,
        `${c.counts.both} / ${c.counts.onlyA} / ${c.counts.onlyB} / ${c.counts.neither}`,
        pValue(c.p),
      ]);
    }
  }
  return {
    comparisons,
    sentences,
    table: {
      head: [
        'comparison (A vs B)',
        'eval set',
        'n',
        'A % [95 % CI]',
        'B % [95 % CI]',
        'A − B pts [95 % CI]',
        'both / only A / only B / neither',
        'McNemar exact',
      ],
      rows,
    },
  };
}

export function statsHtml(s: StatsSection, table: (t: StatsSection['table']) => string): string {
  if (!s.comparisons.length) return '';
  return `<h3 id="paired">Paired comparison on the same problems</h3>
<p class="note">${esc(STATS_NOTE)}</p>
${table(s.table)}
${s.sentences.map((x) => `<p><strong>${esc(x)}</strong></p>`).join('\n')}`;
}

export function statsMarkdown(s: StatsSection, table: (t: StatsSection['table']) => string): string[] {
  if (!s.comparisons.length) return [];
  return [
    '### Paired comparison on the same problems',
    '',
    STATS_NOTE,
    '',
    table(s.table),
    '',
    ...s.sentences.flatMap((x) => [`**${x}**`, '']),
  ];
}
