/**
 * The paper's published numbers, shown in the report beside a run's own (comparable only for the
 * same base model, data, budget and the paper protocol). The figures are data:
 * data/eval/paper-table1.json; where they come from: docs/method.md#published-results and
 * docs/evaluation.md#the-report.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from '../../activities/repoPaths';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';

const PublishedRow = z.object({
  base: z.string(),
  method: z.string(),
  math: z.array(z.number()).length(8),
  code: z.array(z.number()).length(5),
});
const PaperTable = z.object({
  source: z.string(),
  // the seven sets in the config's order, then the paper's average
  mathColumns: z
    .array(z.string())
    .refine(
      (c) => c.join() === [...BENCHMARK_NAMES, 'average'].join(),
      'expected the seven sets in eval.benchmarks order, then average',
    ),
  codeColumns: z.array(z.string()).length(5),
  rows: z.array(PublishedRow).min(1),
});
export type PublishedRow = z.infer<typeof PublishedRow>;

export const PAPER_TABLE1_FILE = path.join(REPO_ROOT, 'data', 'eval', 'paper-table1.json');
const table = PaperTable.parse(JSON.parse(readFileSync(PAPER_TABLE1_FILE, 'utf8')));

export const PUBLISHED_SOURCE = table.source;
/** Column titles of the paper's math part: the seven sets in BENCHMARK_NAMES order, then Avg. */
export const MATH_COLUMNS = ['AIME25', 'MATH500', 'AMC23', 'AQuA', 'GSM8K', 'MAWPS', 'SVAMP', 'Avg'] as const;
export const CODE_COLUMNS = table.codeColumns;
export const PUBLISHED_TABLE1: PublishedRow[] = table.rows;
