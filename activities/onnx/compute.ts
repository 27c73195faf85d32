/**
 * The computations of the onnx backend, independent of Temporal: entropy scoring (the same
 * definitions, batching and output as kernels/wmss_kernels/entropy.py) and greedy evaluation
 * (as kernels/wmss_kernels/evaluate.py, graded by ./grading.ts). Used by the onnx activities
 * (./onnxSteps.ts), the parity tests and bench/onnx.ts.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { invalidInput } from '../store/failures';
import { loadEvalRows, readRecords, type EvalDatasetSpec, type TrainingRecord } from './data';
import { grade } from './grading';
import { OnnxCausalLm } from './model';
import { loadChatTokenizer, type ChatTokenizer } from './tokenizer';

/** Our own wording of the eval system prompt; the same text as chat.DEFAULT_EVAL_SYSTEM_PROMPT. */
export const DEFAULT_EVAL_SYSTEM_PROMPT =
  'You are a helpful assistant. First think about the reasoning process, then give the answer.' +
  ' Put the reasoning inside <think> </think> tags and the answer inside <answer> </answer> tags.' +
  ' Let\u2019s think step by step.';

/** Largest logits tensor one entropy batch may produce (bytes); caps batchTokens for wide vocabularies. */
export const MAX_LOGITS_BYTES = 512 << 20;

export interface Progress {
  (done: number, total: number, extra?: { tokensPerS?: number }): void;
}

/** Throws when the activity was cancelled; called between batches. */
export type StopCheck = () => void;

/** Positions of the logits rows averaged for one sequence (entropy.scored_rows). */
export function scoredRows(length: number, nPrompt: number, definition: 'shifted' | 'repo'): [number, number] {
  return definition === 'shifted' ? [Math.max(nPrompt, 1) - 1, length - 1] : [nPrompt, length];
}

/** Sample numbers grouped by length so that longest × count stays within batchTokens (entropy.make_batches). */
export function makeBatches(lengths: number[], batchTokens: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b]);
  const batches: number[][] = [];
  let current: number[] = [];
  for (const i of order) {
    if (current.length && lengths[i] * (current.length + 1) > batchTokens) {
      batches.push(current);
      current = [];
    }
    current.push(i);
  }
  if (current.length) batches.push(current);
  return batches;
}

/** Entropy (nats) of the softmax of one logits row. */
export function rowEntropy(data: Float32Array, offset: number, vocab: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) if (data[offset + v] > max) max = data[offset + v];
  let sum = 0;
  let weighted = 0;
  for (let v = 0; v < vocab; v++) {
    const x = data[offset + v] - max;
    const e = Math.exp(x);
    sum += e;
    weighted += e * x;
  }
  // H = log Σe − Σ e·x / Σe, with x the max-shifted logits
  return Math.log(sum) - weighted / sum;
}

export interface EntropyOptions {
  dataFile: string;
  dataFormat: 'messages' | 'gsm8k';
  outputPath: string;
  field: 'entropy_0' | 'entropy_1';
  definition: 'shifted' | 'repo';
  maxLength: number;
  batchTokens: number;
  limit?: number;
  /** The records of dataFile when the caller has read (validated) them already. */
  records?: TrainingRecord[];
  progress?: Progress;
  stop?: StopCheck;
}

/** Token ids of full (truncated to maxLength, keeping the start) and how many are the prompt (chat.tokenize_pair). */
export function entropyTokens(
  tok: ChatTokenizer,
  prompt: string,
  completion: string,
  maxLength: number,
): { ids: number[]; nPrompt: number } {
  const user = [{ role: 'user', content: prompt }];
  const promptText = tok.renderChat(user, false);
  const fullText = tok.renderChat([...user, { role: 'assistant', content: completion }], false);
  const ids = tok.encode(fullText).slice(0, maxLength);
  return { ids, nPrompt: Math.min(tok.encode(promptText).length, ids.length) };
}

/** Python's repr of a float as json.dumps writes it (integers keep a ".0"). */
const pyFloat = (v: number) => (Number.isInteger(v) ? v.toFixed(1) : String(v));

function writeAtomic(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export async function computeEntropyOnnx(
  model: OnnxCausalLm,
  tok: ChatTokenizer,
  o: EntropyOptions,
): Promise<Record<string, number>> {
  const records = o.records ?? (await readRecords(o.dataFile, o.dataFormat));
  const chosen = o.limit === undefined ? records : records.slice(0, o.limit);
  const seqs = chosen.map((r) => entropyTokens(tok, r.prompt, r.completion, o.maxLength));
  const vocab = model.vocabSize;
  const batchTokens = Math.max(1, Math.min(o.batchTokens, Math.floor(MAX_LOGITS_BYTES / (4 * vocab))));
  const results = new Map<number, number>();
  const started = Date.now();
  let done = 0;
  let tokens = 0;
  let scored = 0;
  o.progress?.(0, chosen.length);
  for (const batch of makeBatches(
    seqs.map((s) => s.ids.length),
    batchTokens,
  )) {
    o.stop?.();
    const { data, seq } = await model.logits(
      batch.map((i) => seqs[i].ids),
      tok.padTokenId,
    );
    batch.forEach((i, b) => {
      const [from, to] = scoredRows(seqs[i].ids.length, seqs[i].nPrompt, o.definition);
      let sum = 0;
      for (let t = from; t < to; t++) sum += rowEntropy(data, (b * seq + t) * vocab, vocab);
      const n = Math.max(0, to - from);
      scored += n;
      results.set(chosen[i].idx, n > 0 ? sum / n : 0);
      tokens += seqs[i].ids.length;
    });
    done += batch.length;
    o.progress?.(done, chosen.length, {
      tokensPerS: Math.round((tokens / Math.max((Date.now() - started) / 1000, 1e-3)) * 10) / 10,
    });
  }
  const idxs = [...results.keys()].sort((a, b) => a - b);
  writeAtomic(
    o.outputPath,
    idxs.map((idx) => `{"idx": ${idx}, "${o.field}": ${pyFloat(results.get(idx)!)}}\n`).join(''),
  );
  const values = [...results.values()];
  const seconds = Math.max((Date.now() - started) / 1000, 1e-3);
  return {
    samples: values.length,
    tokens,
    scored_tokens: scored,
    tokens_per_s: Math.round((tokens / seconds) * 10) / 10,
    mean_entropy: values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0,
  };
}

export interface EvalDatasetOptions extends EvalDatasetSpec {
  maxInputTokens: number;
  maxNewTokens: number;
}

export interface EvaluateOptions {
  label: string;
  outputDir: string;
  datasets: EvalDatasetOptions[];
  batchSize: number;
  systemPrompt?: string;
  enableThinking: boolean;
  progress?: Progress;
  stop?: StopCheck;
}

export interface EvalOutput {
  id: number;
  question: string;
  ground_truth: string;
  response: string;
  extracted: string | null;
  correct: boolean;
  output_tokens: number;
  truncated: boolean;
  /** Not in the torch backend's rows: the Python grader would have asked math-verify (counted incorrect here). */
  math_verify_needed: boolean;
}

/** Greedy pass@1 per dataset; writes <outputDir>/<name>.jsonl and summary.json like the evaluate kernel. */
export async function evaluateOnnx(
  model: OnnxCausalLm,
  tok: ChatTokenizer,
  o: EvaluateOptions,
): Promise<{
  metrics: Record<string, number>;
  rows: Record<string, EvalOutput[]>;
  newTokens: number;
  seconds: number;
}> {
  const system = o.systemPrompt ?? DEFAULT_EVAL_SYSTEM_PROMPT;
  // read and tokenize everything first: a bad row fails before any compute
  const work = [];
  for (const ds of o.datasets) {
    const rows = (await loadEvalRows(ds)).map((row) => {
      const text = tok.renderChat(
        [
          { role: 'system', content: system },
          { role: 'user', content: row.question },
        ],
        true,
        { enable_thinking: o.enableThinking },
      );
      const promptIds = tok.encode(text);
      if (promptIds.length > ds.maxInputTokens) {
        throw invalidInput(
          ds.path,
          row.line,
          'question',
          `prompt of dataset '${ds.name}' row ${row.id} has ${promptIds.length} tokens, more than max_input_tokens ${ds.maxInputTokens}`,
        );
      }
      return { ...row, promptIds };
    });
    work.push({ ds, rows });
  }
  mkdirSync(o.outputDir, { recursive: true });
  const total = work.reduce((s, w) => s + w.rows.length, 0);
  const started = Date.now();
  let done = 0;
  let newTokens = 0;
  const metrics: Record<string, number> = {};
  const summary: {
    model_path: string;
    label: string;
    backend: string;
    grader: string;
    datasets: Record<string, unknown>;
  } = {
    model_path: model.manifest.source.model_path,
    label: o.label,
    backend: 'onnx',
    grader: 'numeric (math-verify not available without Python)',
    datasets: {},
  };
  const allRows: Record<string, EvalOutput[]> = {};
  o.progress?.(0, total);
  for (const { ds, rows } of work) {
    const out: EvalOutput[] = new Array(rows.length);
    const order = rows.map((_, i) => i).sort((a, b) => rows[a].promptIds.length - rows[b].promptIds.length);
    for (let b = 0; b < order.length; b += o.batchSize) {
      o.stop?.();
      const batch = order.slice(b, b + o.batchSize).map((i) => rows[i]);
      const generated = await model.generate(
        batch.map((r) => r.promptIds),
        ds.maxNewTokens,
        tok.eosTokenIds,
        tok.padTokenId,
      );
      batch.forEach((row, k) => {
        const { ids, truncated } = generated[k];
        const response = tok.decode(ids, true);
        const g = grade(response, row.gold, row.question);
        out[row.id] = {
          id: row.id,
          question: row.question,
          ground_truth: row.gold,
          response,
          extracted: g.extracted,
          correct: g.correct,
          output_tokens: ids.length,
          truncated,
          math_verify_needed: g.mathVerifyNeeded,
        };
        newTokens += ids.length;
      });
      done += batch.length;
      o.progress?.(done, total, {
        tokensPerS: Math.round((newTokens / Math.max((Date.now() - started) / 1000, 1e-3)) * 10) / 10,
      });
    }
    writeAtomic(path.join(o.outputDir, `${ds.name}.jsonl`), out.map((r) => JSON.stringify(r) + '\n').join(''));
    const n = out.length;
    const correct = out.filter((r) => r.correct).length;
    const skipped = out.filter((r) => r.math_verify_needed).length;
    summary.datasets[ds.name] = {
      n,
      correct,
      pass_at_1: n ? correct / n : 0,
      truncated: out.filter((r) => r.truncated).length,
      math_verify_skipped: skipped,
    };
    metrics[`pass_at_1/${ds.name}`] = n ? correct / n : 0;
    metrics[`math_verify_skipped/${ds.name}`] = skipped;
    allRows[ds.name] = out;
  }
  writeAtomic(path.join(o.outputDir, 'summary.json'), JSON.stringify(summary, null, 2));
  const seconds = Math.max((Date.now() - started) / 1000, 1e-3);
  metrics.tokens_per_s = Math.round((newTokens / seconds) * 10) / 10;
  return { metrics, rows: allRows, newTokens, seconds };
}

export { OnnxCausalLm, loadChatTokenizer };
