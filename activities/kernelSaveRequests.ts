/**
 * Save on request, bridge side: `wmss checkpoint` reaches the activity of a running training step
 * (activities/runControlPoller.ts), which asks its kernel through this handle. The kernel learns
 * of it from SIGUSR1 (kernels/wmss_kernels/save_request.py), saves a complete checkpoint at the end
 * of the optimizer step in flight and prints its `checkpoint` line; the first such line after the
 * request answers it. Requests that overlap share that one checkpoint.
 */

export interface SavedCheckpoint {
  /** Absolute path of the complete checkpoint directory, as the kernel printed it. */
  path: string;
  /** The optimizer step it holds. */
  step: number;
}

export interface RunningKernel {
  /** Resolves with the next complete checkpoint; rejects when the kernel ends without one. */
  requestCheckpoint(): Promise<SavedCheckpoint>;
  /** Resolves when the kernel has exited. */
  ended: Promise<void>;
}

interface Waiter {
  resolve: (c: SavedCheckpoint) => void;
  reject: (e: Error) => void;
}

export class SaveRequests {
  private waiters: Waiter[] = [];
  /** A request whose signal found no recorded process yet (the kernel still starting). */
  private unsent = false;
  private finished = false;
  private markEnded!: () => void;
  readonly handle: RunningKernel;

  constructor(
    private readonly pids: () => number[],
    private readonly kill: (pid: number, signal: NodeJS.Signals) => void = (pid, signal) => process.kill(pid, signal),
  ) {
    const ended = new Promise<void>((resolve) => (this.markEnded = resolve));
    this.handle = { requestCheckpoint: () => this.request(), ended };
  }

  private request(): Promise<SavedCheckpoint> {
    if (this.finished) return Promise.reject(new Error('the kernel has already ended'));
    const answer = new Promise<SavedCheckpoint>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.unsent = true;
    this.resend();
    return answer;
  }

  /** Signals the kernel's processes if a request is still unsent; called on every heartbeat tick. */
  resend(): void {
    if (!this.unsent || this.finished) return;
    let reached = 0;
    for (const pid of this.pids()) {
      try {
        this.kill(pid, 'SIGUSR1');
        reached++;
      } catch {
        // gone: the exit will answer the request
      }
    }
    if (reached > 0) this.unsent = false;
  }

  /** The kernel printed a checkpoint line: it answers every request made so far. */
  saved(checkpoint: SavedCheckpoint): void {
    if (this.unsent) return; // not yet asked: a scheduled save before the signal went out
    const waiting = this.waiters;
    this.waiters = [];
    waiting.forEach((w) => w.resolve(checkpoint));
  }

  ended(why: string): void {
    if (this.finished) return;
    this.finished = true;
    const waiting = this.waiters;
    this.waiters = [];
    waiting.forEach((w) => w.reject(new Error(why)));
    this.markEnded();
  }
}
