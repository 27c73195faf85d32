/**
 * Every ApplicationFailure type wmss-flow raises, in one place. The step table's retry
 * policies list the non-retryable ones; the kernel bridge maps exit codes onto these.
 * Also the helpers that read a failure back (failureInfo, isScheduleToStartTimeout). Workflow code
 * imports this file, so it stays deterministic: no I/O, no Node built-ins.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/common';

export const ErrorTypes = {
  /** A run config failed its schema. Fix the config; retrying cannot help. */
  InvalidConfig: 'InvalidConfig',
  /** A data file, entropy file, model directory or job is malformed (names file, line, field). */
  InvalidInput: 'InvalidInput',
  /** An existing artifact does not match its manifest, or a path escapes the run dir. */
  ArtifactConflict: 'ArtifactConflict',
  /** The kernel ran out of (GPU) memory; the retry may use a smaller micro-batch. */
  KernelOutOfMemory: 'KernelOutOfMemory',
  /** The kernel process died or exited with an unexpected code. */
  KernelCrashed: 'KernelCrashed',
  /** The kernel stopped printing progress while alive (hang). */
  KernelStalled: 'KernelStalled',
  /** The kernel stopped on SIGTERM after saving its state (cancellation or shutdown). */
  KernelTerminated: 'KernelTerminated',
  /** The Python environment or a kernel file is missing on this worker. */
  WorkerMisconfigured: 'WorkerMisconfigured',
  /**
   * With local storage a step must run on the host that holds its inputs, and no worker polled
   * that host's task queue within placement.hostTimeout: the host or its worker is gone.
   */
  HostUnavailable: 'HostUnavailable',
  /**
   * Another workflow that is still open holds the run dir's lock (`<runDir>/.wmss/lock/`): two runs
   * must not write the same artifacts. Not retried: the other run may last days; wait for it,
   * cancel it, or pick another runDir.
   */
  RunDirLocked: 'RunDirLocked',
  /**
   * The file system of the run dir has less free space than the step's estimate (model size ×
   * copies it writes, plus disk.headroomGB). Not retried: space does not come back on a retry
   * schedule of minutes; free space (or set keepCheckpoints) and `wmss resume`, which reuses
   * every finished step.
   */
  InsufficientDisk: 'InsufficientDisk',
  /**
   * A write was refused: the run dir (or a path in it) is on a read-only file system (EROFS) or
   * the worker's user may not write there (EACCES, EPERM). Not retried: permissions and mounts do
   * not change on a retry schedule; fix them and `wmss resume`.
   */
  NotWritable: 'NotWritable',
  /**
   * Training produced a NaN/Inf loss, gradient norm or weights. Not retried: the same settings
   * diverge at the same step again. Nothing non-finite is saved, and the run's checkpoints are moved
   * to `<output dir>/.diverged/`, so a corrected config (lower `sft.lr`/`joint.lr`) can run in the
   * same run dir (docs/failures.md).
   */
  TrainingDiverged: 'TrainingDiverged',
  /**
   * One rank of a training step on several GPUs died without an error of its own (SIGKILL, the
   * OOM killer, a native crash); the other ranks stopped within seconds. Retried: the retry
   * resumes from the last complete checkpoint.
   */
  RankLost: 'RankLost',
  /**
   * The worker running a kernel step got SIGTERM (spot reclaim, restart): the kernel saved a
   * checkpoint within the shutdown grace and stopped. Retried at once on another worker, which
   * resumes from that checkpoint (activities/workerShutdown.ts).
   */
  WorkerShutdown: 'WorkerShutdown',
  /**
   * A run alert (pipeline/notify.ts) could not be posted: the webhook refused it, answered an
   * error or did not answer. Retried with backoff by the alert's own workflow; never fails a run.
   */
  AlertNotDelivered: 'AlertNotDelivered',
  /**
   * A Hugging Face model id of the config cannot be had on the worker: offline (HF_HUB_OFFLINE) and
   * not in its cache, gated, private, or no such model or revision on the Hub. The message names the
   * id, the revision and the command that fetches it (docs/models.md). Not retried.
   */
  ModelUnavailable: 'ModelUnavailable',
} as const;

export type ErrorType = (typeof ErrorTypes)[keyof typeof ErrorTypes];

/** Failures that a retry cannot fix: the workflow fails the step at once. */
export const NON_RETRYABLE_ERROR_TYPES: ErrorType[] = [
  ErrorTypes.InvalidConfig,
  ErrorTypes.InvalidInput,
  ErrorTypes.ArtifactConflict,
  ErrorTypes.WorkerMisconfigured,
  ErrorTypes.HostUnavailable,
  ErrorTypes.RunDirLocked,
  ErrorTypes.InsufficientDisk,
  ErrorTypes.NotWritable,
  ErrorTypes.TrainingDiverged,
  ErrorTypes.ModelUnavailable,
];

/** The type and message of the ApplicationFailure an activity threw, unwrapped from its ActivityFailure. */
export function failureInfo(err: unknown): { type?: string; message: string } {
  let cause: unknown = err;
  while (cause && (cause as ActivityFailure).cause && !(cause instanceof ApplicationFailure))
    cause = (cause as ActivityFailure).cause;
  if (cause instanceof ApplicationFailure) return { type: cause.type ?? undefined, message: cause.message };
  return { message: err instanceof Error ? err.message : String(err) };
}

/** An activity that no worker picked up within its schedule-to-start timeout (a host queue nobody polls). */
export function isScheduleToStartTimeout(err: unknown): boolean {
  return (
    err instanceof ActivityFailure &&
    err.cause instanceof TimeoutFailure &&
    err.cause.timeoutType === 'SCHEDULE_TO_START'
  );
}
