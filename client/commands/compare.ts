/**
 * `wmss compare` (`make compare`): does WMSS help on the demo's task? Three seeds × a three-point
 * λ sweep of the demo's run config (the weak but pre-trained tiny base, the baseline arm 5c), in
 * both prompt formats of joint training (the original's conversation format and Stage-1's), on
 * this machine, then the sweep report: WMSS against continued SFT of m1 on the same problems, per
 * point and across seeds, and accuracy against λ. `--publish <dir>` copies the report there
 * (docs/compare/ holds the measured one that docs/compare.md and the README quote).
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { RunConfigInput } from '../../pipeline/config';
import { sweepQuery, type SweepResult } from '../../pipeline/sweepApi';
import type { SweepSpec } from '../../pipeline/sweep';
import { writeSweepReport } from '../report/sweepReport';
import { demoConfig, untilSettled, withDemoEnvironment, type DemoOptions } from './demo';
import { startSweep } from './startSweep';

export interface CompareOptions extends Omit<DemoOptions, 'runName'> {
  seeds: number[];
  lambdas: number[];
  /** joint.promptFormat values */
  formats: string[];
  /** where to copy report.md and its chart (e.g. docs/compare) */
  publish?: string;
  /** dotted run config field → value, applied to every point (e.g. joint.lr → 1e-4) */
  set?: Record<string, unknown>;
}

/** The comparison as a sweep: the demo's config on the arithmetic set alone, seeds × prompt format × λ. */
export function compareSweep(
  dir: string,
  grid: { seeds: number[]; lambdas: number[]; formats: string[] },
  set: Record<string, unknown> = {},
): SweepSpec {
  const { runName: _n, runDir: _d, ...config } = demoConfig(dir, 'compare') as RunConfigInput & Record<string, unknown>;
  const evalSection = config.eval as { benchmarks: Array<{ name: string }> };
  const joint = config.joint as Record<string, unknown>;
  return {
    sweepName: 'compare',
    sweepDir: path.join(dir, 'sweep'),
    config: {
      ...config,
      // Stage-1's format puts the ~90-token system prompt in front: the length SFT trains with,
      // in both formats, so that the format is the one difference
      joint: { ...joint, maxLength: (config.sft as { maxLength: number }).maxLength },
      // the held-out sums only: the demo's few rows of the seven math sets show the mechanics, and
      // the tiny model solves none of them, so they would add time and no information here
      eval: { ...evalSection, benchmarks: evalSection.benchmarks.filter((b) => b.name === 'arithmetic') },
    },
    grid: { seed: grid.seeds, 'joint.promptFormat': grid.formats, 'joint.fusionLambda': grid.lambdas },
    // one override set for every point: checked like any sweep's (unknown fields named)
    ...(Object.keys(set).length ? { points: [set] } : {}),
  } as SweepSpec;
}

export async function runCompare(opts: CompareOptions, log: (s: string) => void = console.log): Promise<number> {
  const started = Date.now();
  const clock = () => `[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s]`;
  // two kernel workers of one thread each: the points' steps overlap on a 2-core machine
  return withDemoEnvironment({ ...opts, gpuWorkers: 2 }, log, async ({ dir, client, uiLink }) => {
    const spec = compareSweep(dir, opts, opts.set);
    const handle = await startSweep(client, spec);
    log(
      `started ${handle.workflowId}: seeds ${opts.seeds.join(', ')} × joint.promptFormat ${opts.formats.join(', ')} × λ ${opts.lambdas.join(', ')}; Web UI: ${uiLink(handle.workflowId)}`,
    );
    const result = handle.result() as Promise<SweepResult>;
    const seen = new Map<string, string>();
    await untilSettled(result, 5000, async () => {
      const progress = await handle.query(sweepQuery).catch(() => undefined);
      for (const p of progress?.points ?? []) {
        const line = `${p.state}${p.seededFrom ? ` (seeded from ${p.seededFrom.join(' + ')}: ${(p.seeded ?? []).join(', ')})` : ''}${p.error ? `: ${p.error}` : ''}`;
        if (seen.get(p.name) === line) continue;
        seen.set(p.name, line);
        log(`${clock()} ${p.name} ${JSON.stringify(p.overrides)} ${line}`);
      }
    });
    const outcome = await result;
    const files = writeSweepReport(spec.sweepDir);
    log(`\n${files.outcomes.join('\n')}`);
    log(
      `\nsweep: ${outcome.aggregate}\nreport: ${files.markdown}\n        ${files.html}\nwall time: ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    if (opts.publish) {
      mkdirSync(opts.publish, { recursive: true });
      for (const file of [files.markdown, ...files.charts])
        copyFileSync(file, path.join(opts.publish, path.basename(file)));
      log(`published to ${opts.publish}`);
    }
    return 0;
  });
}
