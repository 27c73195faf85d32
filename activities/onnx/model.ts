/**
 * An exported model (the output of the `export-onnx` kernel) opened with onnxruntime-node:
 * manifest checks, one InferenceSession per graph file reused across batches and steps, and
 * the two computations of the onnx backend: logits without KV cache (entropy) and greedy
 * generation with KV cache (evaluate).
 *
 * Errors are non-retryable and name the file: a graph whose size or sha256 differs from the
 * manifest, or whose inputs/outputs are not the manifest's, is ArtifactConflict; a file that
 * onnxruntime cannot load, or a manifest that is not one, is InvalidInput.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ApplicationFailure } from '@temporalio/common';
import { artifactConflict, invalidInput } from '../store/failures';
import { sha256File } from '../store/digest';
import { readInputTextSync } from '../store/inputFiles';

export const ONNX_FORMAT = 'wmss-onnx/1';
export const MANIFEST_FILE = 'manifest.json';

interface IoSpec {
  name: string;
  dtype: string;
  shape: (string | number)[];
}
interface GraphSpec {
  file: string;
  sha256: string;
  size: number;
  inputs: IoSpec[];
  outputs: IoSpec[];
}
export interface OnnxManifest {
  format: string;
  opset: number;
  dtype: string;
  source: { model_path: string; sha256: string; architecture: string };
  model: { num_layers: number; num_kv_heads: number; head_dim: number; vocab_size: number };
  graphs: { no_cache: GraphSpec; with_past: GraphSpec };
  validation: Record<string, unknown>;
}

export function readOnnxManifest(dir: string): OnnxManifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!existsSync(file)) throw invalidInput(file, undefined, undefined, 'missing: not an export-onnx output directory');
  let m: OnnxManifest;
  try {
    m = JSON.parse(readInputTextSync(file)) as OnnxManifest;
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(file, undefined, undefined, `not valid JSON: ${(err as Error).message}`);
  }
  if (m?.format !== ONNX_FORMAT)
    throw invalidInput(file, undefined, 'format', `expected ${ONNX_FORMAT}, got ${JSON.stringify(m?.format)}`);
  for (const key of ['no_cache', 'with_past'] as const) {
    const g = m.graphs?.[key];
    if (
      !g ||
      typeof g.file !== 'string' ||
      typeof g.sha256 !== 'string' ||
      !Array.isArray(g.inputs) ||
      !Array.isArray(g.outputs)
    ) {
      throw invalidInput(file, undefined, `graphs.${key}`, 'missing or malformed');
    }
  }
  return m;
}

async function sha256Of(file: string): Promise<string> {
  return sha256File(file);
}

/** Graph files already hashed in this process, by path|size|mtime: a 30 GB graph is hashed once. */
const verified = new Set<string>();
/** Open sessions by path|size|mtime|threads, most recently used last. */
const sessions = new Map<string, Promise<ort.InferenceSession>>();
const MAX_SESSIONS = 4;

async function openGraph(dir: string, spec: GraphSpec, threads: number): Promise<ort.InferenceSession> {
  const file = path.join(dir, spec.file);
  const stat = statSync(file, { throwIfNoEntry: false });
  if (!stat) throw artifactConflict(file, 'the manifest lists this graph but the file is missing');
  if (stat.size !== spec.size)
    throw artifactConflict(
      file,
      `has ${stat.size} bytes, the manifest says ${spec.size}: the file was changed or truncated after the export; re-run the export step`,
    );
  const id = `${file}|${stat.size}|${stat.mtimeMs}`;
  if (!verified.has(id)) {
    const digest = await sha256Of(file);
    if (digest !== spec.sha256)
      throw artifactConflict(
        file,
        `sha256 ${digest.slice(0, 12)}… differs from the manifest's ${spec.sha256.slice(0, 12)}…: the file is corrupt or belongs to another export; re-run the export step`,
      );
    verified.add(id);
  }
  const key = `${id}|${threads}`;
  let session = sessions.get(key);
  if (session) {
    sessions.delete(key); // re-insert as most recently used
  } else {
    session = ort.InferenceSession.create(file, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    }).catch((err: Error) => {
      sessions.delete(key);
      throw invalidInput(
        file,
        undefined,
        undefined,
        `onnxruntime cannot load this graph: ${err.message.split('\n')[0]}`,
      );
    });
  }
  sessions.set(key, session);
  while (sessions.size > MAX_SESSIONS) {
    const [oldKey, old] = sessions.entries().next().value as [string, Promise<ort.InferenceSession>];
    sessions.delete(oldKey);
    void old.then((s) => s.release()).catch(() => undefined);
  }
  const s = await session;
  const names = (list: IoSpec[]) => list.map((x) => x.name);
  const same = (a: readonly string[], b: string[]) =>
    a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
  if (!same(s.inputNames, names(spec.inputs)) || !same(s.outputNames, names(spec.outputs))) {
    throw artifactConflict(
      file,
      `its inputs/outputs (${s.inputNames.join(', ')} → ${s.outputNames.join(', ')}) are not the manifest's (${names(spec.inputs).join(', ')} → ${names(spec.outputs).join(', ')})`,
    );
  }
  return s;
}

/** Closes every cached session (tests, worker shutdown). */
export async function releaseOnnxSessions(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  await Promise.all(all.map((p) => p.then((s) => s.release()).catch(() => undefined)));
}

const int64 = (values: number[], dims: number[]) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (v) => BigInt(v)),
    dims,
  );

export class OnnxCausalLm {
  private constructor(
    readonly dir: string,
    readonly manifest: OnnxManifest,
    private readonly threads: number,
  ) {}

  /** Opens the export in `dir`; `threads` is onnxruntime's intra-op thread count. */
  static open(dir: string, threads: number): OnnxCausalLm {
    return new OnnxCausalLm(dir, readOnnxManifest(dir), Math.max(1, Math.floor(threads)));
  }

  get vocabSize(): number {
    return this.manifest.model.vocab_size;
  }

  /** Loads (and checks) both graphs now, so a bad file fails before any work. */
  async check(which: ('no_cache' | 'with_past')[] = ['no_cache', 'with_past']): Promise<void> {
    for (const g of which) await openGraph(this.dir, this.manifest.graphs[g], this.threads);
  }

  /** Logits [batch, seq, vocab] of right-padded sequences (no KV cache). */
  async logits(seqs: number[][], padId: number): Promise<{ data: Float32Array; seq: number; vocab: number }> {
    const session = await openGraph(this.dir, this.manifest.graphs.no_cache, this.threads);
    const longest = Math.max(...seqs.map((s) => s.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const s of seqs) {
      for (let t = 0; t < longest; t++) {
        ids.push(t < s.length ? s[t] : padId);
        mask.push(t < s.length ? 1 : 0);
      }
    }
    const out = await session.run({
      input_ids: int64(ids, [seqs.length, longest]),
      attention_mask: int64(mask, [seqs.length, longest]),
    });
    const logits = out.logits;
    const vocab = logits.dims[2];
    if (vocab !== this.vocabSize)
      throw artifactConflict(
        path.join(this.dir, this.manifest.graphs.no_cache.file),
        `produces ${vocab} logits per position, the manifest says ${this.vocabSize}`,
      );
    return { data: logits.data as Float32Array, seq: longest, vocab };
  }

  /**
   * Greedy continuation of each prompt with the KV cache: left padding, position ids from the
   * attention mask (as transformers' generate), a finished row is fed the pad token, and the
   * loop ends when every row has produced an eos or after maxNewTokens. Per prompt: the new
   * tokens up to and including the first eos, and whether it ran out of tokens instead.
   */
  async generate(
    prompts: number[][],
    maxNewTokens: number,
    eosIds: number[],
    padId: number,
  ): Promise<{ ids: number[]; truncated: boolean }[]> {
    const session = await openGraph(this.dir, this.manifest.graphs.with_past, this.threads);
    const { num_layers: layers, num_kv_heads: heads, head_dim: headDim } = this.manifest.model;
    const batch = prompts.length;
    const longest = Math.max(...prompts.map((p) => p.length));
    const ids: number[] = [];
    let mask: number[][] = prompts.map(() => []);
    const pos: number[] = [];
    prompts.forEach((p, b) => {
      const padding = longest - p.length;
      let seen = 0;
      for (let t = 0; t < longest; t++) {
        const real = t >= padding;
        ids.push(real ? p[t - padding] : padId);
        mask[b].push(real ? 1 : 0);
        pos.push(real ? seen++ : 1);
      }
    });
    let lastPos = prompts.map((p) => p.length - 1);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: int64(ids, [batch, longest]),
      attention_mask: int64(mask.flat(), [batch, longest]),
      position_ids: int64(pos, [batch, longest]),
    };
    for (let i = 0; i < layers; i++) {
      for (const kv of ['key', 'value'])
        feeds[`past.${i}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [batch, heads, 0, headDim]);
    }
    const eos = new Set(eosIds);
    const generated: number[][] = prompts.map(() => []);
    const finished = prompts.map(() => false);
    for (let step = 0; step < maxNewTokens && !finished.every(Boolean); step++) {
      const out = await session.run(feeds);
      const logits = out.logits;
      const [, seq, vocab] = logits.dims;
      const data = logits.data as Float32Array;
      const next: number[] = [];
      for (let b = 0; b < batch; b++) {
        let token = padId;
        if (!finished[b]) {
          const base = (b * seq + seq - 1) * vocab;
          let best = 0;
          for (let v = 1; v < vocab; v++) if (data[base + v] > data[base + best]) best = v; // first maximum, as argmax
          token = best;
          generated[b].push(token);
          if (eos.has(token)) finished[b] = true;
        }
        next.push(token);
      }
      mask = mask.map((m) => [...m, 1]);
      lastPos = lastPos.map((p) => p + 1);
      feeds.input_ids = int64(next, [batch, 1]);
      feeds.attention_mask = int64(mask.flat(), [batch, mask[0].length]);
      feeds.position_ids = int64(lastPos, [batch, 1]);
      for (let i = 0; i < layers; i++) {
        for (const kv of ['key', 'value']) feeds[`past.${i}.${kv}`] = out[`present.${i}.${kv}`];
      }
    }
    return generated.map((g, b) => ({ ids: g, truncated: !finished[b] }));
  }
}
