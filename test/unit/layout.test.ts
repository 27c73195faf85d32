/**
 * The repository's layout rules, checked on the sources as they are (docs/development.md, "Layout"):
 *  - the top-level folders import each other without a cycle: two folders that import each other
 *    can be neither read nor tested one without the other (type-only imports count: they couple
 *    the folders as much);
 *  - no two source files share a name, so a name says where to look;
 *  - no source file is over 400 lines.
 * Each checker also runs on a made-up case that breaks its rule, so these tests can fail.
 * (The workflow sandbox rule, no Node built-ins and only activity types in workflows/ and
 * pipeline/, is ESLint's.)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.join(__dirname, '..', '..');
/** Not sources of this repository (installed, built, run output) or not TypeScript's concern. */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'runs', '__pycache__', 'shared']);
const MAX_LINES = 400;

/** Repository-relative paths ('/'-separated) of the files under `dir` whose names end with `ext`. */
function filesUnder(dir: string, ext: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory() && !entry.name.startsWith('.') && !SKIPPED_DIRS.has(entry.name)) walk(child);
      else if (entry.isFile() && entry.name.endsWith(ext) && !entry.name.endsWith('.d.ts')) out.push(child);
    }
  };
  walk(dir);
  return out.sort();
}

const topFolder = (rel: string) => rel.split('/')[0];
const tsFiles = filesUnder('', '.ts').filter((f) => f.includes('/'));

/**
 * Every module a TypeScript source names: imports (type-only ones too), re-exports, require(),
 * require.resolve(), import() and `typeof import()`.
 */
export function importsOf(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true);
  const out: (string | undefined)[] = [];
  const literal = (node: ts.Node | undefined) => (node && ts.isStringLiteralLike(node) ? node.text : undefined);
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) out.push(literal(node.moduleSpecifier));
    else if (ts.isExportDeclaration(node)) out.push(literal(node.moduleSpecifier));
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      out.push(literal(node.moduleReference.expression));
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) out.push(literal(node.argument.literal));
    else if (ts.isCallExpression(node)) {
      const callee = node.expression.getText(source);
      if (callee === 'require' || callee === 'require.resolve' || node.expression.kind === ts.SyntaxKind.ImportKeyword)
        out.push(literal(node.arguments[0]));
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out.filter((spec): spec is string => spec !== undefined);
}

/** The repository file a relative specifier of `fromFile` names, or undefined for a package. */
function resolveRelative(fromFile: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), spec));
  const candidates = [`${base}.ts`, `${base}/index.ts`, base, `${base}.json`];
  const hit = candidates.find((c) => existsSync(path.join(ROOT, c)) && statSync(path.join(ROOT, c)).isFile());
  if (!hit) throw new Error(`${fromFile}: import '${spec}' names no file of the repository`);
  return hit;
}

/** folder → folder it imports → one import that makes the edge ("file → spec"), for the message. */
type FolderGraph = Map<string, Map<string, string>>;

function folderGraph(files: string[]): FolderGraph {
  const graph: FolderGraph = new Map();
  for (const file of files) {
    for (const spec of importsOf(file, readFileSync(path.join(ROOT, file), 'utf8'))) {
      const target = resolveRelative(file, spec);
      if (!target || topFolder(target) === topFolder(file)) continue;
      const edges = graph.get(topFolder(file)) ?? new Map<string, string>();
      if (!edges.has(topFolder(target))) edges.set(topFolder(target), `${file} → ${spec}`);
      graph.set(topFolder(file), edges);
    }
  }
  return graph;
}

/** One cycle of the graph as the folders along it (first = last), or undefined when it has none. */
export function findCycle(graph: Map<string, Iterable<string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    if (state.has(node)) continue;
    const found = visit(node);
    if (found) return found;
  }
  return undefined;
}

/** Groups of files that share a base name, as "name: a, b". */
export function repeatedNames(files: string[]): string[] {
  const byName = new Map<string, string[]>();
  for (const f of files) byName.set(path.posix.basename(f), [...(byName.get(path.posix.basename(f)) ?? []), f]);
  return [...byName].filter(([, fs]) => fs.length > 1).map(([name, fs]) => `${name}: ${fs.join(', ')}`);
}

function lineCount(file: string): number {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  return text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
}

describe('folders import each other without a cycle', () => {
  test('the checker finds a cycle in a made-up graph, and none in a tree', () => {
    expect(
      findCycle(
        new Map([
          ['client', ['workers']],
          ['workers', ['activities', 'client']],
          ['activities', []],
        ]),
      ),
    ).toEqual(['client', 'workers', 'client']);
    expect(
      findCycle(
        new Map([
          ['a', ['b', 'c']],
          ['b', ['c']],
          ['c', []],
        ]),
      ),
    ).toBeUndefined();
  });

  test('the checker reads every kind of import', () => {
    const text = [
      "import fs from 'node:fs';",
      "import type { A } from '../activities/a';",
      "import { type B, type C } from '../activities/b';",
      "import { D, type E } from '../activities/d';",
      "export { F } from './f';",
      "export type { G } from './g';",
      "const h = require('./h');",
      "const w = require.resolve('../workflows');",
      "async function later() { return import('./i'); }",
      "type J = typeof import('./j');",
    ].join('\n');
    expect(importsOf('x/y.ts', text)).toEqual([
      'node:fs',
      '../activities/a',
      '../activities/b',
      '../activities/d',
      './f',
      './g',
      './h',
      '../workflows',
      './i',
      './j',
    ]);
  });

  test('the TypeScript folders of this repository', () => {
    const graph = folderGraph(tsFiles);
    expect(graph.size).toBeGreaterThan(5);
    const cycle = findCycle(new Map([...graph].map(([from, to]) => [from, [...to.keys()]])));
    const why = cycle
      ?.slice(1)
      .map((to, i) => graph.get(cycle[i])!.get(to))
      .join('\n  ');
    expect(cycle ? `folder cycle ${cycle.join(' → ')}:\n  ${why}` : 'no cycle').toBe('no cycle');
  });
});

describe('no two source files share a name', () => {
  // Test files are named after what they test, so a unit and an integration test of the same thing
  // share a name; jest names the project (unit, workflow, integration) beside each.
  const sources = [
    ...tsFiles.filter((f) => !f.endsWith('.test.ts')),
    ...filesUnder('kernels/wmss_kernels', '.py'),
    ...filesUnder('bench/gpu', '.py'),
  ];

  test('the checker reports repeated names', () => {
    expect(repeatedNames(['workflows/placement.ts', 'pipeline/placement.ts', 'client/cli.ts'])).toEqual([
      'placement.ts: workflows/placement.ts, pipeline/placement.ts',
    ]);
  });

  test('in this repository', () => {
    expect(sources).toEqual(
      expect.arrayContaining(['client/cli.ts', 'kernels/wmss_kernels/entropy.py', 'bench/gpu/entropy_bench.py']),
    );
    expect(repeatedNames(sources)).toEqual([]);
  });
});

describe(`no source file is over ${MAX_LINES} lines`, () => {
  // TypeScript of every top-level folder, tests included, and the Python kernels, their tests
  // and the GPU benchmarks
  const sources = [
    ...tsFiles,
    ...filesUnder('kernels/wmss_kernels', '.py'),
    ...filesUnder('kernels/tests', '.py'),
    ...filesUnder('bench/gpu', '.py'),
  ];

  test('the files it covers', () => {
    for (const folder of [
      'activities',
      'client',
      'pipeline',
      'workers',
      'workflows',
      'testkit',
      'bench',
      'scripts',
      'temporal',
    ])
      expect(sources.some((f) => topFolder(f) === folder)).toBe(true);
    expect(sources).toContain('kernels/wmss_kernels/__main__.py');
    expect(sources).toEqual(expect.arrayContaining(['test/integration/faults.test.ts', 'kernels/tests/conftest.py']));
  });

  test('over the limit: none', () => {
    const over = sources.map((f) => ({ f, n: lineCount(f) })).filter(({ n }) => n > MAX_LINES);
    expect(over.map(({ f, n }) => `${f}: ${n} lines`)).toEqual([]);
  });
});
