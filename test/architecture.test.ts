import { readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { edgeName, findCycles, type ImportEdge, importsOf, layerViolations, readImportGraph, sourceFiles } from './support/import-graph.js';

/**
 * The import graph of src/: every relative import and re-export, type-only ones included. A type-only cycle is
 * still a cycle for the reader, and a type imported against the data flow still ties a layer to one it should
 * not know; only the runtime edges decide load order, so a runtime cycle is checked on its own as well.
 */
const SRC = resolve('src');
const { files, edges, unresolved } = readImportGraph(SRC);

/**
 * Which layers each layer may import: the data flow of the folder names (config -> PolyV client -> store ->
 * service -> scheduler -> HTTP -> metrics -> CLI), with app.ts and main.ts as the composition root. `domain`
 * holds the words every layer shares (token kinds, endpoints) and imports nothing; the consumer client is
 * published on its own and imports nothing of the broker, not even `domain`.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  domain: [],
  lib: ['domain'],
  errors: ['domain'],
  config: ['domain', 'lib', 'errors'],
  polyv: ['domain', 'lib', 'errors', 'config', 'metrics'],
  metrics: ['domain', 'lib'],
  store: ['domain', 'lib', 'errors', 'config'],
  service: ['domain', 'lib', 'errors', 'config', 'polyv', 'store', 'metrics'],
  scheduler: ['domain', 'lib', 'errors', 'config', 'store', 'service', 'metrics'],
  http: ['domain', 'lib', 'errors', 'config', 'service', 'store', 'metrics'],
  sim: ['domain', 'lib', 'errors', 'polyv'],
  client: [],
  infra: ['domain', 'lib'],
  cli: ['domain', 'lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'sim', 'infra', 'app.ts', 'main.ts'],
  composition: ['domain', 'lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'infra'],
  'app.ts': ['domain', 'lib', 'errors', 'config', 'polyv', 'store', 'service', 'scheduler', 'http', 'metrics', 'infra', 'composition'],
  'main.ts': ['domain', 'lib', 'errors', 'config', 'store', 'infra', 'app.ts', 'metrics'],
};

/**
 * Type-only edges of today's src/ that break a rule above (an import against the data flow, or one edge of a
 * type cycle). They are being removed; the checks below skip exactly these, and fail on an entry that no longer
 * exists or is no longer type-only. THIS LIST MUST SHRINK TO EMPTY: never add to it.
 */
const KNOWN_TYPE_EDGES_TO_REMOVE: readonly string[] = [];

const known = new Set(KNOWN_TYPE_EDGES_TO_REMOVE);
const checked = edges.filter((e) => !known.has(edgeName(e)));
const runtime = edges.filter((e) => e.kind === 'runtime');

const edge = (from: string, to: string, kind: ImportEdge['kind'] = 'type'): ImportEdge => ({ from, to, kind });

describe('the import graph reader and the rules themselves (a check that cannot fail is a defect)', () => {
  it('when it reads src/, then it finds the files and the imports of both kinds, and resolves every relative import', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(edges.filter((e) => e.from === 'app.ts' && e.kind === 'runtime').length).toBeGreaterThan(10);
    expect(edges.filter((e) => e.kind === 'type').length).toBeGreaterThan(10);
    expect(unresolved).toEqual([]);
  });

  it('when a file imports or re-exports, then each form is read with its kind', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      "import { type C } from './c.js';", // kept as `import {} from './c.js'` under verbatimModuleSyntax
      "import './d.js';",
      "export { e } from './e.js';",
      "export type { F } from './f.js';",
      'export type {',
      '  G,',
      "} from './g.js';",
      "export * from './h.js';",
      "export type * from './i.js';",
      "let j: import('./j.js').J;",
      "const k = await import('./k.js');",
      "import { z } from 'zod';",
    ].join('\n');
    expect(importsOf('x.ts', text)).toEqual([
      { specifier: './a.js', kind: 'runtime' },
      { specifier: '../b.js', kind: 'type' },
      { specifier: './c.js', kind: 'runtime' },
      { specifier: './d.js', kind: 'runtime' },
      { specifier: './e.js', kind: 'runtime' },
      { specifier: './f.js', kind: 'type' },
      { specifier: './g.js', kind: 'type' },
      { specifier: './h.js', kind: 'runtime' },
      { specifier: './i.js', kind: 'type' },
      { specifier: './j.js', kind: 'type' },
      { specifier: './k.js', kind: 'runtime' },
    ]);
  });

  it('when service/ imports scheduler/, even a type only, then the layer check reports it', () => {
    expect(MAY_IMPORT['service']).not.toContain('scheduler');
    expect(layerViolations([edge('service/channel-token-service.ts', 'scheduler/refresh-queue.ts')], MAY_IMPORT)).toEqual([
      'service/channel-token-service.ts -> scheduler/refresh-queue.ts (type)',
    ]);
    expect(layerViolations([edge('service/channel-token-service.ts', 'scheduler/refresh-queue.ts', 'runtime')], MAY_IMPORT)).toEqual([
      'service/channel-token-service.ts -> scheduler/refresh-queue.ts',
    ]);
    expect(layerViolations([edge('scheduler/refresh-processor.ts', 'service/channel-token-service.ts')], MAY_IMPORT)).toEqual([]);
  });

  it('when config/ takes a type from metrics/ or store/, then the layer check reports it', () => {
    expect(
      layerViolations([edge('config/config.ts', 'metrics/broker-metrics.ts'), edge('config/config.ts', 'store/redis-connection.ts')], MAY_IMPORT),
    ).toEqual(['config/config.ts -> metrics/broker-metrics.ts (type)', 'config/config.ts -> store/redis-connection.ts (type)']);
  });

  it('when a layer imports domain/, then only the client is refused; domain/ itself imports no layer', () => {
    for (const layer of Object.keys(MAY_IMPORT).filter((l) => l !== 'domain')) {
      const e = edge(layer.endsWith('.ts') ? layer : `${layer}/x.ts`, 'domain/token-kinds.ts');
      expect(layerViolations([e], MAY_IMPORT), layer).toEqual(layer === 'client' ? ['client/x.ts -> domain/token-kinds.ts (type)'] : []);
    }
    expect(MAY_IMPORT['domain']).toEqual([]);
    expect(layerViolations([edge('domain/token-kinds.ts', 'lib/clock.ts')], MAY_IMPORT)).toHaveLength(1);
    expect(MAY_IMPORT['client']).toEqual([]);
  });

  it('when two files import each other only for types, then the cycle check reports the cycle', () => {
    expect(findCycles([edge('config/config.ts', 'config/config-file.ts'), edge('config/config-file.ts', 'config/config.ts', 'runtime')])).toEqual([
      'config/config-file.ts -> config/config.ts -type-> config/config-file.ts',
    ]);
    expect(findCycles([edge('a.ts', 'b.ts'), edge('b.ts', 'c.ts'), edge('c.ts', 'a.ts'), edge('c.ts', 'd.ts'), edge('d.ts', 'd.ts')])).toEqual([
      'a.ts -type-> b.ts -type-> c.ts -type-> a.ts',
      'd.ts -type-> d.ts',
    ]);
    expect(findCycles([edge('a.ts', 'b.ts'), edge('b.ts', 'c.ts'), edge('a.ts', 'c.ts')])).toEqual([]);
  });

  it('when src/ has a folder or a root file, then the layer table places it', () => {
    const layers = readdirSync(SRC).filter((name) => !name.endsWith('.test.ts'));
    expect(layers.filter((l) => !(l in MAY_IMPORT))).toEqual([]);
    for (const [layer, allowed] of Object.entries(MAY_IMPORT)) expect(allowed.filter((l) => !(l in MAY_IMPORT)), layer).toEqual([]);
  });
});

describe('architecture of src/', () => {
  it('when modules import each other at runtime, then no cycle exists', () => {
    expect(findCycles(runtime)).toEqual([]);
  });

  it('when modules import each other, types included, then no cycle exists', () => {
    expect(findCycles(checked)).toEqual([]);
  });

  it('when a layer imports another, types included, then only along the data flow the folder names draw', () => {
    expect(layerViolations(checked, MAY_IMPORT)).toEqual([]);
  });

  it('the consumer client stands alone: client/src imports nothing of the broker, and no package but undici (it is published as its own package)', () => {
    const root = resolve('client/src');
    const clientFiles = sourceFiles(root).map((f) => resolve(root, f));
    expect(clientFiles.length).toBeGreaterThan(4);
    const outside: string[] = [];
    const packages = new Set<string>();
    for (const file of clientFiles) {
      const text = readFileSync(file, 'utf8');
      for (const { specifier } of importsOf(file, text)) {
        if (!resolve(dirname(file), specifier).startsWith(root)) outside.push(`${relative(root, file)} -> ${specifier}`);
      }
      for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
        if (!m[1]!.startsWith('.')) packages.add(m[1]!);
      }
    }
    expect(outside).toEqual([]);
    expect([...packages].filter((p) => p !== 'undici' && !p.startsWith('node:'))).toEqual([]);
    const manifest = JSON.parse(readFileSync('client/package.json', 'utf8')) as { dependencies?: Record<string, string> };
    expect(Object.keys(manifest.dependencies ?? {})).toEqual(['undici']);
  });

  it('when an edge is on the list of known type edges to remove, then it still exists and is type-only (the list only shrinks)', () => {
    const byName = new Map(edges.map((e) => [edgeName(e), e]));
    expect(KNOWN_TYPE_EDGES_TO_REMOVE.filter((name) => byName.get(name)?.kind !== 'type')).toEqual([]);
    expect(new Set(KNOWN_TYPE_EDGES_TO_REMOVE).size).toBe(KNOWN_TYPE_EDGES_TO_REMOVE.length);
  });
});
