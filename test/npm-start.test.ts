import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * `npm start` and `npm run demo` run scripts/run-built.js, which starts the built CLI and builds only when
 * dist/ is missing or older than src/. Each case runs the real script in a small project of its own (a
 * one-line bin.ts, the real TypeScript through a node_modules link, or none), never in this repository,
 * whose dist/ other test files are using.
 */

const ROOT = join(import.meta.dirname, '..');
const BIN_SOURCE = "process.stdout.write(`ran ${process.argv.slice(2).join(' ')}\\n`);\n";

let dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs = [];
});

/** A project laid out like this one; `typescript: false` is what `npm ci --omit=dev` leaves. */
function project(options: { typescript: boolean }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ptb-start-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'scripts'));
  cpSync(join(ROOT, 'scripts', 'run-built.js'), join(dir, 'scripts', 'run-built.js'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', scripts: { build: 'tsc -p tsconfig.build.json' } }));
  const tsconfig = { compilerOptions: { target: 'ES2022', module: 'NodeNext', types: ['node'], skipLibCheck: true, outDir: 'dist', rootDir: '.' } };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  writeFileSync(join(dir, 'tsconfig.build.json'), readFileSync(join(ROOT, 'tsconfig.build.json')));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'src', 'cli', 'bin.ts'), BIN_SOURCE);
  if (options.typescript) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  else mkdirSync(join(dir, 'node_modules'));
  return dir;
}

const binOf = (dir: string) => join(dir, 'dist', 'src', 'cli', 'bin.js');

function start(dir: string, command = 'serve') {
  const started = performance.now();
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'run-built.js'), command], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - started };
}

/** Sets a file's modification time `secondsAgo` in the past. */
function age(path: string, secondsAgo: number): void {
  const at = new Date(Date.now() - secondsAgo * 1000);
  utimesSync(path, at, at);
}

describe('npm start (scripts/run-built.js)', () => {
  it('when package.json starts the broker and the demo, then both go through the script, and npm run build builds with tsc', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['start']).toBe('node scripts/run-built.js serve');
    expect(pkg.scripts['demo']).toBe('node scripts/run-built.js demo');
    expect(pkg.scripts['build']).toMatch(/\btsc -p tsconfig\.build\.json\b/);
  });

  it('when dist/ is missing, then it builds and runs the command', () => {
    const dir = project({ typescript: true });
    const r = start(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('dist/ is missing: building');
    expect(r.stdout).toBe('ran serve\n');
  });

  it('when dist/ is newer than src/, then it runs without building, well under a second', () => {
    const dir = project({ typescript: true });
    expect(start(dir).status).toBe(0);
    age(join(dir, 'src', 'cli', 'bin.ts'), 60);
    const builtAt = statSync(binOf(dir)).mtimeMs;
    const r = start(dir, 'demo');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ran demo\n');
    expect(statSync(binOf(dir)).mtimeMs, 'dist/ untouched').toBe(builtAt);
  });

  it('when a source changed after the build, then it builds again and runs the new code', () => {
    const dir = project({ typescript: true });
    expect(start(dir).status).toBe(0);
    age(binOf(dir), 60);
    writeFileSync(join(dir, 'src', 'cli', 'bin.ts'), BIN_SOURCE.replace('ran', 'ran again'));
    const r = start(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('dist/ is older than src/: building');
    expect(r.stdout).toBe('ran again serve\n');
  });

  it('when the build fails, then nothing runs, it exits non-zero, and dist/ stays as old as it was', () => {
    const dir = project({ typescript: true });
    expect(start(dir).status).toBe(0);
    age(binOf(dir), 60);
    const builtAt = statSync(binOf(dir)).mtimeMs;
    writeFileSync(join(dir, 'src', 'cli', 'bin.ts'), 'const n: number = "not a number";\n');
    const r = start(dir);
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain('ran');
    expect(statSync(binOf(dir)).mtimeMs).toBe(builtAt);
  });

  it('when only production dependencies are installed and dist/ is built, then it starts dist/ without TypeScript', () => {
    const built = project({ typescript: true });
    expect(start(built).status).toBe(0);
    const dir = project({ typescript: false });
    cpSync(join(built, 'dist'), join(dir, 'dist'), { recursive: true });
    const fresh = start(dir);
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stdout).toBe('ran serve\n');
    // A checkout newer than the build it came with: started as it is, with a warning.
    age(binOf(dir), 60);
    const stale = start(dir);
    expect(stale.status, stale.stderr).toBe(0);
    expect(stale.stderr).toContain('TypeScript is not installed (production dependencies only): starting dist/ as it is');
    expect(stale.stdout).toBe('ran serve\n');
  });

  it('when only production dependencies are installed and there is no dist/, then it says how to build and exits 1', () => {
    const dir = project({ typescript: false });
    const r = start(dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('dist/ is missing and TypeScript is not installed: run `npm ci && npm run build`');
    expect(existsSync(join(dir, 'dist'))).toBe(false);
  });
});
