/**
 * The host name a worker stands for. StepResult.host (and each manifest) records it, and with
 * local storage the workflow sends the next steps to that host's queues, so it must be the name
 * the worker polls under. Usually os.hostname() (WMSS_HOST overrides); tests run workers of
 * several fake hosts in one process, so each worker runs its activities inside `withHost`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import os from 'node:os';

const scope = new AsyncLocalStorage<string>();

/** The host of the worker running the current activity; else WMSS_HOST, else the machine's name. */
export function currentHost(): string {
  return scope.getStore() ?? (process.env.WMSS_HOST || os.hostname());
}

/** The same activities, each running with `host` as currentHost(). */
export function withHost<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  host: string,
  activities: T,
): T {
  const wrapped = Object.entries(activities).map(([name, fn]) => [
    name,
    (...args: never[]) => scope.run(host, () => fn(...args)),
  ]);
  return Object.fromEntries(wrapped) as T;
}
