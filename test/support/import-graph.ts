import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative, sep } from 'node:path';
import ts from 'typescript';

/**
 * The import graph of a source folder, read with the TypeScript parser: every relative import, re-export,
 * dynamic `import()` and `import('...')` type, each edge marked `runtime` or `type`.
 *
 * `type` is what the build erases: `import type`, `export type ... from`, `export type * from`, `import('x').T`.
 * With `verbatimModuleSyntax` (tsconfig.json), `import { type A } from './x.js'` is emitted as
 * `import {} from './x.js'`: the module is still loaded, so that edge is `runtime`. Either kind is an edge of
 * the graph a reader follows, so both count for cycles and layers; `runtime` alone decides load order.
 */

export type EdgeKind = 'runtime' | 'type';

export interface ImportEdge {
  /** Paths relative to the source folder, with `/` separators: `config/config.ts`. */
  from: string;
  to: string;
  kind: EdgeKind;
}

/** `from -> to`: the form of allow-list entries and failure messages. */
export const edgeName = (e: Pick<ImportEdge, 'from' | 'to'>): string => `${e.from} -> ${e.to}`;

/** The top-level folder of a file (`config`), or the file itself at the root (`app.ts`). */
export const layerOf = (file: string): string => file.split('/')[0]!;

export function sourceFiles(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return sourceFiles(root, path);
      return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts') ? [toPosix(relative(root, path))] : [];
    })
    .sort();
}

const toPosix = (path: string): string => path.split(sep).join('/');

/** The relative module references of one file's text, with the kind of each. */
export function importsOf(fileName: string, text: string): Array<{ specifier: string; kind: EdgeKind }> {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Array<{ specifier: string; kind: EdgeKind }> = [];
  const add = (node: ts.Node | undefined, kind: EdgeKind) => {
    if (node !== undefined && ts.isStringLiteralLike(node) && node.text.startsWith('.')) out.push({ specifier: node.text, kind });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly === true ? 'type' : 'runtime');
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, node.isTypeOnly ? 'type' : 'runtime');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly ? 'type' : 'runtime');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal, 'type');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], 'runtime');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/**
 * Every edge between files of `root` (imports of packages and of files outside `root` are left out). A
 * specifier that names no file of `root` is returned in `unresolved`: a reader that silently dropped it
 * would pass everything.
 */
export function readImportGraph(root: string): { files: string[]; edges: ImportEdge[]; unresolved: string[] } {
  const files = sourceFiles(root);
  const known = new Set(files);
  const edges: ImportEdge[] = [];
  const unresolved: string[] = [];
  for (const from of files) {
    for (const { specifier, kind } of importsOf(from, readFileSync(join(root, from), 'utf8'))) {
      const to = posix.normalize(posix.join(posix.dirname(from), specifier.replace(/\.js$/, '.ts')));
      if (to.startsWith('../')) continue; // outside root (package.json and the like)
      if (known.has(to)) edges.push({ from, to, kind });
      else unresolved.push(`${from}: '${specifier}'`);
    }
  }
  return { files, edges: dedupe(edges), unresolved };
}

/** One edge per (from, to); `runtime` wins over `type` when a file imports both ways. */
function dedupe(edges: readonly ImportEdge[]): ImportEdge[] {
  const byName = new Map<string, ImportEdge>();
  for (const e of edges) {
    const seen = byName.get(edgeName(e));
    if (seen === undefined || (seen.kind === 'type' && e.kind === 'runtime')) byName.set(edgeName(e), e);
  }
  return [...byName.values()];
}

/**
 * The cycles of a graph, one per strongly connected component (Tarjan): `a -> b -type-> a`. Every file on a
 * cycle is in exactly one reported component, so fixing all reported cycles leaves none.
 */
export function findCycles(edges: readonly ImportEdge[]): string[] {
  const out = new Map<string, ImportEdge[]>();
  for (const e of edges) out.set(e.from, [...(out.get(e.from) ?? []), e]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  const connect = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const { to } of out.get(v) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v)!, index.get(to)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  const nodes = [...new Set(edges.flatMap((e) => [e.from, e.to]))].sort();
  for (const v of nodes) if (!index.has(v)) connect(v);

  return components
    .filter((c) => c.length > 1 || (out.get(c[0]!) ?? []).some((e) => e.to === c[0]))
    .map((c) => describeCycle(c.sort(), out))
    .sort();
}

/** One concrete cycle through the first file of a component, by breadth-first search inside it. */
function describeCycle(component: readonly string[], out: Map<string, ImportEdge[]>): string {
  const inside = new Set(component);
  const start = component[0]!;
  const via = new Map<string, ImportEdge>();
  const queue = [start];
  search: while (queue.length > 0) {
    const v = queue.shift()!;
    for (const e of out.get(v) ?? []) {
      if (!inside.has(e.to) || via.has(e.to)) continue;
      via.set(e.to, e);
      if (e.to === start) break search;
      queue.push(e.to);
    }
  }
  const path: ImportEdge[] = [];
  for (let at = start; path.length === 0 || at !== start; ) {
    const e = via.get(at)!;
    path.unshift(e);
    at = e.from;
  }
  const steps = path.map((e) => `${e.kind === 'type' ? ' -type-> ' : ' -> '}${e.to}`).join('');
  const more = component.length > path.length ? ` (component of ${component.length} files: ${component.join(', ')})` : '';
  return `${start}${steps}${more}`;
}

/** The edges between layers that `mayImport` does not allow (a layer missing from it may import nothing). */
export function layerViolations(edges: readonly ImportEdge[], mayImport: Readonly<Record<string, readonly string[]>>): string[] {
  return edges
    .filter((e) => layerOf(e.from) !== layerOf(e.to) && !(mayImport[layerOf(e.from)] ?? []).includes(layerOf(e.to)))
    .map((e) => `${edgeName(e)}${e.kind === 'type' ? ' (type)' : ''}`)
    .sort();
}
