/** Multi-node groups without a server: the config checks (each naming its field), the torchrun command of a member, the rendezvous port. */
import net from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { checkRunConfig, RunConfig } from '../../pipeline/config';
import { groupSize, memberTag, type GroupMember } from '../../pipeline/groups';
import { kernelCommand } from '../../activities/kernelLaunch';
import { freePort, groupAddress, groupRendezvous } from '../../activities/groupRendezvous';

const raw = (placement: Record<string, unknown>) => ({
  runName: 'g',
  runDir: '/r',
  baseModel: '/m',
  dataFile: '/d',
  placement,
});

/** The InvalidConfig failure of a placement, as the workflow raises it: its message and first field. */
function refusal(placement: Record<string, unknown>): { message: string; field: unknown } {
  try {
    checkRunConfig(raw(placement));
  } catch (err) {
    const failure = err as ApplicationFailure;
    expect(failure.type).toBe('InvalidConfig');
    return { message: failure.message, field: (failure.details?.[0] as { field: unknown }).field };
  }
  throw new Error('the config was accepted');
}

test('a group config: nodes per training step, hosts in member order', () => {
  const c = RunConfig.parse(raw({ nodes: { sft: 2, joint: 3 }, groupHosts: ['a', 'b', 'c'] }));
  expect(groupSize('sft', c.placement)).toBe(2);
  expect(groupSize('joint', c.placement)).toBe(3);
  expect(groupSize('evaluate', c.placement)).toBe(1);
  // the default: every step on one host
  expect(RunConfig.parse(raw({})).placement.nodes).toEqual({});
  expect(groupSize('sft', RunConfig.parse(raw({})).placement)).toBe(1);
});

test('bad group configs are refused, naming the field', () => {
  expect(refusal({ nodes: { evaluate: 2 }, groupHosts: ['a', 'b'] })).toEqual({
    field: 'placement.nodes.evaluate',
    message: expect.stringMatching(/placement\.nodes\.evaluate: only the training steps \(sft, joint\)/),
  });
  expect(refusal({ nodes: { sft: 3 }, groupHosts: ['a', 'b'] })).toEqual({
    field: 'placement.nodes.sft',
    message: expect.stringMatching(/placement\.nodes\.sft: 3 members need 3 hosts, and placement\.groupHosts names 2/),
  });
  expect(refusal({ nodes: { joint: 2 } }).message).toMatch(/placement\.nodes\.joint: .*names 0/);
  expect(refusal({ nodes: { sft: 2 }, groupHosts: ['a', 'a'] }).field).toBe('placement.groupHosts');
  expect(refusal({ storage: 'local', nodes: { sft: 2 }, groupHosts: ['a', 'b'] })).toEqual({
    field: 'placement.storage',
    message: expect.stringMatching(/placement\.storage: a step on several hosts .* needs storage "shared"/),
  });
  expect(refusal({ nodes: { sft: 0 }, groupHosts: ['a'] }).field).toBe('placement.nodes.sft');
  expect(refusal({ nodes: { sft: 2 }, groupHosts: ['a@b', 'c'] }).field).toBe('placement.groupHosts.0');
  // unknown strategies are the training section's enum: named as well
  const bad = { ...raw({}), sft: { parallelism: { strategy: 'zero3' } } };
  expect(() => checkRunConfig(bad)).toThrow(/sft\.parallelism\.strategy/);
  // one node is one host: no group, any storage
  expect(() => RunConfig.parse(raw({ storage: 'local', nodes: { sft: 1 } }))).not.toThrow();
});

test("a member's kernel is torchrun with its node rank, joining member 0's rendezvous", () => {
  const member: GroupMember = { index: 1, count: 2, address: 'node7', port: 29_411, attempt: 3, joinTimeoutS: 600 };
  expect(kernelCommand('/v/python', 'sft', '/j.json', 1, member)).toEqual({
    file: '/v/python',
    args: [
      '-m',
      'torch.distributed.run',
      '--nnodes',
      '2',
      '--node-rank',
      '1',
      '--nproc-per-node',
      '1',
      '--rdzv-endpoint',
      'node7:29411',
      '--rdzv-conf',
      'join_timeout=600',
      '--max-restarts',
      '0',
      '-m',
      'wmss_kernels',
      'sft',
      '--job',
      '/j.json',
    ],
  });
  expect(memberTag(member)).toBe('node-1-of-2.try-3');
});

test('member 0 offers its address and a port that is free', async () => {
  expect(groupAddress({ WMSS_GROUP_ADDRESS: '10.0.0.7' })).toBe('10.0.0.7');
  expect(groupAddress({})).not.toBe('');
  const { port } = await groupRendezvous();
  expect(port).toBeGreaterThan(0);
  // free: the kernel can listen on it
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer().once('error', reject);
    server.listen(port, () => server.close(() => resolve()));
  });
  expect(await freePort()).toBeGreaterThan(0);
});
