/** `wmss plan <config>`: the step graph in run order, with what each step reads and writes. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { RunConfig } from '../../pipeline/config';
import { manifestPath } from '../../pipeline/artifacts';
import { activeSteps, STEPS } from '../../pipeline/steps';

export async function renderPlan(config: RunConfig): Promise<string> {
  const lines = [`run ${config.runName} in ${config.runDir}`];
  for (const step of activeSteps(config)) {
    const done = existsSync(path.join(config.runDir, manifestPath(step.id)));
    lines.push(`${step.number.padEnd(3)} ${step.title}  [${step.queue}]${done ? '  (outputs recorded: verified and reused if inputs are unchanged)' : ''}`);
    lines.push(`      after: ${step.needs.length ? step.needs.map((id) => STEPS.find((s) => s.id === id)!.number).join(', ') : 'start'}`);
    lines.push(`      reads: ${step.inputs(config).join(', ')}`);
    lines.push(`      writes: ${step.outputs(config).join(', ')}`);
  }
  return lines.join('\n');
}
