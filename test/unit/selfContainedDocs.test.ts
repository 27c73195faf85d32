/**
 * The repository explains itself: code, docs and scripts cite only what is in the repository.
 * Facts about the method live in docs/method.md, in our own words; a comment that points at a
 * document outside it (the method notes or design notes a session worked from) cannot be followed
 * by a reader of the repository. Every `docs/<file>.md#<anchor>` reference must also name a heading
 * that exists, so a renamed section does not leave dangling pointers.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const SKIPPED_DIRS = new Set([
  'node_modules',
  'dist',
  'runs',
  '__pycache__',
  'shared',
  '.git',
  '.venv',
  '.wmss',
  '.pytest_cache',
]);
const TEXT = /\.(ts|js|py|md|sh|json|ya?ml|toml|txt)$|^(Makefile|Dockerfile|run)$/;

/** Documents outside the repository, by the ways they were cited. */
export const OUTSIDE_DOCUMENT = new RegExp(['WMSS-SPEC', 'DESIGN\\.md', 'DESIGN §', '\\.\\./shared/'].join('|'));

function textFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      // dot folders are tools' and scratch space (.git, .venv, .wmss, a developer's .dev14)
      if (entry.isDirectory() && !SKIPPED_DIRS.has(entry.name) && !entry.name.startsWith('.')) walk(child);
      else if (entry.isFile() && TEXT.test(entry.name)) out.push(child);
    }
  };
  walk('');
  return out.sort();
}

/** "file:line: text" of each line that cites an outside document. */
export function outsideReferences(file: string, text: string): string[] {
  return text
    .split('\n')
    .flatMap((line, i) => (OUTSIDE_DOCUMENT.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : []));
}

/** GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens. */
export function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const base = anchorOf(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

/** `docs/<name>.md#anchor` references (also `<name>.md#anchor` inside docs/) whose heading is missing. */
export function danglingAnchors(
  file: string,
  text: string,
  anchorsOfDoc: (doc: string) => Set<string> | undefined,
): string[] {
  const bad: string[] = [];
  for (const m of text.matchAll(/(docs\/)?([\w.-]+\.md)#([\p{L}\p{N}_-]+)/gu)) {
    const doc = m[1] || file.startsWith('docs/') ? `docs/${m[2]}` : undefined;
    const anchors = doc && anchorsOfDoc(doc);
    if (anchors && !anchors.has(m[3])) bad.push(`${file}: ${m[0]} (no such heading in ${doc})`);
  }
  return bad;
}

const files = textFiles().filter((f) => f !== path.relative(ROOT, __filename).split(path.sep).join('/'));

test('the checkers find an outside reference and a dangling anchor', () => {
  expect(outsideReferences('a.ts', 'ok\n * Step 3 (WMSS-SPEC §8.2)\n// see ../shared/DESIGN.md')).toEqual([
    'a.ts:2: * Step 3 (WMSS-SPEC §8.2)',
    'a.ts:3: // see ../shared/DESIGN.md',
  ]);
  expect(anchorOf('Entropy (steps 0 and 2)')).toBe('entropy-steps-0-and-2');
  expect(anchorOf('The fused model (steps 5a and 5b)')).toBe('the-fused-model-steps-5a-and-5b');
  const docs = (doc: string) => (doc === 'docs/method.md' ? new Set(['names']) : undefined);
  expect(
    danglingAnchors('x.ts', 'see docs/method.md#names and docs/method.md#nemas, kernels/README.md#x', docs),
  ).toEqual(['x.ts: docs/method.md#nemas (no such heading in docs/method.md)']);
  expect(danglingAnchors('docs/a.md', '[b](method.md#gone)', docs)).toEqual([
    'docs/a.md: method.md#gone (no such heading in docs/method.md)',
  ]);
});

test('no file cites a document outside the repository', () => {
  expect(files).toEqual(
    expect.arrayContaining([
      'README.md',
      'docs/method.md',
      'pipeline/steps.ts',
      'kernels/wmss_kernels/entropy.py',
      'Dockerfile',
    ]),
  );
  const found = files.flatMap((f) => outsideReferences(f, readFileSync(path.join(ROOT, f), 'utf8')));
  expect(found).toEqual([]);
});

test('every docs/<file>.md#<anchor> reference names an existing heading', () => {
  const cache = new Map<string, Set<string> | undefined>();
  const anchorsOfDoc = (doc: string) => {
    if (!cache.has(doc))
      cache.set(
        doc,
        existsSync(path.join(ROOT, doc)) ? anchorsOf(readFileSync(path.join(ROOT, doc), 'utf8')) : undefined,
      );
    return cache.get(doc);
  };
  expect(anchorsOfDoc('docs/method.md')).toEqual(expect.objectContaining({ size: expect.any(Number) }));
  expect(anchorsOfDoc('docs/method.md')!.has('sample-weights-step-3')).toBe(true);
  const bad = files
    .filter((f) => !f.endsWith('.json'))
    .flatMap((f) => danglingAnchors(f, readFileSync(path.join(ROOT, f), 'utf8'), anchorsOfDoc));
  expect(bad).toEqual([]);
});
