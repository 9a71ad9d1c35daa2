import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import graph of src/, as the runtime sees it: relative imports and re-exports, without `import type`
 * (erased at build time, so it cannot form a runtime cycle).
 */
const SRC = resolve('src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

const IMPORT = /^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function runtimeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    if (m[1] !== undefined) continue; // import type / export type
    // `import { type A, type B } from` is erased too when every name in the braces is a type.
    const names = /^\s*(?:import|export)\s*\{([^}]*)\}\s*from/.exec(m[0])?.[1]?.split(',').map((n) => n.trim()).filter(Boolean);
    if (names !== undefined && names.length > 0 && names.every((n) => n.startsWith('type '))) continue;
    out.push(resolve(dirname(file), m[2]!.replace(/\.js$/, '.ts')));
  }
  return out;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((f) => [f, runtimeImports(f).filter((t) => t.startsWith(SRC))]));
const layerOf = (file: string) => relative(SRC, file).split('/')[0]!;

function findCycles(): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'visiting');
    stack.push(f);
    for (const next of graph.get(f) ?? []) {
      if (state.get(next) === 'visiting') cycles.push([...stack.slice(stack.indexOf(next)), next].map((p) => relative(SRC, p)));
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (state.get(f) === undefined) visit(f);
  return cycles;
}

/**
 * Which layers each layer may import at runtime: the data flow of the folder names (config -> PolyV client ->
 * store -> service -> scheduler -> HTTP -> metrics -> CLI), with app.ts (its steps in composition/) and main.ts as
 * the composition root.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: [],
  errors: [],
  config: ['lib', 'errors'],
  polyv: ['lib', 'errors', 'config', 'metrics'],
  metrics: ['lib'],
  store: ['lib', 'errors', 'config'],
  service: ['lib', 'errors', 'config', 'polyv', 'store', 'metrics'],
  scheduler: ['lib', 'errors', 'config', 'store', 'service', 'metrics'],
  http: ['lib', 'errors', 'config', 'service', 'store', 'metrics'],
  sim: ['lib', 'errors', 'polyv'],
  client: [],
  infra: ['lib'],
  cli: ['lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'sim', 'infra', 'app.ts', 'main.ts'],
  composition: ['lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'infra'],
  'app.ts': ['lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'infra', 'composition'],
  'main.ts': ['lib', 'errors', 'config', 'store', 'infra', 'app.ts', 'metrics'],
};

describe('architecture of src/', () => {
  it('has the import graph this test reads (a parser that finds nothing would pass everything)', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(graph.get(join(SRC, 'app.ts'))?.length ?? 0).toBeGreaterThan(10);
  });

  it('when modules import each other at runtime, then no cycle exists', () => {
    expect(findCycles()).toEqual([]);
  });

  it('when a layer imports another, then only along the data flow the folder names draw', () => {
    const violations: string[] = [];
    for (const [file, targets] of graph) {
      const from = layerOf(file);
      for (const target of targets) {
        const to = layerOf(target);
        if (to !== from && !(MAY_IMPORT[from] ?? []).includes(to)) violations.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('the consumer client stands alone: it imports nothing of the broker (it is published as its own entry point)', () => {
    const client = [...graph].filter(([f]) => layerOf(f) === 'client').flatMap(([, t]) => t.filter((x) => layerOf(x) !== 'client'));
    expect(client.map((t) => relative(SRC, t))).toEqual([]);
  });
});
