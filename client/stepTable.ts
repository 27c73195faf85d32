/**
 * The step table (pipeline/steps.ts) as text: `wmss steps` (with each step's code), the Markdown
 * table with timeouts and retry policies (`wmss steps --markdown`, docs/recovery.md), and the
 * README's "where each step lives" table.
 */
import { STEPS } from '../pipeline/steps';
import { NON_RETRYABLE_ERROR_TYPES } from '../pipeline/errors';

export function stepTableMarkdown(): string {
  const out = [
    '| step | id | activity | queue | needs | start-to-close | heartbeat | stall | retries |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of STEPS) {
    const r = s.retry;
    const retry = `${r.maximumAttempts} attempts; waits ${r.initialInterval}, ×${r.backoffCoefficient} each time, at most ${r.maximumInterval}`;
    const only = s.when ? ` (${s.whenText ?? 'onnx configs'} only)` : '';
    out.push(
      `| ${s.number} | \`${s.id}\`${only} | \`${s.activity}\` | ${s.queue} | ${s.needs.join(', ') || '–'} | ${s.timeouts.startToClose} | ${s.timeouts.heartbeat} | ${s.timeouts.stall} | ${retry} |`,
    );
  }
  out.push('', `Never retried: ${NON_RETRYABLE_ERROR_TYPES.map((t) => `\`${t}\``).join(', ')}.`);
  return out.join('\n');
}

const files = (paths: string[]) => paths.map((p) => `\`${p}\``).join(', ') || '–';

/** Where each step's code is: its TypeScript (definition and activity) and its kernel. */
export function stepCodeMarkdown(): string {
  const out = ['| step | id | what | TypeScript | kernel |', '|---|---|---|---|---|'];
  for (const s of STEPS)
    out.push(`| ${s.number} | \`${s.id}\` | ${s.title} | ${files(s.code.ts)} | ${files(s.code.kernel)} |`);
  return out.join('\n');
}

/** `wmss steps`: one line per step, then its code. */
export function stepTablePlain(): string {
  return STEPS.map(
    (s) =>
      `${s.number.padEnd(3)} ${s.id.padEnd(9)} ${s.activity.padEnd(16)} ${s.queue}  needs: ${(s.needs.join(', ') || '-').padEnd(42)} ${s.timeouts.startToClose}, heartbeat ${s.timeouts.heartbeat}, stall ${s.timeouts.stall}, ${s.retry.maximumAttempts} attempts\n    code: ${s.code.ts.join(', ')}${s.code.kernel.length ? ` | kernel: ${s.code.kernel.join(', ')}` : ''}`,
  ).join('\n');
}
