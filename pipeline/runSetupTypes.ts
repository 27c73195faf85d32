/**
 * What a run's set-up (activities/runSetup.ts) hands the workflow: the Hugging Face ids of the
 * config resolved to directories of the workers' cache, and the tracking runs. Types only.
 */

export interface ResolvedModel {
  /** org/name */
  id: string;
  /** The revision the config asked for (main when none). */
  revision: string;
  /** The commit it resolved to: part of the cache key of every step that reads the model. */
  commit: string;
  /** The snapshot directory in the Hugging Face cache. */
  path: string;
}

export interface TrackerRun {
  runId?: string;
  url?: string | null;
  /** Why the tracker could not be reached at set-up (the kernels retry it). */
  error?: string;
}

export interface RunSetup {
  models: Record<string, ResolvedModel>;
  trackers: Partial<Record<'mlflow' | 'wandb', TrackerRun>>;
}

export interface RunSetupActivities {
  setUpRun(input: { config: import('./config').RunConfig; models: Record<string, string> }): Promise<RunSetup>;
}
