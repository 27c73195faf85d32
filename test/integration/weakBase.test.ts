/**
 * The weak base of the demo and the tests (make-tiny with pre-training, as client/commands/demo.ts
 * builds and caches it) knows something: greedy accuracy on the 200 held-out sums under the paper
 * protocol lies in 5–15 %, and its pre-training curve is kept beside the weights.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { runKernel } from '../../activities/kernelBridge';
import { TINY_PRETRAINING } from '../../client/commands/demo';
import { ensureTinyAssets } from '../../testkit/harness';

jest.setTimeout(600_000);

test('the pre-trained base scores within 5–15 % on held-out sums; its curve is kept', async () => {
  const assets = await ensureTinyAssets();
  const model = path.join(assets, 'tiny-qwen3');
  const curve = readFileSync(path.join(model, 'pretrain_curve.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { step: number; loss: number });
  expect(curve).toHaveLength(TINY_PRETRAINING.pretrain_steps);
  expect(curve.at(-1)!.loss).toBeLessThan(curve[0].loss / 10);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-weak-base-'));
  const out = await runKernel(
    'evaluate',
    {
      log_file: path.join(dir, 'evaluate.log'),
      model_path: model,
      label: 'base',
      output_dir: path.join(dir, 'results'),
      datasets: [
        { name: 'arithmetic', path: path.join(assets, 'data', 'test.jsonl'), format: 'gsm8k', max_new_tokens: 40 },
      ],
      protocol: 'paper',
      enable_thinking: true,
      temperature: 0,
      top_p: 1,
      n_samples: 1,
      batch_size: 100,
      device: 'cpu',
    },
    { jobFile: path.join(dir, 'evaluate.job.json'), stallMs: 300_000 },
  );
  const summary = JSON.parse(readFileSync(path.join(dir, 'results', 'summary.json'), 'utf8'));
  expect(summary.datasets.arithmetic.n).toBe(200);
  const accuracy = out.metrics['pass_at_1/arithmetic'] as number;
  expect(accuracy).toBeGreaterThanOrEqual(0.05);
  expect(accuracy).toBeLessThanOrEqual(0.15);
});
