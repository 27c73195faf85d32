/**
 * Puts a local model directory into a Hugging Face cache under an id, in huggingface_hub's own
 * layout: `models--org--name/blobs/<sha256>` holds each file, `snapshots/<commit>/<file>` links to
 * it, `refs/main` names the commit. The demo registers its tiny model this way so that its config
 * can say `wmss-demo/tiny-qwen3` and run offline; nothing here talks to the Hub.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

export function repoFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

/** Registers `modelDir` (its top-level files) as `repo` at `ref`; returns the commit (stable for the same files). */
export function registerInHubCache(modelDir: string, repo: string, cacheDir: string, ref = 'main'): string {
  const folder = repoFolder(cacheDir, repo);
  const names = readdirSync(modelDir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const blobs = names.map((name) => {
    const data = readFileSync(path.join(modelDir, name));
    return { name, data, sha: createHash('sha256').update(data).digest('hex') };
  });
  // a made-up commit id of the Hub's shape (40 hex digits), a function of the files' names and contents
  const commit = createHash('sha1')
    .update(blobs.map((b) => `${b.name}\0${b.sha}`).join('\n'))
    .digest('hex');
  const snapshot = path.join(folder, 'snapshots', commit);
  mkdirSync(path.join(folder, 'blobs'), { recursive: true });
  mkdirSync(path.join(folder, 'refs'), { recursive: true });
  if (!existsSync(snapshot)) {
    const tmp = `${snapshot}.tmp-${process.pid}`;
    mkdirSync(tmp, { recursive: true });
    for (const b of blobs) {
      const blob = path.join(folder, 'blobs', b.sha);
      if (!existsSync(blob)) writeFileSync(blob, b.data);
      symlinkSync(path.join('..', '..', 'blobs', b.sha), path.join(tmp, b.name));
    }
    renameSync(tmp, snapshot);
  }
  writeFileSync(path.join(folder, 'refs', ref), commit);
  return commit;
}
