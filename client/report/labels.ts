/** Which models and sets a report shows, in which order, under which names. */
import type { ReportData } from './collect';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';

export const LABEL_ORDER = ['base', 'm1', 'wmss'];
export const LABEL_NAMES: Record<string, string> = {
  base: 'base model',
  m1: 'm1 (Stage-1 SFT)',
  wmss: 'WMSS (extracted)',
};

export function orderedLabels(data: ReportData): string[] {
  const labels = Object.keys(data.accuracy);
  return [...LABEL_ORDER.filter((l) => labels.includes(l)), ...labels.filter((l) => !LABEL_ORDER.includes(l)).sort()];
}

/** The sets of the run: the paper's seven in its column order, then any others by name. */
export function datasets(data: ReportData): string[] {
  const all = new Set(Object.values(data.accuracy).flatMap((d) => Object.keys(d)));
  return [
    ...BENCHMARK_NAMES.filter((n) => all.has(n)),
    ...[...all].filter((n) => !(BENCHMARK_NAMES as readonly string[]).includes(n)).sort(),
  ];
}
