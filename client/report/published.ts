/**
 * The paper's published numbers, shown in the report for context (not comparable to a tiny or
 * partial run). Transcribed from WMSS-SPEC.md §15.2, which quotes Table 1 of paper v2.
 */

export const PUBLISHED_SOURCE =
  'Weak-Driven Learning (WMSS), paper v2, arXiv 2602.08222v2 (8 Jun 2026), Table 1: pass@1 (%), greedy decoding; as transcribed in WMSS-SPEC.md §15.2. Training: 8×H800, lr 1e-5, max length 4096, global batch 512, α/β/γ = 0.1/0.8/0.1, λ = 0.5; SFT = 2 epochs, WMSS = 1 SFT epoch + 1 joint epoch.';

export const MATH_COLUMNS = ['AIME25', 'MATH500', 'AMC23', 'AQuA', 'GSM8K', 'MAWPS', 'SVAMP', 'Avg'] as const;
export const CODE_COLUMNS = ['HE+', 'MBPP+', 'BCB', 'LCB', 'Avg'] as const;

export interface PublishedRow {
  base: string;
  method: string;
  math: number[];
  code: number[];
}

const row = (base: string, method: string, math: string, code: string): PublishedRow => ({
  base,
  method,
  math: math.split('/').map(Number),
  code: code.split('/').map(Number),
});

export const PUBLISHED_TABLE1: PublishedRow[] = [
  row('Qwen3-4B-Base', 'SFT', '13.3/66.2/47.5/61.8/83.9/91.2/85.5/64.2', '73.8/64.0/38.5/17.8/48.5'),
  row('Qwen3-4B-Base', 'UNDIAL', '13.3/63.2/40.0/55.1/82.9/90.8/84.1/61.3', '72.6/66.8/39.6/17.5/49.1'),
  row('Qwen3-4B-Base', 'NEFTune', '16.7/68.2/42.5/59.1/86.7/93.7/87.7/64.9', '75.0/66.9/40.3/16.0/49.6'),
  row('Qwen3-4B-Base', 'SPIN', '20.0/70.8/47.5/66.9/85.8/87.4/87.6/66.6', '76.2/66.7/39.1/18.8/50.2'),
  row('Qwen3-4B-Base', 'SSB', '10.0/70.6/45.0/66.1/87.1/95.4/88.8/66.1', '78.0/67.4/42.5/18.0/51.5'),
  row('Qwen3-4B-Base', 'WMSS', '20.0/71.4/50.0/67.7/88.5/96.2/90.3/69.1', '78.7/68.2/43.5/21.0/52.9'),
  row('Qwen3-8B-Base', 'SFT', '16.7/72.2/45.0/63.0/87.5/95.0/88.6/66.9', '80.5/69.2/44.5/21.0/53.8'),
  row('Qwen3-8B-Base', 'UNDIAL', '10.0/71.6/47.5/66.9/89.9/96.6/91.2/67.6', '79.9/69.4/45.7/21.5/54.1'),
  row('Qwen3-8B-Base', 'NEFTune', '16.7/73.8/40.0/71.3/90.3/97.5/91.5/68.7', '81.1/70.4/45.9/21.0/54.6'),
  row('Qwen3-8B-Base', 'SPIN', '16.7/72.4/47.5/78.3/88.8/95.4/92.7/70.3', '81.7/70.0/46.3/21.8/55.0'),
  row('Qwen3-8B-Base', 'SSB', '16.7/74.6/52.5/76.4/89.3/93.3/93.0/70.8', '81.1/66.9/46.0/20.8/53.7'),
  row('Qwen3-8B-Base', 'WMSS', '20.0/75.4/52.5/77.2/92.5/97.9/94.0/72.8', '84.1/71.4/47.1/22.3/56.2'),
  row('Qwen2.5-3B', 'SFT', '3.3/47.0/20.0/51.2/76.6/91.6/84.4/53.4', '58.5/59.0/27.5/11.0/39.0'),
  row('Qwen2.5-3B', 'UNDIAL', '3.3/50.8/17.5/49.2/77.4/91.2/83.2/53.2', '56.1/59.5/28.9/12.5/39.3'),
  row('Qwen2.5-3B', 'NEFTune', '3.3/51.2/22.5/47.2/78.1/90.3/84.7/53.9', '56.1/59.5/29.6/11.5/39.2'),
  row('Qwen2.5-3B', 'SPIN', '3.3/51.6/20.0/49.6/77.4/91.2/86.1/54.1', '59.8/60.6/31.4/12.0/41.0'),
  row('Qwen2.5-3B', 'SSB', '3.3/51.4/22.5/52.0/79.9/92.0/84.9/55.1', '54.3/52.9/30.4/9.3/36.7'),
  row('Qwen2.5-3B', 'WMSS', '6.7/52.0/22.5/53.9/80.9/92.4/86.0/56.3', '62.2/61.9/32.7/12.5/42.3'),
];
