/** A kernel's `detail` line (e.g. evaluate's current set) reaches `wmss status` and sums over shards. */
import { sumProgress } from '../../activities/deviceShards';
import { describeProgress } from '../../client/commands/status';
import type { StepProgress } from '../../pipeline/steps';

const part = (done: number, detail?: string): StepProgress => ({
  done,
  total: 10,
  unit: 'samples',
  tokensPerS: 100,
  detail,
  updatedAt: '2026-12-01T00:00:00Z',
});

test('status shows the detail after the counts', () => {
  expect(describeProgress(part(5, 'math500: 5/10 rows · 900 tokens · ETA 0m30s'))).toBe(
    '5/10 samples (50%) · 100 tok/s · math500: 5/10 rows · 900 tokens · ETA 0m30s',
  );
  expect(describeProgress(part(5))).toBe('5/10 samples (50%) · 100 tok/s');
});

test("shards: the first shard's detail, marked as one of several", () => {
  const sum = sumProgress([part(3, 'gsm8k: 3/10 rows'), part(4, 'gsm8k: 4/10 rows')]);
  expect(sum).toMatchObject({ done: 7, total: 20, tokensPerS: 200, detail: 'gsm8k: 3/10 rows (device 1 of 2)' });
  expect(sumProgress([part(3, 'gsm8k: 3/10 rows')]).detail).toBe('gsm8k: 3/10 rows');
  expect(sumProgress([part(3), part(4)]).detail).toBeUndefined();
});
