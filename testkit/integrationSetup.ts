/**
 * Jest global set-up of the integration project: the tiny model and data every suite shares are
 * built once, before the suites start side by side, so that two of them never build it at once.
 */
import { ensureTinyAssets } from './harness';

export default async function integrationSetup(): Promise<void> {
  await ensureTinyAssets();
}
