/**
 * A model in the run config: a local directory, or a Hugging Face id `org/name` or
 * `org/name@revision` (a branch, a tag or a commit hash) that the run's set-up resolves through the
 * workers' Hugging Face cache (activities/runSetup.ts, docs/models.md). Plain zod and strings: the
 * workflow sandbox loads this file.
 *
 * Which is which, without touching the disk (the workflow cannot): absolute paths and paths
 * starting with `.` or `~` are directories; a value with an `@` or with exactly two non-empty
 * `/`-separated parts is an id and must be a well-formed one (`org//name`, spaces: refused). A
 * local directory of that shape is written `./org/name`; `wmss start` does that for you when the
 * directory exists where you run it (as transformers prefers an existing directory).
 */
import { relOrAbsPath } from './configFields';

// the Hub's rules for each part: letters, digits, . _ -, no leading or trailing . or -
const PART = '[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?';
const MODEL_ID = new RegExp(`^(${PART}/${PART})(?:@([A-Za-z0-9][A-Za-z0-9._/-]{0,199}))?$`);

export interface ModelId {
  /** org/name */
  repo: string;
  /** The revision asked for; "main" when none was. */
  revision: string;
}

/** Whether `value` is meant as a Hugging Face id (well-formed or not) rather than a directory. */
export function looksLikeModelId(value: string): boolean {
  if (/^[/.~]/.test(value)) return false;
  return value.includes('@') || value.split('/').filter(Boolean).length === 2;
}

/** The id in `value`, or undefined when it is a directory or not a well-formed id. */
export function parseModelId(value: string): ModelId | undefined {
  if (!looksLikeModelId(value)) return undefined;
  const m = MODEL_ID.exec(value);
  if (!m || m[1].includes('..')) return undefined;
  return { repo: m[1], revision: m[2] ?? 'main' };
}

/** The config field: a directory, or a well-formed id. */
export const modelRef = () =>
  relOrAbsPath().superRefine((value, ctx) => {
    if (looksLikeModelId(value) && parseModelId(value) === undefined)
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(value)} is neither a Hugging Face model id (org/name or org/name@revision: letters, digits, . _ -) nor a directory (write ./${value} for a relative one)`,
      });
  });
