/** The step table (pipeline/steps.ts) in Markdown, with each step's timeouts and retry policy: `wmss steps`, and the README. */
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
    const only = s.when ? ' (onnx configs only)' : '';
    out.push(`| ${s.number} | \`${s.id}\`${only} | \`${s.activity}\` | ${s.queue} | ${s.needs.join(', ') || '–'} | ${s.timeouts.startToClose} | ${s.timeouts.heartbeat} | ${s.timeouts.stall} | ${retry} |`);
  }
  out.push('', `Never retried: ${NON_RETRYABLE_ERROR_TYPES.map((t) => `\`${t}\``).join(', ')}.`);
  return out.join('\n');
}
