import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';

/** A redis-server child process started by the broker (demo, dev) or by the test setup. */
export interface RedisServerHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Data directory (AOF and dump); created if missing. */
  dir: string;
  port?: number;
  /** Extra redis-server arguments, e.g. ['--requirepass', 'x']. */
  args?: readonly string[];
  /** Persist with an append-only file (default true). */
  appendOnly?: boolean;
}

/** A free TCP port on loopback, as the OS hands it out. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

function hasBinary(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure `redis-server` is on PATH: installs it with apt-get when running as root on Debian/Ubuntu,
 * otherwise fails with one line saying how to get it.
 */
export function ensureRedisServerBinary(log: (line: string) => void = () => undefined): void {
  if (hasBinary('redis-server')) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && hasBinary('apt-get')) {
    log('redis-server not found: installing it with apt-get (Debian package redis-server)');
    execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'], {
      stdio: 'inherit',
    });
    if (hasBinary('redis-server')) return;
  }
  throw new Error(
    'redis-server is not installed: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL',
  );
}

async function waitForPing(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${url} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      client.disconnect();
    }
  }
}

/** Starts redis-server on loopback and resolves once it answers PING. */
export async function startRedisServer(options: StartRedisOptions): Promise<RedisServerHandle> {
  ensureRedisServerBinary();
  const dir = resolve(options.dir);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  const port = options.port ?? (await freePort());
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--appendonly', options.appendOnly === false ? 'no' : 'yes',
    '--save', '',
    '--maxmemory-policy', 'noeviction',
    '--daemonize', 'no',
    ...(options.args ?? []),
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const password = (() => {
    const i = options.args?.indexOf('--requirepass') ?? -1;
    return i >= 0 ? options.args?.[i + 1] : undefined;
  })();
  const url = `redis://${password === undefined ? '' : `:${encodeURIComponent(password)}@`}127.0.0.1:${port}`;
  try {
    await waitForPing(url, child, 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    url,
    port,
    pid: child.pid,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) {
          done();
          return;
        }
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

const URL_FILE = 'redis-url';

/** Records where the embedded redis-server listens, so the on-call CLI finds it without REDIS_URL. */
export function writeEmbeddedRedisUrl(dataDir: string, url: string): void {
  writeFileSync(join(resolve(dataDir), URL_FILE), `${url}\n`, { mode: 0o600 });
}

/** The URL a running embedded redis-server recorded, if any. */
export function readEmbeddedRedisUrl(dataDir: string): string | undefined {
  try {
    return readFileSync(join(resolve(dataDir), URL_FILE), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export function removeEmbeddedRedisUrl(dataDir: string): void {
  rmSync(join(resolve(dataDir), URL_FILE), { force: true });
}
