/** Builds safetensors files and model dirs for tests, independently of the code under test. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface FixtureTensor {
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** A file with the given tensors in order; `header` edits let tests write lying headers. */
export function writeSafetensorsFixture(
  file: string,
  tensors: Record<string, FixtureTensor>,
  edit?: (header: Record<string, any>) => void,
  truncateData = 0,
): void {
  const header: Record<string, any> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  edit?.(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.concat(Object.values(tensors).map((t) => t.data));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, Buffer.concat([len, json, data.subarray(0, data.length - truncateData)]));
}

export function f32(values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

/** bf16 bytes of values that bf16 holds exactly (top half of their f32 bits). */
export function bf16(values: number[]): Buffer {
  const words = new Uint32Array(new Float32Array(values).buffer);
  return Buffer.from(Uint16Array.from(words, (w) => w >>> 16).buffer);
}

export function readF32(buf: Buffer): number[] {
  return Array.from(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)));
}

export interface TinyModelOptions {
  hidden?: number;
  vocab?: number;
  tie?: boolean;
  withLmHead?: boolean;
  /** Added to every weight value so two models differ. */
  shift?: number;
  extraConfig?: Record<string, unknown>;
}

/** A 1-layer "qwen3" model dir with bf16 weights, tokenizer files and a dotfile. */
export function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Record<string, FixtureTensor> {
  const hidden = opts.hidden ?? 4;
  const vocab = opts.vocab ?? 8;
  const shift = opts.shift ?? 0;
  const fill = (n: number, base: number) => Array.from({ length: n }, (_, i) => base + i + shift);
  const tensors: Record<string, FixtureTensor> = {
    'model.embed_tokens.weight': { dtype: 'BF16', shape: [vocab, hidden], data: bf16(fill(vocab * hidden, 0)) },
    'model.layers.0.mlp.up_proj.weight': {
      dtype: 'BF16',
      shape: [hidden, hidden],
      data: bf16(fill(hidden * hidden, 100)),
    },
    'model.norm.weight': { dtype: 'BF16', shape: [hidden], data: bf16(fill(hidden, 200)) },
  };
  if (opts.withLmHead ?? true)
    tensors['lm_head.weight'] = { dtype: 'BF16', shape: [vocab, hidden], data: bf16(fill(vocab * hidden, 300)) };
  writeSafetensorsFixture(path.join(dir, 'model.safetensors'), tensors);
  const config = {
    model_type: 'qwen3',
    architectures: ['Qwen3ForCausalLM'],
    hidden_size: hidden,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    intermediate_size: hidden,
    vocab_size: vocab,
    head_dim: 2,
    tie_word_embeddings: opts.tie ?? false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'bfloat16',
    ...opts.extraConfig,
  };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(path.join(dir, 'tokenizer.json'), '{"model":{}}');
  writeFileSync(path.join(dir, 'tokenizer_config.json'), '{}');
  writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id":2}');
  writeFileSync(path.join(dir, '.hidden'), 'x');
  return tensors;
}
