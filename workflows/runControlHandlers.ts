/**
 * Run controls, workflow side (pipeline/runControlApi.ts; docs/operating.md#run-controls):
 *
 *  - `checkpoint` Update: validated (a training step must be running), recorded as a request that
 *    the step's activity picks up through the `controlRequests` query; the activity answers with
 *    the `checkpointSaved` signal and the Update returns the checkpoint. A step that ends first
 *    answers with its final checkpoint (completed) or an error (failed, cancelled).
 *  - `rerun` Update: refused while the step or one after it runs; else those steps' cache entries
 *    are invalidated by an activity and the steps go back to pending, so the pipeline loop runs them
 *    again. The loop waits for the invalidation before it starts anything (`beforeScheduling`).
 *
 * Handlers only: no command is issued unless an Update arrives, so histories recorded without
 * them replay unchanged (test/workflow/replay.test.ts).
 */
import { ApplicationFailure, condition, proxyActivities, setHandler } from '@temporalio/workflow';
import type { RunControlActivities } from '../activities/contract';
import type { RunConfig } from '../pipeline/config';
import { stepQueue } from '../pipeline/placement';
import {
  CHECKPOINT_STEPS,
  checkpointSavedSignal,
  checkpointUpdate,
  controlRequestsQuery,
  rerunUpdate,
  type CheckpointAnswer,
  type CheckpointReply,
  type CheckpointRequest,
} from '../pipeline/runControlApi';
import { activeSteps, type StepId, type StepResult } from '../pipeline/steps';
import type { StepStatus } from '../pipeline/workflowApi';

export interface PipelineState {
  config: RunConfig;
  steps: Map<StepId, StepStatus>;
  results: Partial<Record<StepId, StepResult>>;
  /** Whether the loop still schedules steps (false once it has ended or a step failed). */
  scheduling: () => boolean;
  /** Wakes the loop from its wait for a finished step. */
  wake: () => void;
}

/** The active steps that need `id`, directly or through others, in table order. */
export function stepsAfter(config: RunConfig, id: StepId): StepId[] {
  const found = new Set<StepId>([id]);
  for (const row of activeSteps(config)) if (row.needs.some((n) => found.has(n))) found.add(row.id);
  found.delete(id);
  return activeSteps(config)
    .map((r) => r.id)
    .filter((s) => found.has(s));
}

function describe(s: StepStatus): string {
  return `step ${s.number} (${s.title})`;
}

export function installRunControls(state: PipelineState, rootHost: () => Promise<string | undefined>) {
  const { config, steps } = state;
  const requests = new Map<string, CheckpointRequest>();
  const answers = new Map<string, CheckpointAnswer>();
  let nextId = 1;
  let invalidation: Promise<unknown> | undefined;

  setHandler(controlRequestsQuery, (stepId) => [...requests.values()].filter((r) => r.stepId === stepId));
  setHandler(checkpointSavedSignal, (answer) => {
    if (!requests.delete(answer.id)) return; // answered twice (a retried activity): the first one stands
    answers.set(answer.id, answer);
  });

  const trainingSteps = () => CHECKPOINT_STEPS.filter((id) => steps.has(id)).map((id) => steps.get(id)!);
  setHandler(
    checkpointUpdate,
    async (stepId: StepId | null): Promise<CheckpointReply> => {
      const target = stepId || trainingSteps().find((s) => s.state === 'running')!.id;
      const id = `checkpoint-${nextId++}`;
      requests.set(id, { id, stepId: target });
      const status = steps.get(target)!;
      await condition(() => answers.has(id) || status.state !== 'running');
      const answer = answers.get(id);
      requests.delete(id);
      if (answer?.path !== undefined && answer.step !== undefined)
        return { stepId: target, path: answer.path, step: answer.step, final: false };
      const checkpoint = status.result?.outputs.checkpoint;
      if (status.state === 'completed' && checkpoint)
        return { stepId: target, path: checkpoint, step: Number(status.result?.metrics.steps ?? 0), final: true };
      throw ApplicationFailure.create({
        type: 'CheckpointNotSaved',
        nonRetryable: true,
        message: `${describe(status)} saved no checkpoint for this request: ${answer?.error ?? `it ended as ${status.state}`}`,
      });
    },
    {
      validator: (stepId: StepId | null) => {
        const training = trainingSteps();
        if (stepId && !training.some((s) => s.id === stepId))
          throw new Error(
            `only the training steps save checkpoints on request (${training.map((s) => s.id).join(', ')}), not ${stepId}`,
          );
        const running = training.filter((s) => s.state === 'running' && (!stepId || s.id === stepId));
        if (running.length === 0)
          throw new Error(
            `no training step is running: ${training.map((s) => `${describe(s)} is ${s.state}`).join(', ')}`,
          );
      },
    },
  );

  setHandler(
    rerunUpdate,
    async (stepId: StepId) => {
      const targets = [stepId, ...stepsAfter(config, stepId)];
      // back to pending now, before any await: the loop must neither end nor use the old results
      for (const id of targets) {
        const s = steps.get(id)!;
        s.state = 'pending';
        for (const key of ['startedAt', 'finishedAt', 'result', 'error'] as const) delete s[key];
        delete state.results[id];
      }
      // invalidation is set before any await: the loop must not start these steps before it is done
      const previous = invalidation?.catch(() => undefined);
      const done = (async () => {
        await previous;
        const { invalidateSteps } = proxyActivities<RunControlActivities>({
          taskQueue: stepQueue('cpu', config.placement, await rootHost()),
          startToCloseTimeout: '10m',
          retry: { maximumAttempts: 5, initialInterval: '1s', maximumInterval: '30s' },
          summary: `rerun · invalidate steps ${targets.map((id) => steps.get(id)!.number).join(', ')}`,
        });
        return invalidateSteps({ runDir: config.runDir, steps: targets });
      })();
      invalidation = done;
      state.wake();
      return { steps: targets, invalidated: await done };
    },
    {
      validator: (stepId: StepId) => {
        const asked = steps.get(stepId);
        if (!asked) throw new Error(`unknown step "${stepId}"; this run's steps: ${[...steps.keys()].join(', ')}`);
        if (!state.scheduling())
          throw new Error(
            'this run no longer starts steps (it has ended or a step failed); `wmss rerun` starts it again when it has closed',
          );
        const busy = [stepId, ...stepsAfter(config, stepId)]
          .map((id) => steps.get(id)!)
          .filter((s) => s.state === 'running');
        if (busy.length > 0)
          throw new Error(
            `${busy.map(describe).join(' and ')} ${busy.length > 1 ? 'are' : 'is'} running; wait until ${busy.length > 1 ? 'they end' : 'it ends'} (or pause it) and ask again`,
          );
      },
    },
  );

  return {
    /** Awaited by the loop before it starts steps: a rerun's invalidation must come first. */
    invalidating: (): Promise<unknown> | undefined => {
      const pending = invalidation;
      invalidation = undefined;
      // a failed invalidation fails its Update, not the run
      return pending?.catch(() => undefined);
    },
  };
}
