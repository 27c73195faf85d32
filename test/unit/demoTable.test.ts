/** The demo's accuracy table: Wilson intervals against hand-computed values, row order, cells. */
import { accuracyTable, wilsonInterval } from '../../client/commands/demoTable';

test('Wilson score intervals match hand-computed values', () => {
  // 5 of 10: centre 0.5, half-width 1.96/1.38416 × sqrt(0.025 + 0.009604) = 0.26342
  const [lo, hi] = wilsonInterval(5, 10);
  expect(lo).toBeCloseTo(0.23659, 4);
  expect(hi).toBeCloseTo(0.76341, 4);
  // 0 of 10: [0, z²/n / (1 + z²/n)] = [0, 0.38416 / 1.38416]
  const [lo0, hi0] = wilsonInterval(0, 10);
  expect(lo0).toBe(0);
  expect(hi0).toBeCloseTo(0.27753, 4);
  // 16 of 200 (8 %): [5.0 %, 12.6 %]
  const [a, b] = wilsonInterval(16, 200);
  expect([a, b].map((x) => Number((100 * x).toFixed(1)))).toEqual([5.0, 12.6]);
  expect(() => wilsonInterval(3, 0)).toThrow(RangeError);
  expect(() => wilsonInterval(11, 10)).toThrow(RangeError);
});

test('rows come base, m1, continued SFT, WMSS; the interval only where n is known and asked for', () => {
  const lines = accuracyTable(
    {
      wmss: { arithmetic: 0.1, gsm8k: 0 },
      m1: { arithmetic: 0.25, gsm8k: 0.25 },
      continued_sft: { arithmetic: 0.2 },
      base: { arithmetic: 0.08, gsm8k: 0 },
    },
    (m): Record<string, number> => (m === 'm1' ? { arithmetic: 200, gsm8k: 4 } : { arithmetic: 200 }),
    ['arithmetic'],
  );
  expect(lines.map((l) => l.trim().split(/\s+/)[0])).toEqual(['model', 'base', 'm1', 'continued_sft', 'wmss']);
  expect(lines[1]).toContain('8.0% [5.0–12.6] n=200');
  expect(lines[2]).toMatch(/25\.0% \[\d+\.\d–\d+\.\d\] n=200 +25\.0%$/);
  expect(lines[3]).toMatch(/20\.0% .* –$/);
});
