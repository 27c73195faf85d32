/** What the `wmss` commands share: argument parsers that refuse bad values, and a client closed after use. */
import { InvalidArgumentError } from 'commander';
import { connectClient } from '../temporal/connection';

/** commander argParser for counts: `--limit abc` is an error, not NaN passed on to the server. */
export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a positive whole number, got "${value}"`);
  return n;
}

export function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive number of seconds, got "${value}"`);
  return n;
}

export async function withClient<T>(fn: (client: Awaited<ReturnType<typeof connectClient>>) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}
