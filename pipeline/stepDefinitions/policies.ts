/** Timeouts and retry policies the step rows share (pipeline/stepDefinitions/<step>.ts). */

// The first retry comes quickly: after a lost worker the heartbeat timeout has already passed, and
// after a crash the kernel's processes are gone (the bridge waits for them); then 4 s, 16 s, 64 s.
export const GPU_RETRY = {
  maximumAttempts: 5,
  initialInterval: '1s',
  maximumInterval: '5m',
  backoffCoefficient: 4,
} as const;
export const CPU_RETRY = {
  maximumAttempts: 5,
  initialInterval: '2s',
  maximumInterval: '1m',
  backoffCoefficient: 2,
} as const;
export const TRAINING_TIMEOUTS = { startToClose: '14d', heartbeat: '60s', stall: '30m' } as const;
export const SCORING_TIMEOUTS = { startToClose: '3d', heartbeat: '60s', stall: '20m' } as const;
export const FILE_TIMEOUTS = { startToClose: '12h', heartbeat: '60s', stall: '10m' } as const;
