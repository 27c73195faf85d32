/**
 * Experiment tracking (docs/tracking.md): the config section `tracking` and the `tracking` field
 * of the kernel jobs. TensorBoard is on by default; MLflow and Weights & Biases only when their
 * section is present. Plain zod: the workflow sandbox loads it.
 */
import { z } from 'zod';

export const MlflowConfig = z
  .object({
    trackingUri: z
      .string()
      .min(1)
      .describe(
        'MLflow tracking URI: http(s)://host:port of an MLflow server, or file:/path of a local store (one machine).',
      ),
    experiment: z.string().min(1).default('wmss').describe('MLflow experiment of the run (created when missing).'),
  })
  .strict();

export const WandbConfig = z
  .object({
    project: z.string().min(1).describe('Weights & Biases project.'),
    entity: z.string().min(1).optional().describe("W&B entity (user or team); default: the API key's."),
    mode: z
      .enum(['online', 'offline'])
      .default('online')
      .describe('offline: the run is written under <runDir>/tracking/wandb for a later `wandb sync`.'),
  })
  .strict();

export const TrackingConfig = z
  .object({
    tensorboard: z
      .boolean()
      .default(true)
      .describe('TensorBoard event files under <runDir>/tensorboard/<step> (`wmss tensorboard <run>`).'),
    mlflow: MlflowConfig.optional().describe('Log to MLflow: parameters, metrics of rank 0, output links.'),
    wandb: WandbConfig.optional().describe('Log to Weights & Biases: parameters, metrics of rank 0, output links.'),
  })
  .strict();
export type TrackingConfig = z.infer<typeof TrackingConfig>;

/** The job field: where and to what a kernel logs (set by the worker, never by the user). */
export const TrackingJob = z
  .object({
    prefix: z.string().describe('Metric prefix in MLflow / W&B: the step id (sft/loss).'),
    run_name: z.string().nullable().optional(),
    tensorboard_dir: z.string().nullable().optional().describe('null: no TensorBoard events.'),
    mlflow: z
      .object({ tracking_uri: z.string(), experiment: z.string(), run_file: z.string() })
      .strict()
      .nullable()
      .optional(),
    wandb: z
      .object({
        project: z.string(),
        entity: z.string().nullable().optional(),
        mode: z.enum(['online', 'offline']),
        run_file: z.string(),
        dir: z.string(),
      })
      .strict()
      .nullable()
      .optional(),
  })
  .strict()
  .nullable()
  .optional()
  .describe('Experiment tracking of this kernel (TensorBoard, MLflow, W&B); null: none.');
export type TrackingJob = z.infer<typeof TrackingJob>;

/** Files of the run dir that hold the tracking runs' ids (reused by retries and `wmss resume`). */
export const TRACKING_DIR = 'tracking';
export const TENSORBOARD_DIR = 'tensorboard';

/** The job field for a step's kernel; `tag` (a shard) gets a TensorBoard run of its own. */
export function trackingJob(
  tracking: TrackingConfig,
  runDir: string,
  runName: string,
  stepId: string,
  tag?: string,
): NonNullable<TrackingJob> {
  const join = (...parts: string[]) => [runDir.replace(/\/+$/, ''), ...parts].join('/');
  return {
    prefix: stepId,
    run_name: runName,
    tensorboard_dir: tracking.tensorboard
      ? join(TENSORBOARD_DIR, stepId, ...(tag?.startsWith('shard-') ? [tag] : []))
      : null,
    mlflow: tracking.mlflow
      ? {
          tracking_uri: tracking.mlflow.trackingUri,
          experiment: tracking.mlflow.experiment,
          run_file: join(TRACKING_DIR, 'mlflow.json'),
        }
      : null,
    wandb: tracking.wandb
      ? {
          project: tracking.wandb.project,
          entity: tracking.wandb.entity ?? null,
          mode: tracking.wandb.mode,
          run_file: join(TRACKING_DIR, 'wandb.json'),
          dir: join(TRACKING_DIR),
        }
      : null,
  };
}
