/**
 * Where steps run: task queue names, shared by the workflow (which routes steps) and the workers
 * (which poll them), so both sides spell a queue the same way. docs/clusters.md.
 *
 *   control   wmss                     any control worker (workflow tasks, CPU steps)
 *             wmss@<host>              the control worker on <host> (CPU steps on local files)
 *   gpu       wmss-gpu                 any GPU worker
 *             wmss-gpu@<host>          a GPU worker on <host>
 *   pools     wmss-gpu:<pool>          a GPU worker started with --pool <pool> (e.g. h100)
 *             wmss-gpu:<pool>@<host>
 *
 * Plain data and string functions only: the workflow bundle imports this file.
 */
import type { RunConfig } from './config';
import type { QueueKind, StepId, StepResult, StepRow } from './steps';

type Placement = RunConfig['placement'];

/** The GPU queue of a pool (`wmss-gpu:h100`), or the plain GPU queue without one. */
export function poolQueue(gpuQueue: string, pool?: string): string {
  return pool ? `${gpuQueue}:${pool}` : gpuQueue;
}

/** The queue of `queue` on one host: only workers on that host poll it. */
export function hostQueue(queue: string, host: string): string {
  return `${queue}@${host}`;
}

/**
 * What a GPU worker polls: the shared and host queues, and with a pool also the pool's. A pool
 * worker still takes plain GPU work: an H100 can run whatever asks for "any GPU".
 */
export function gpuWorkerQueues(opts: { gpuQueue: string; host: string; pool?: string }): {
  shared: string[];
  pinned: string[];
} {
  const bases = opts.pool ? [opts.gpuQueue, poolQueue(opts.gpuQueue, opts.pool)] : [opts.gpuQueue];
  return { shared: bases, pinned: bases.map((q) => hostQueue(q, opts.host)) };
}

/** What a control worker polls: the shared control queue (with workflow tasks) and its host's queue. */
export function controlWorkerQueues(opts: { controlQueue: string; host: string }): { shared: string; pinned: string } {
  return { shared: opts.controlQueue, pinned: hostQueue(opts.controlQueue, opts.host) };
}

/** The queue a step of `kind` goes to: the host's when it is pinned, else the shared one. */
export function stepQueue(kind: QueueKind, placement: Placement, host?: string): string {
  const queue = kind === 'gpu' ? poolQueue(placement.gpuQueue, placement.gpuPool) : placement.controlQueue;
  return host === undefined ? queue : hostQueue(queue, host);
}

/**
 * The host a step must run on, or undefined when any worker may take it (shared storage).
 * With local storage every step follows the host of its first input step that ran, and the roots
 * (steps 0, 1, 4, which read only the base model and the data) all go to `rootHost`, so the
 * whole run stays on the one host that holds its run dir.
 */
export function pinnedHost(
  row: StepRow,
  placement: Placement,
  results: Partial<Record<StepId, StepResult>>,
  rootHost: string | undefined,
): string | undefined {
  if (placement.storage === 'shared') return undefined;
  // needs of steps this config leaves out (e.g. the ONNX exports) have no result: skip them
  return row.needs.map((id) => results[id]?.host).find((host) => host !== undefined) ?? rootHost;
}
