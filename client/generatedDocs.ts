/**
 * Everything in the repository that is generated from the code: blocks of the docs between
 * `<!-- name:start -->` and `<!-- name:end -->`, and the kernels' job schema. `npm run readme`
 * (scripts/update-readme.ts) rewrites them; test/unit/readme.test.ts fails when one is stale.
 */
import { configReference } from './configReference';
import { jobFieldTables } from './jobReference';
import { stepCodeMarkdown, stepTableMarkdown } from './stepTable';
import { kernelContract } from '../pipeline/kernelJobs';

export interface GeneratedBlock {
  /** Relative to the repository root. */
  file: string;
  name: string;
  text: () => string;
}

export const GENERATED_BLOCKS: GeneratedBlock[] = [
  { file: 'docs/configuration.md', name: 'config-reference', text: configReference },
  { file: 'docs/recovery.md', name: 'step-table', text: stepTableMarkdown },
  { file: 'README.md', name: 'step-code', text: stepCodeMarkdown },
  ...Object.entries(jobFieldTables()).map(([verb, table]) => ({
    file: 'docs/kernel-protocol.md',
    name: `job-fields:${verb}`,
    text: () => table,
  })),
];

/** Whole generated files. */
export const GENERATED_FILES: { file: string; text: () => string }[] = [
  { file: 'kernels/wmss_kernels/job_schema.json', text: () => `${JSON.stringify(kernelContract(), null, 2)}\n` },
];

/** `text` with the block `name` replaced by `body`; throws when the markers are missing. */
export function replaceBlock(text: string, name: string, body: string): string {
  const [head, rest] = text.split(`<!-- ${name}:start -->`);
  if (rest === undefined || !rest.includes(`<!-- ${name}:end -->`))
    throw new Error(`no <!-- ${name}:start/end --> markers`);
  const tail = rest.split(`<!-- ${name}:end -->`)[1];
  return `${head}<!-- ${name}:start -->\n${body}\n<!-- ${name}:end -->${tail}`;
}

/** The current contents of block `name` in `text`, trimmed; undefined without markers. */
export function blockOf(text: string, name: string): string | undefined {
  return text.split(`<!-- ${name}:start -->`)[1]?.split(`<!-- ${name}:end -->`)[0]?.trim();
}
