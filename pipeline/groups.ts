/**
 * Multi-node training groups (docs/clusters.md, "A training step on several hosts"): the config
 * fields `placement.nodes` and `placement.groupHosts`, their checks, and what one member of a
 * group is told. A group runs one activity per member host; each starts torchrun with
 * `--nnodes N --node-rank i` and meets the others at the rendezvous member 0 hosts.
 * Plain zod and data: the workflow sandbox loads this file.
 */
import { z } from 'zod';

/** Steps that can run as a group: the two training steps (one torchrun world over every member). */
export const GROUP_STEPS = ['sft', 'joint'] as const;
export type GroupStep = (typeof GROUP_STEPS)[number];
const MAX_NODES = 1024;

export const groupFields = {
  nodes: z
    .record(z.string(), z.number().int().min(1).max(MAX_NODES))
    .default({})
    .describe(
      'Training steps that run on several hosts at once, e.g. {sft: 2, joint: 2}: the step runs as a group of that many members, one per host of groupHosts (torchrun --nnodes N, rendezvous on the first). Only sft and joint; needs storage shared. Default: one host.',
    ),
  groupHosts: z
    .array(z.string().regex(/^[^@\s]+$/, 'a host name (no @ or spaces)'))
    .optional()
    .describe(
      'The hosts a group runs on, in member order (member 0 hosts the rendezvous); each needs a GPU worker (--host <name>). A group of N members takes the first N.',
    ),
};

interface GroupPlacement {
  storage: 'shared' | 'local';
  nodes: Record<string, number>;
  groupHosts?: string[];
}

/**
 * The placement checks of groups, as zod issues on the field at fault: a step that cannot run as
 * a group, more members than hosts, hosts named twice, or local storage (every member reads and
 * writes the same checkpoints).
 */
export function checkGroups(p: GroupPlacement, ctx: z.RefinementCtx): void {
  const hosts = p.groupHosts ?? [];
  let grouped = false;
  for (const [step, n] of Object.entries(p.nodes)) {
    if (!(GROUP_STEPS as readonly string[]).includes(step)) {
      ctx.addIssue({
        code: 'custom',
        path: ['nodes', step],
        message: `only the training steps (${GROUP_STEPS.join(', ')}) run on several hosts; ${step} runs on one`,
      });
      continue;
    }
    if (n <= 1) continue;
    grouped = true;
    if (n > hosts.length)
      ctx.addIssue({
        code: 'custom',
        path: ['nodes', step],
        message: `${n} members need ${n} hosts, and placement.groupHosts names ${hosts.length}: list one host per member (each with a GPU worker started with --host <name>)`,
      });
  }
  if (new Set(hosts).size !== hosts.length)
    ctx.addIssue({ code: 'custom', path: ['groupHosts'], message: 'a host is named twice: one member per host' });
  if (grouped && p.storage !== 'shared')
    ctx.addIssue({
      code: 'custom',
      path: ['storage'],
      message:
        'a step on several hosts (placement.nodes) needs storage "shared": every member reads the same checkpoints and writes its shards beside the others',
    });
}

/** Members of a step's group under a config: 1 for a step on one host. */
export function groupSize(stepId: string, placement: { nodes?: Record<string, number> }): number {
  return placement.nodes?.[stepId] ?? 1;
}

/** What a member's activity is told (StepInput.group): where it stands and where to meet. */
export const GroupMember = z.object({
  /** This member (node rank), 0 … count−1; member 0 publishes the step's result and manifest. */
  index: z.number().int().min(0),
  count: z.number().int().min(2),
  /** Host of member 0 as the others reach it, and the port its rendezvous store listens on. */
  address: z.string(),
  port: z.number().int().min(1).max(65_535),
  /** Which try of the group this is (1, 2, …): every try is a new rendezvous and new job files. */
  attempt: z.number().int().min(1),
  /** How long member 0 waits for the others to join before giving up (the host timeout). */
  joinTimeoutS: z.number().int().positive(),
});
export type GroupMember = z.infer<typeof GroupMember>;

/** The rendezvous member 0 offers: its address and a port that was free a moment ago. */
export interface Rendezvous {
  address: string;
  port: number;
}

/** Suffix of a member's job and log files: `node-1-of-2.try-3`. */
export function memberTag(g: GroupMember): string {
  return `node-${g.index}-of-${g.count}.try-${g.attempt}`;
}
