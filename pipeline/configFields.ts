/**
 * Building blocks of the run config's fields, shared by the config slices of the steps
 * (pipeline/stepDefinitions/<step>.ts) and pipeline/config.ts. Plain zod: the workflow sandbox loads them.
 */
import { z } from 'zod';

export const positiveInt = () => z.number().int().positive();
/**
 * Upper bounds: far above any paper-scale run (Qwen3-8B, 32k context, a few epochs), low enough
 * that a typo (an extra zero, 1e30) is refused before a worker allocates or loops for it.
 */
export const MAX = {
  epochs: 1000,
  steps: 100_000_000,
  tokens: 1_048_576,
  batch: 65_536,
  gradAccum: 1_000_000,
  rows: 1_000_000_000,
  seed: 4_294_967_295,
  weight: 1_000_000,
  multiplier: 100,
} as const;
export const countUpTo = (max: number) => positiveInt().max(max);
export const unitFraction = () => z.number().min(0).max(1);
/** A random seed: 0 to 2^32−1, 42 when absent (the original's). */
export const seed = () => z.number().int().min(0).max(MAX.seed).default(42);
export const relOrAbsPath = () =>
  z
    .string()
    .min(1)
    .refine((p) => !p.includes('\0'), 'path contains a NUL byte');

export const DataFormat = z.enum(['messages', 'gsm8k']);
export const DataFormatConfig = DataFormat.default('messages').describe(
  'messages = the original\'s records (first user and assistant turn used); gsm8k = {"question","answer"} lines, answer after ####.',
);
