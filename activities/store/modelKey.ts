/**
 * The cache-key part of the base model: the digest of its files and, when the config named it by
 * a Hugging Face id, the id and the commit it resolved to (so a branch that moved never reuses a
 * result of the old commit, and the manifest's key material says which commit a result came from).
 * A base model given as a directory keeps the plain digest, as before.
 */
import type { StepInput } from '../../pipeline/steps';
import { digestPath } from './digest';

export async function baseModelKey(
  runDir: string,
  baseModel: string,
  input: Pick<StepInput, 'models'>,
): Promise<string> {
  const digest = await digestPath(runDir, baseModel, 'baseModel');
  const hub = input.models?.baseModel;
  return hub ? `hf:${hub.id}@${hub.commit}:${digest}` : digest;
}
