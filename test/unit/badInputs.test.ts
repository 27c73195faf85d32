/**
 * The malformed-input corpus (test/fixtures/bad, README there): every case goes through the code
 * path its step uses — the activity itself under the artifact store where there is one — and must
 * fail with one non-retryable InvalidInput/InvalidConfig naming the file, line and field the
 * manifest expects, and publish nothing: no manifest, no output, no staging leftover.
 * The kernel side of the same data and eval cases: kernels/tests/test_bad_inputs.py.
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { extractSubmodel } from '../../activities/stepActivities/extractActivity';
import { fuseModels } from '../../activities/stepActivities/fuseActivity';
import { kernelSteps } from '../../activities/kernelSteps';
import { mergeAndWeight } from '../../activities/stepActivities/mergeActivity';
import { loadEvalRows, readRecords } from '../../activities/onnx/data';
import { onnxSteps } from '../../activities/onnx/onnxSteps';
import { REPO_ROOT } from '../../activities/repoPaths';
import { snapshotBase } from '../../activities/stepActivities/snapshotActivity';
import { DEFAULT_INPUT_LIMITS } from '../../activities/store/inputFiles';
import { MAX_LINE_BYTES } from '../../activities/store/jsonl';
import { manifestFile } from '../../activities/store/manifest';
import * as A from '../../pipeline/artifacts';
import { checkRunConfig } from '../../pipeline/config';
import { NON_RETRYABLE_ERROR_TYPES } from '../../pipeline/errors';
import type { StepId, StepResult } from '../../pipeline/steps';
import { buildModelFixtures } from '../fixtures/bad/build-models';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const ROOT = path.join(REPO_ROOT, 'test', 'fixtures', 'bad');

interface Expect {
  /** The file the error must name, relative to the case's input ('' = the input itself); null: none. */
  file: string | null;
  line: number | null;
  field: string | null;
  /** Fragments the message must contain. */
  message: string[];
  type?: string;
}

interface Case {
  id: string;
  kind: 'config' | 'data' | 'entropy' | 'model' | 'eval';
  /** Fixture path relative to test/fixtures/bad (a file or a directory). */
  input?: string;
  /** The input deliberately does not exist. */
  missing?: boolean;
  /**
   * Made at test time instead of committed: too big for the repo (huge-line, a sparse file one
   * byte over the text-file limit), or not a file git can hold (a FIFO, a symlink to /dev/zero).
   */
  generate?: { kind: 'huge-line'; line: number; bytes: number } | { kind: 'dev-zero' | 'fifo' | 'sparse' };
  format?: 'messages' | 'gsm8k';
  step?: 'snapshot' | 'fuse' | 'extract';
  dataset?: { format: 'gsm8k' | 'json' | 'jsonl'; expectedRows?: number };
  /** entropy cases: the data file, relative to the case (default shared/data.jsonl). */
  dataFile?: string;
  /** What changes when the activity runs the case (it names the config key of a missing path). */
  activity?: Partial<Pick<Expect, 'field' | 'message'>>;
  why: string;
  expect: Expect;
}

const corpus = JSON.parse(readFileSync(path.join(ROOT, 'cases.json'), 'utf8')) as { format: string; cases: Case[] };
const cases = corpus.cases;
const byKind = (kind: Case['kind']) => cases.filter((c) => c.kind === kind).map((c) => [c.id, c] as const);

function fakeResult(stepId: StepId, outputs: Record<string, string>): StepResult {
  return { stepId, host: 'test', cached: false, outputs, metrics: {}, cacheKey: `key-${stepId}`, durationMs: 0 };
}

/** A fresh run dir holding the case's input at `<runDir>/case` (copied, or generated). */
function prepare(c: Case): { runDir: string; input: string } {
  const runDir = tmpDir('wmss-bad-');
  const input = path.join(runDir, 'case');
  if (c.generate?.kind === 'huge-line') {
    // line 1 a valid record, then one line longer than the limit
    const valid = readFileSync(path.join(ROOT, 'shared', 'data.jsonl'), 'utf8').split('\n')[0];
    writeFileSync(
      input,
      Buffer.concat([Buffer.from(`${valid}\n`), Buffer.alloc(c.generate.bytes, 'x'), Buffer.from('\n')]),
    );
  } else if (c.generate?.kind === 'dev-zero') {
    symlinkSync('/dev/zero', input);
  } else if (c.generate?.kind === 'fifo') {
    execFileSync('mkfifo', [input]);
  } else if (c.generate?.kind === 'sparse') {
    writeFileSync(input, '');
    truncateSync(input, DEFAULT_INPUT_LIMITS.maxTextFileBytes + 1);
  } else if (!c.missing) {
    cpSync(path.join(ROOT, c.input!), input, { recursive: true });
  }
  return { runDir, input };
}

type Failure = Awaited<ReturnType<typeof failureOf>>;

/** The failure is typed, non-retryable, and names what the case expects in its message and details. */
function expectFailure(f: Failure, e: Expect, input: string, override: Case['activity'] = {}): void {
  const type = e.type ?? 'InvalidInput';
  expect({ type: f.type, nonRetryable: f.nonRetryable }).toEqual({ type, nonRetryable: true });
  expect(NON_RETRYABLE_ERROR_TYPES).toContain(type);
  const field = override.field !== undefined ? override.field : e.field;
  for (const fragment of override.message ?? e.message) expect(f.message).toContain(fragment);
  const details = f.details[0] as { file: string | null; line: number | null; field: string | null };
  if (type === 'InvalidConfig') {
    // the message names every key; details the first (null: the config as a whole)
    expect(details.field).toBe(field === '(root)' ? null : field);
    expect(f.message).toContain(`\n${field}: `);
    return;
  }
  const file = e.file === null ? null : path.join(input, e.file);
  expect(details).toEqual({ file, line: e.line, field });
  if (file !== null) expect(f.message).toContain(file);
  if (e.line !== null) expect(f.message).toContain(`${file}:${e.line}`);
  if (field !== null) expect(f.message).toContain(`(${field})`);
}

/** Every path under `dir` (relative), directories included. */
function walk(dir: string, rel = ''): string[] {
  if (!existsSync(path.join(dir, rel))) return [];
  return readdirSync(path.join(dir, rel)).flatMap((name) => {
    const r = rel ? `${rel}/${name}` : name;
    return statSync(path.join(dir, r)).isDirectory() ? [r, ...walk(dir, r)] : [r];
  });
}

/** Nothing of `step` was published: no manifest (of any step), none of its outputs, no staging leftover. */
function expectNothingPublished(runDir: string, step: StepId, outputs: string[]): void {
  expect(existsSync(manifestFile(runDir, step))).toBe(false);
  expect(walk(path.join(runDir, A.MANIFESTS_DIR))).toEqual([]);
  for (const out of outputs)
    expect({ out, exists: existsSync(path.join(runDir, out)) }).toEqual({ out, exists: false });
  expect(walk(runDir).filter((p) => /\.(partial|old)-/.test(p))).toEqual([]);
}

describe('the corpus', () => {
  it('has at least 50 cases over every category, each with a reason and its fixture', () => {
    expect(corpus.format).toBe('wmss-bad-inputs/1');
    expect(cases.length).toBeGreaterThanOrEqual(50);
    expect(new Set(cases.map((c) => c.id)).size).toBe(cases.length);
    for (const kind of ['config', 'data', 'entropy', 'model', 'eval'] as const)
      expect(byKind(kind).length).toBeGreaterThanOrEqual(5);
    for (const c of cases) {
      expect({ id: c.id, why: c.why.length > 5 }).toEqual({ id: c.id, why: true });
      if (c.generate) continue;
      expect({ id: c.id, present: existsSync(path.join(ROOT, c.input!)) }).toEqual({ id: c.id, present: !c.missing });
    }
  });

  it('has no fixture that no case uses', () => {
    const used = cases.filter((c) => c.input && !c.missing).map((c) => c.input!);
    const top = walk(ROOT).filter((p) => !statSync(path.join(ROOT, p)).isDirectory());
    const orphans = top.filter(
      (p) =>
        !p.startsWith('shared/') &&
        !['cases.json', 'README.md', 'build-models.ts'].includes(p) &&
        !used.some((u) => p === u || p.startsWith(`${u}/`)),
    );
    expect(orphans).toEqual([]);
  });

  it('holds exactly the model fixtures build-models.ts writes', () => {
    const built = tmpDir('wmss-bad-build-');
    buildModelFixtures(built);
    const files = (dir: string) =>
      ['model', 'fuse', 'extract', 'shared/model', 'shared/fused']
        .flatMap((sub) => walk(path.join(dir, sub)).map((p) => `${sub}/${p}`))
        .filter((p) => !statSync(path.join(dir, p)).isDirectory())
        .sort();
    expect(files(ROOT)).toEqual(files(built));
    for (const f of files(built))
      expect({ f, same: readFileSync(path.join(ROOT, f)).equals(readFileSync(path.join(built, f))) }).toEqual({
        f,
        same: true,
      });
  });

  it('the kernels reject lines over the same length limit as the TypeScript reader', () => {
    const py = readFileSync(path.join(REPO_ROOT, 'kernels', 'wmss_kernels', 'data.py'), 'utf8');
    const m = /^MAX_LINE_BYTES = (\d+) << (\d+)$/m.exec(py);
    expect(m && Number(m[1]) * 2 ** Number(m[2])).toBe(MAX_LINE_BYTES);
    const huge = cases.find((c) => c.generate?.kind === 'huge-line')!;
    expect(huge.generate).toMatchObject({ bytes: MAX_LINE_BYTES + 1 });
  });
});

describe('run configs (InvalidConfig before any step)', () => {
  test.each(byKind('config'))('%s', async (_id, c) => {
    const raw = JSON.parse(readFileSync(path.join(ROOT, c.input!), 'utf8'));
    expectFailure(await failureOf(Promise.resolve().then(() => checkRunConfig(raw))), c.expect, '');
  });
});

describe('training data (steps 0/2 on the onnx backend; the kernels: test_bad_inputs.py)', () => {
  test.each(byKind('data'))('%s', async (_id, c) => {
    const { runDir, input } = prepare(c);
    // the reader
    expectFailure(await failureOf(readRecords(input, c.format!)), c.expect, input);
    // the step: validated before the (absent) ONNX model is opened
    const step = stepInput(
      'entropy0',
      runDir,
      { dataFile: input, dataFormat: c.format, entropy: { backend: 'onnx' } },
      { onnxBase: fakeResult('onnxBase', { onnx: A.ONNX_BASE }) },
    );
    expectFailure(await failureOf(onnxSteps({ threads: 1 }).computeEntropy(step)), c.expect, input, c.activity);
    expectNothingPublished(runDir, 'entropy0', [A.ENTROPY_0]);
  });
});

describe('entropy files (step 3)', () => {
  test.each(byKind('entropy'))('%s', async (_id, c) => {
    const { runDir, input } = prepare(c);
    const dataFile = c.dataFile
      ? path.join(input, c.dataFile)
      : existsSync(path.join(input, 'data.jsonl'))
        ? path.join(input, 'data.jsonl')
        : path.join(ROOT, 'shared', 'data.jsonl');
    const step = stepInput(
      'merge',
      runDir,
      { dataFile },
      {
        entropy0: fakeResult('entropy0', { entropy: 'case/entropy_0.jsonl' }),
        entropy1: fakeResult('entropy1', { entropy: 'case/entropy_1.jsonl' }),
      },
    );
    expectFailure(await failureOf(mergeAndWeight(step)), c.expect, input, c.activity);
    expectNothingPublished(runDir, 'merge', [
      A.ENTROPY_MERGED,
      A.SAMPLE_WEIGHTS,
      A.RESAMPLED_POSITIONS,
      A.RESAMPLE_STATS,
    ]);
  });
});

describe('model dirs (steps 4, 5a, 6; the base model also in steps 0 and 1 before their kernels)', () => {
  const gpu = kernelSteps({ devices: { kind: 'cpu' }, exclusive: (fn) => fn() });
  test.each(byKind('model'))('%s', async (_id, c) => {
    const { runDir, input } = prepare(c);
    if (c.step === 'snapshot') {
      expectFailure(
        await failureOf(snapshotBase(stepInput('snapshot', runDir, { baseModel: input }))),
        c.expect,
        input,
      );
      expectNothingPublished(runDir, 'snapshot', [A.STAGE0_DIR]);
      const overrides = { baseModel: input, dataFile: path.join(ROOT, 'shared', 'data.jsonl') };
      expectFailure(await failureOf(gpu.computeEntropy(stepInput('entropy0', runDir, overrides))), c.expect, input);
      expectNothingPublished(runDir, 'entropy0', [A.ENTROPY_0]);
      expectFailure(await failureOf(gpu.trainSft(stepInput('sft', runDir, overrides))), c.expect, input);
      expectNothingPublished(runDir, 'sft', [A.STAGE1_DIR]);
      expect(walk(path.join(runDir, A.JOBS_DIR))).toEqual([]);
    } else if (c.step === 'fuse') {
      const step = stepInput(
        'fuse',
        runDir,
        {},
        {
          snapshot: fakeResult('snapshot', { model: 'case/weak' }),
          sft: fakeResult('sft', { checkpoint: 'case/strong' }),
        },
      );
      expectFailure(await failureOf(fuseModels(step)), c.expect, input);
      expectNothingPublished(runDir, 'fuse', [A.FUSED_INIT_DIR]);
    } else {
      const step = stepInput('extract', runDir, {}, { joint: fakeResult('joint', { checkpoint: 'case' }) });
      expectFailure(await failureOf(extractSubmodel(step)), c.expect, input);
      expectNothingPublished(runDir, 'extract', [A.extractedDir(step.config)]);
    }
  });
});

describe('eval sets (step 7, both backends; the kernel: test_bad_inputs.py)', () => {
  const gpu = kernelSteps({ devices: { kind: 'cpu' }, exclusive: (fn) => fn() });
  test.each(byKind('eval'))('%s', async (_id, c) => {
    const { runDir, input } = prepare(c);
    const ds = { name: 'bad', path: input, format: c.dataset!.format, expectedRows: c.dataset!.expectedRows };
    expectFailure(
      await failureOf(loadEvalRows({ ...ds, expectedRows: ds.expectedRows ?? null, limit: null })),
      c.expect,
      input,
    );
    const overrides = { eval: { benchmarks: [ds], baselines: false } };
    // torch: fails before any kernel starts (no job file is written)
    expectFailure(
      await failureOf(
        gpu.evaluate(stepInput('evaluate', runDir, overrides, { extract: fakeResult('extract', { model: 'wmss' }) })),
      ),
      c.expect,
      input,
      c.activity,
    );
    expect(walk(path.join(runDir, A.JOBS_DIR))).toEqual([]);
    expectNothingPublished(runDir, 'evaluate', [A.RESULTS_DIR]);
    // onnx: before any ONNX model is opened
    const onnx = stepInput(
      'evaluate',
      runDir,
      { ...overrides, eval: { ...overrides.eval, backend: 'onnx', protocol: 'lenient' } },
      { onnxWmss: fakeResult('onnxWmss', { onnx: A.ONNX_WMSS }) },
    );
    expectFailure(await failureOf(onnxSteps({ threads: 1 }).evaluate(onnx)), c.expect, input, c.activity);
    expectNothingPublished(runDir, 'evaluate', [A.RESULTS_DIR]);
  });
});

describe('through the real entropy kernel (torch backend: Python validates, the bridge maps exit code 2)', () => {
  const gpu = kernelSteps({ devices: { kind: 'cpu' }, exclusive: (fn) => fn(), threads: 1 });
  // two cases are enough here: the kernel's reader runs the whole data corpus in pytest
  test.each(byKind('data').filter(([id]) => id === 'data/duplicate-idx' || id === 'data/utf16'))(
    '%s',
    async (_id, c) => {
      const { runDir, input } = prepare(c);
      const base = path.join(runDir, 'base');
      mkdirSync(base);
      cpSync(path.join(ROOT, 'shared', 'model'), base, { recursive: true });
      const f = await failureOf(
        gpu.computeEntropy(
          stepInput('entropy0', runDir, { baseModel: base, dataFile: input, dataFormat: c.format, device: 'cpu' }),
        ),
      );
      expect({ type: f.type, nonRetryable: f.nonRetryable }).toEqual({ type: 'InvalidInput', nonRetryable: true });
      expect(f.details[0]).toEqual({ file: input, line: c.expect.line, field: c.expect.field ?? null });
      expect(f.message).toContain(
        `${input} line ${c.expect.line}: ${c.expect.field ? `field '${c.expect.field}': ` : ''}`,
      );
      for (const fragment of c.expect.message) expect(f.message).toContain(fragment);
      expect(f.message).toContain(path.join(runDir, A.LOGS_DIR, 'entropy0.log'));
      expectNothingPublished(runDir, 'entropy0', [A.ENTROPY_0]);
    },
    60_000,
  );
});
