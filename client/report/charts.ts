/** The report's charts (SVG), the same for its HTML and Markdown documents. */
import type { ReportData } from './collect';
import { gantt, groupedBars, histogram, histogramChart, lineChart } from './svg';
import { datasets, LABEL_NAMES, orderedLabels } from './labels';

export interface Chart {
  /** File name next to report.md. */
  file: string;
  title: string;
  svg: string;
}

export function buildCharts(data: ReportData): Chart[] {
  const charts: Chart[] = [];
  const timed = data.steps.filter((s) => s.startedAt && s.finishedAt);
  charts.push({
    file: 'dag-timings.svg',
    title: 'Step timings',
    svg: gantt(
      'Step timings (from the step manifests)',
      timed.map((s) => ({
        label: `${s.number} ${s.title}`.slice(0, 48),
        start: Date.parse(s.startedAt!),
        end: Date.parse(s.finishedAt!),
      })),
    ),
  });
  const loss = (title: string, l: ReportData['loss']['stage1']) =>
    lineChart(
      title,
      l ? [{ name: 'training loss', points: l.points.map((p) => ({ x: p.step, y: p.loss })) }] : [],
      'optimizer step',
      'loss',
    );
  charts.push({
    file: 'loss-stage1.svg',
    title: 'Stage-1 SFT loss',
    svg: loss('Stage-1 SFT loss (step 1, base → m1)', data.loss.stage1),
  });
  charts.push({
    file: 'loss-stage3.svg',
    title: 'Stage-3 joint-training loss',
    svg: loss('Stage-3 joint-training loss (step 5b)', data.loss.stage3),
  });
  const e = data.entropy;
  charts.push({
    file: 'entropy-h0.svg',
    title: 'H0: entropy of the base model',
    svg: histogramChart('H0: mean token entropy of the base model', histogram(e?.h0 ?? []), 'entropy (nats)'),
  });
  charts.push({
    file: 'entropy-h1.svg',
    title: 'H1: entropy of m1',
    svg: histogramChart('H1: mean token entropy of m1', histogram(e?.h1 ?? []), 'entropy (nats)', { color: '#d62728' }),
  });
  charts.push({
    file: 'entropy-delta.svg',
    title: 'ΔH = H1 − H0',
    svg: histogramChart('ΔH = H1 − H0 (negative: m1 consolidated the sample)', histogram(e?.dh ?? []), 'ΔH (nats)', {
      color: '#9467bd',
      marker: 0,
    }),
  });
  // The draw probabilities span orders of magnitude (a few records can take much of the draw): on
  // a linear axis nearly all of them fall into the first bin, so the chart bins log10 of each.
  const weights = data.weights ?? [];
  const positive = weights.filter((w) => w > 0);
  const zeros = weights.length - positive.length;
  charts.push({
    file: 'sample-weights.svg',
    title: 'Sample weights',
    svg: histogramChart(
      `Sample-weight distribution (step 3)${zeros ? `; ${zeros} zero weights not shown` : ''}`,
      histogram(positive.map(Math.log10)),
      'log10 of the weight (probability of a draw)',
      { color: '#2ca02c' },
    ),
  });
  if (data.multiplicity) {
    const maxK = Math.max(...data.multiplicity);
    const h = {
      edges: Array.from({ length: maxK + 1 }, (_, i) => i + 0.5),
      counts: Array.from({ length: maxK }, (_, i) => data.multiplicity!.filter((k) => k === i + 1).length),
    };
    charts.push({
      file: 'resample-multiplicity.svg',
      title: 'Draws per sample',
      svg: histogramChart('Resampled set: how often each drawn sample occurs', h, 'times drawn', {
        color: '#ff7f0e',
        yLabel: 'distinct samples',
      }),
    });
  }
  const labels = orderedLabels(data);
  const sets = datasets(data);
  charts.push({
    file: 'accuracy.svg',
    title: 'Accuracy per eval set',
    svg: groupedBars(
      'pass@1 per eval set',
      sets,
      labels.map((l) => ({ name: LABEL_NAMES[l] ?? l, values: sets.map((d) => data.accuracy[l][d]?.pass_at_1) })),
      'pass@1 (%)',
    ),
  });
  return charts;
}
