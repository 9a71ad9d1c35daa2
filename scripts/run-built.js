#!/usr/bin/env node
/**
 * Runs a command of the built CLI, dist/src/cli/bin.js, in this process: `npm start` (serve) and `npm run demo`.
 * It builds first (`npm run build`) only when dist/ is missing or older than its sources, so an ordinary start
 * compiles nothing. Without TypeScript (`npm ci --omit=dev`) it starts
 * the dist/ it finds, and stops with a message only when there is none.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'dist', 'src', 'cli', 'bin.js');
/** What the build reads; tests beside the sources (`*.test.ts`) are not built. */
const BUILD_INPUTS = ['src', 'client/src', 'tsconfig.json', 'tsconfig.build.json'];

const say = (line) => process.stderr.write(`polyv-token-broker: ${line}\n`);

/** The newest modification time (ms) of a file, or of any file under a directory; 0 when absent. */
function newestMtimeMs(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return path.endsWith('.test.ts') ? 0 : stat.mtimeMs;
  return readdirSync(path).reduce((newest, name) => Math.max(newest, newestMtimeMs(join(path, name))), stat.mtimeMs);
}

/** Whether TypeScript is installed (it is not with production dependencies only). */
function haveTypeScript() {
  try {
    createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
    return true;
  } catch {
    return false;
  }
}

/** `npm run build`, with the npm that runs this script (`npm start`), else the one on the PATH. */
function build() {
  const npmCli = process.env['npm_execpath'];
  const [command, args] = npmCli?.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
  return spawnSync(command, [...args, 'run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
}

/** Why dist/ needs building, or undefined when it is up to date. */
function staleness() {
  if (!existsSync(BIN)) return 'dist/ is missing';
  const sources = Math.max(...BUILD_INPUTS.map((p) => newestMtimeMs(join(ROOT, p))));
  return sources > statSync(BIN).mtimeMs ? 'dist/ is older than src/' : undefined;
}

const reason = staleness();
if (reason !== undefined) {
  const typescript = haveTypeScript();
  if (!typescript && !existsSync(BIN)) {
    say(`${reason} and TypeScript is not installed: run \`npm ci && npm run build\`, or install a built package`);
    process.exit(1);
  }
  if (!typescript) {
    say(`${reason}, but TypeScript is not installed (production dependencies only): starting dist/ as it is`);
  } else {
    say(`${reason}: building (npm run build)`);
    const built = build();
    if (built.status !== 0) process.exit(built.status ?? 1);
  }
}

// In this process, as `node dist/src/cli/bin.js <command>` would run it: signals reach the broker directly.
process.argv = [process.argv[0], BIN, ...process.argv.slice(2)];
await import(pathToFileURL(BIN).href);
