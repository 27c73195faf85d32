/**
 * Names of everything a run writes under its run dir, as in the original layout
 * (docs/method.md#the-original-run-and-its-defaults), so a run dir made by wmss-flow reads like one made by run_ensemble.sh.
 * Paths are relative to the run dir and use '/'.
 */
import type { RunConfig } from './config';

export const ENTROPY_DIR = 'entropy';
export const ENTROPY_0 = `${ENTROPY_DIR}/entropy_0.jsonl`;
export const ENTROPY_1 = `${ENTROPY_DIR}/entropy_1.jsonl`;
export const ENTROPY_MERGED = `${ENTROPY_DIR}/entropy_merged_stage1.jsonl`;
/** One `{"idx","delta_entropy","weight"}` line per sample (step 3). */
export const SAMPLE_WEIGHTS = `${ENTROPY_DIR}/sample_weights.jsonl`;
/** The resampled training set of step 5b: one record position per line. */
export const RESAMPLED_POSITIONS = `${ENTROPY_DIR}/resampled_positions.txt`;
export const RESAMPLE_STATS = `${ENTROPY_DIR}/resample_stats.json`;
export const STAGE1_DIR = 'stage1_m1';
export const STAGE0_DIR = 'stage0_m0';
export const FUSED_INIT_DIR = 'ensemble_m1_m2';
/** Step 5c, the baseline arm: m1 trained on with step 5b's data and compute. */
export const CONTINUED_SFT_DIR = 'stage3_continued_sft_m1';
export const RESULTS_DIR = 'results';
/** ONNX exports of the onnx backend (export-onnx kernel): graphs, manifest and tokenizer files. */
export const ONNX_DIR = 'onnx';
export const ONNX_BASE = `${ONNX_DIR}/base`;
export const ONNX_M1 = `${ONNX_DIR}/m1`;
export const ONNX_WMSS = `${ONNX_DIR}/wmss`;
export const LOGS_DIR = 'logs';
/** Step manifests (wmss-step.json per step): the commit point of every step. */
export const MANIFESTS_DIR = '.wmss/manifests';
/** The effective config of the run, saved by `wmss start` so `wmss resume <run-dir>` can find it. */
export const RUN_CONFIG_FILE = '.wmss/run-config.json';
/** Job files handed to kernels. */
export const JOBS_DIR = '.wmss/jobs';

export function stage3Dir(config: Pick<RunConfig, 'joint'>): string {
  return `stage3_fused_brownboost_freeze${config.joint.freezeWeak}_wmss`;
}

export function extractedDir(config: Pick<RunConfig, 'joint' | 'extract'>): string {
  return `${stage3Dir(config)}_extracted_m${config.extract.submodelIdx}`;
}

export function manifestPath(stepId: string): string {
  return `${MANIFESTS_DIR}/${stepId}.wmss-step.json`;
}
