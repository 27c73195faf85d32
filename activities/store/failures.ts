/**
 * Builders of the ApplicationFailures that the file-handling activities raise. Each names where
 * the problem is (file, line, field or tensor key) in `details`, so the Web UI and `wmss status`
 * can point at it without parsing the message.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';

export interface FailureLocation {
  file: string;
  /** 1-based line of a text file, when the problem is on one line. */
  line?: number;
  /** JSON field or safetensors tensor key. */
  field?: string;
}

function where(loc: FailureLocation): string {
  let text = loc.file;
  if (loc.line !== undefined) text += `:${loc.line}`;
  if (loc.field !== undefined) text += ` (${loc.field})`;
  return text;
}

/** A malformed input (data file, entropy file, model dir). Non-retryable: a retry reads the same bytes. */
export function invalidInput(
  file: string,
  line: number | undefined,
  field: string | undefined,
  message: string,
): ApplicationFailure {
  const loc: FailureLocation = { file, line, field };
  return ApplicationFailure.create({
    type: ErrorTypes.InvalidInput,
    nonRetryable: true,
    message: `${where(loc)}: ${message}`,
    details: [{ file, line: line ?? null, field: field ?? null }],
  });
}

/** An artifact that contradicts its manifest, or a path that escapes the run dir. Non-retryable. */
export function artifactConflict(file: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: ErrorTypes.ArtifactConflict,
    nonRetryable: true,
    message: `${file}: ${message}`,
    details: [{ file, line: null, field: null }],
  });
}
