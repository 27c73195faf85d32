/**
 * Job fields every kernel verb shares, and the small schemas several verbs use. The verbs' own
 * job schemas live with their steps (pipeline/stepDefinitions/<step>.ts); pipeline/kernelJobs.ts
 * collects them. Field names are snake_case because Python reads them.
 */
import { z } from 'zod';
import { DataFormatConfig } from './configFields';
import type { JobMapping } from './jobMapping';
import { TrackingJob } from './trackingConfig';

export const common = {
  log_file: z.string().describe("Path of the kernel's log file (appended)."),
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto').describe('auto = cuda if available.'),
  seed: z.number().int().default(42).describe('RNG seed.'),
  threads: z
    .number()
    .int()
    .positive()
    .nullable()
    .optional()
    .describe("torch.set_num_threads on the CPU; null = torch's default."),
  tracking: TrackingJob,
};

/** Top-level config keys that jobs take (dataFile too, but as the path the activity resolved). */
export const RUN_MAPPING: JobMapping = { section: '', schema: z.object({ dataFormat: DataFormatConfig }) };
export { DataFormat } from './configFields';
export const Dtype = z.enum(['auto', 'float32', 'bfloat16']);
export const Shard = z
  .object({ index: z.number().int().min(0), count: z.number().int().positive() })
  .nullable()
  .optional()
  .describe(
    '{index i, count n}: only the items whose 0-based position (a record of the data file, a row of an eval set) mod n is i; the shards are merged afterwards.',
  );
