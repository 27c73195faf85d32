/** The onnx backend's pure parts: step selection by config, batching, entropy of a row, grading. */
import { RunConfig } from '../../pipeline/config';
import { activeSteps, stepQueueKind, stepRow } from '../../pipeline/steps';
import { makeBatches, rowEntropy, scoredRows } from '../../activities/onnx/compute';
import { extractAnswer, grade, lastBoxed, toNumber } from '../../activities/onnx/grading';

const base = { runName: 'x', runDir: '/r', baseModel: '/m', dataFile: '/d.jsonl' };

test('the ONNX export steps run only for configs with an onnx backend, and their steps go to the onnx queue', () => {
  const torch = RunConfig.parse(base);
  expect(activeSteps(torch).map((s) => s.id)).not.toEqual(expect.arrayContaining(['onnxBase']));
  expect(activeSteps(torch).some((s) => s.id.startsWith('onnx'))).toBe(false);
  expect(stepQueueKind(stepRow('entropy0'), torch)).toBe('gpu');

  const entropyOnly = RunConfig.parse({ ...base, entropy: { backend: 'onnx' } });
  expect(
    activeSteps(entropyOnly)
      .filter((s) => s.id.startsWith('onnx'))
      .map((s) => s.id),
  ).toEqual(['onnxBase', 'onnxM1']);
  expect(
    ['entropy0', 'entropy1', 'evaluate'].map((id) => stepQueueKind(stepRow(id as 'entropy0'), entropyOnly)),
  ).toEqual(['onnx', 'onnx', 'gpu']);

  const evalOnly = RunConfig.parse({ ...base, eval: { backend: 'onnx', protocol: 'lenient', baselines: false } });
  expect(
    activeSteps(evalOnly)
      .filter((s) => s.id.startsWith('onnx'))
      .map((s) => s.id),
  ).toEqual(['onnxWmss']);
  expect(stepQueueKind(stepRow('evaluate'), evalOnly)).toBe('onnx');
  expect(stepQueueKind(stepRow('onnxWmss'), evalOnly)).toBe('gpu'); // the export needs Python
});

test('scored rows and batches follow the entropy kernel', () => {
  expect(scoredRows(10, 4, 'shifted')).toEqual([3, 9]);
  expect(scoredRows(10, 4, 'repo')).toEqual([4, 10]);
  expect(scoredRows(5, 0, 'shifted')).toEqual([0, 4]);
  expect(makeBatches([5, 1, 3, 5, 2], 10)).toEqual([
    [1, 4, 2],
    [0, 3],
  ]);
});

test('row entropy: uniform = log V, one-hot ≈ 0, shift-invariant', () => {
  expect(rowEntropy(new Float32Array([0, 0, 0, 0]), 0, 4)).toBeCloseTo(Math.log(4), 12);
  expect(rowEntropy(new Float32Array([9, 1000, 0, 0]), 1, 2)).toBeCloseTo(0, 12);
  const a = rowEntropy(new Float32Array([1, 2, 3]), 0, 3);
  expect(rowEntropy(new Float32Array([101, 102, 103]), 0, 3)).toBeCloseTo(a, 6);
});

test('grading: extraction and numbers as grading.py', () => {
  expect(lastBoxed('a \\boxed{1} b \\boxed{\\frac{1}{2}} c')).toBe('\\frac{1}{2}');
  expect(lastBoxed('\\boxed{1} \\boxed{2')).toBe('1');
  expect(extractAnswer('x <answer> 7 </answer> 9')).toBe('7');
  expect(extractAnswer('1, then 2,000.5')).toBe('2,000.5');
  expect(toNumber('$1,234.')).toBe(1234);
  expect(toNumber('\\frac{3}{4}')).toBe(0.75);
  expect(toNumber('12%')).toBe(12);
  expect(toNumber('1.2.3')).toBeNull();
  expect(grade('<answer>\\boxed{19}</answer>', '19')).toEqual({
    correct: true,
    extracted: '19',
    mathVerifyNeeded: false,
  });
  expect(grade('\\boxed{x=19}', '19').mathVerifyNeeded).toBe(true);
  expect(grade('The answer is (b)', 'B', '(A) 1 (B) 2').correct).toBe(true);
});
