/**
 * The onnx backend against the PyTorch kernels on CPU, same model, same machine, same run:
 * entropy scoring tokens/s (no KV cache) and greedy generation tokens/s (KV cache), each with
 * the same number of CPU threads. The model is a make-tiny model larger than the test one
 * (hidden 256, 4 layers, vocabulary 1024) so the figures measure the model, not the overhead.
 * Both sides time only their compute loop (model loading and tokenisation excluded).
 * Run: npx tsc -p . && node dist/bench/onnx.js [threads]   → bench/results/onnx.json
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runKernel } from '../activities/kernelBridge';
import { runBench, writeBenchResult } from '../testkit/benchResult';
import { computeEntropyOnnx, evaluateOnnx } from '../activities/onnx/compute';
import { OnnxCausalLm, releaseOnnxSessions } from '../activities/onnx/model';
import { loadChatTokenizer } from '../activities/onnx/tokenizer';

const SHAPE = {
  hidden_size: 256,
  num_layers: 4,
  num_heads: 4,
  num_kv_heads: 2,
  intermediate_size: 768,
  vocab_size: 1024,
};
const ENTROPY = { records: 512, maxLength: 128, batchTokens: 4096 };
const GENERATION = { rows: 64, batchSize: 16, maxNewTokens: 32 };

async function main(): Promise<void> {
  const threads = Number(process.argv[2] ?? Math.min(2, os.availableParallelism()));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-bench-onnx-'));
  const kernel = (verb: Parameters<typeof runKernel>[0], name: string, job: Record<string, unknown>) =>
    runKernel(verb, { log_file: path.join(dir, `${name}.log`), device: 'cpu', threads, ...job } as never, {
      jobFile: path.join(dir, `${name}.job.json`),
      stallMs: 600_000,
    });
  try {
    const modelDir = path.join(dir, 'model');
    const made = await kernel('make-tiny', 'make-tiny', {
      output_dir: modelDir,
      data_dir: path.join(dir, 'data'),
      train_samples: ENTROPY.records,
      test_samples: GENERATION.rows,
      ...SHAPE,
    });
    const onnxDir = path.join(dir, 'onnx');
    await kernel('export-onnx', 'export', { model_path: modelDir, output_dir: onnxDir });
    const trainFile = path.join(dir, 'data', 'train.jsonl');
    const testFile = path.join(dir, 'data', 'test.jsonl');

    const torchEntropy = await kernel('entropy', 'entropy', {
      model_path: modelDir,
      data_file: trainFile,
      data_format: 'messages',
      output_path: path.join(dir, 'entropy-torch.jsonl'),
      field: 'entropy_0',
      definition: 'shifted',
      max_length: ENTROPY.maxLength,
      batch_tokens: ENTROPY.batchTokens,
      vocab_chunk: 1024,
      dtype: 'float32',
    });
    const model = OnnxCausalLm.open(onnxDir, threads);
    const tok = loadChatTokenizer(onnxDir);
    await model.check();
    const onnxEntropy = await computeEntropyOnnx(model, tok, {
      dataFile: trainFile,
      dataFormat: 'messages',
      outputPath: path.join(dir, 'entropy-onnx.jsonl'),
      field: 'entropy_0',
      definition: 'shifted',
      maxLength: ENTROPY.maxLength,
      batchTokens: ENTROPY.batchTokens,
    });

    const dataset = {
      name: 'arith',
      path: testFile,
      format: 'gsm8k' as const,
      max_input_tokens: 512,
      max_new_tokens: GENERATION.maxNewTokens,
      limit: GENERATION.rows,
    };
    const torchEval = await kernel('evaluate', 'evaluate', {
      model_path: modelDir,
      label: 'bench',
      output_dir: path.join(dir, 'eval-torch'),
      datasets: [dataset],
      protocol: 'lenient',
      batch_size: GENERATION.batchSize,
      enable_thinking: true,
    });
    const onnxEval = await evaluateOnnx(model, tok, {
      label: 'bench',
      outputDir: path.join(dir, 'eval-onnx'),
      batchSize: GENERATION.batchSize,
      enableThinking: true,
      datasets: [
        {
          name: 'arith',
          path: testFile,
          format: 'gsm8k',
          maxInputTokens: 512,
          maxNewTokens: GENERATION.maxNewTokens,
          limit: GENERATION.rows,
        },
      ],
    });

    const figures = {
      entropy_tokens_per_s: {
        torch_cpu: Number(torchEntropy.metrics.tokens_per_s),
        onnxruntime_node: onnxEntropy.tokens_per_s,
      },
      generation_tokens_per_s: {
        torch_cpu: Number(torchEval.metrics.tokens_per_s),
        onnxruntime_node: onnxEval.metrics.tokens_per_s,
      },
    };
    const ratio = (f: { torch_cpu: number; onnxruntime_node: number }) =>
      Math.round((f.onnxruntime_node / f.torch_cpu) * 100) / 100;
    console.log(`entropy     torch (Python kernel, CPU): ${figures.entropy_tokens_per_s.torch_cpu} tokens/s`);
    console.log(`entropy     onnxruntime-node (CPU):     ${figures.entropy_tokens_per_s.onnxruntime_node} tokens/s`);
    console.log(`generation  torch (Python kernel, CPU): ${figures.generation_tokens_per_s.torch_cpu} new tokens/s`);
    console.log(
      `generation  onnxruntime-node (CPU):     ${figures.generation_tokens_per_s.onnxruntime_node} new tokens/s`,
    );
    console.log(
      `ratio onnx/torch: entropy ${ratio(figures.entropy_tokens_per_s)}×, generation ${ratio(figures.generation_tokens_per_s)}×  (${threads} threads each)`,
    );
    writeBenchResult('onnx', {
      bench: 'onnx',
      date: new Date().toISOString(),
      host: { cpus: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version },
      threads,
      model: { ...SHAPE, parameters: made.metrics.parameters },
      entropy: ENTROPY,
      generation: GENERATION,
      figures,
      ratio: { entropy: ratio(figures.entropy_tokens_per_s), generation: ratio(figures.generation_tokens_per_s) },
    });
  } finally {
    await releaseOnnxSessions();
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);
