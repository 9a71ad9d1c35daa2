/**
 * Plumbing shared by the bench scripts: child processes that talk over IPC, autocannon runs, percentiles.
 * Every process listens on 127.0.0.1 only; every child is killed when the bench ends, however it ends.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';

export const BENCH_API_KEY = 'bench-consumer-key-0123456789';
export const BENCH_APP_ID = 'benchappid01';
export const BENCH_APP_SECRET = 'bench-secret-0123456789abcdef';

/** Environment of a broker process in the bench (the config is parsed from it as in production). */
export function brokerEnv(redisUrl: string, simUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    HOST: '127.0.0.1',
    PORT: '0',
    POLYV_BASE_URL: simUrl,
    POLYV_APP_ID: BENCH_APP_ID,
    POLYV_APP_SECRET: BENCH_APP_SECRET,
    BROKER_API_KEYS: `bench:${BENCH_API_KEY}`,
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
    // The per-consumer rate limit is on, as in production, but high enough never to refuse the load.
    BROKER_RATE_LIMIT_PER_SECOND: '1000000',
    ...extra,
  };
}

type Message = { type: 'ready'; info: unknown } | { type: 'reply'; id: number; result?: unknown; error?: string };

/** A forked bench script: it sends `{type:'ready', info}` once up, then answers commands. */
export class Child {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  private constructor(
    readonly proc: ChildProcess,
    readonly info: unknown,
  ) {
    proc.on('message', (m: Message) => {
      if (m.type !== 'reply') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(m.error));
      else p?.resolve(m.result);
    });
    proc.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error('child exited'));
      this.pending.clear();
    });
  }

  static all = new Set<ChildProcess>();

  /** Forks `script` (a compiled bench file) and waits for its ready message. */
  static async start(script: URL, args: string[], env: Record<string, string>, execArgv: string[] = []): Promise<Child> {
    const proc = fork(script, args, {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    Child.all.add(proc);
    proc.on('exit', () => Child.all.delete(proc));
    const info = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script.pathname} did not start within 60 s`)), 60_000);
      proc.on('message', (m: Message) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m.info);
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${script.pathname} exited with code ${String(code)} before it was ready`));
      });
    });
    return new Child(proc, info);
  }

  request<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.exited) return Promise.reject(new Error('child exited'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: (v) => resolve(v as T), reject });
      this.proc.send({ type: 'cmd', id, cmd, args });
    });
  }

  /** Asks the child to stop, then kills it if it has not exited within `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited || this.proc.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.send({ type: 'cmd', id: 0, cmd: 'stop', args: {} });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }

  static killAll(): void {
    for (const proc of Child.all) proc.kill('SIGKILL');
  }
}

export type CommandHandler = (cmd: string, args: Record<string, unknown>) => Promise<unknown>;

/** The child side: announce readiness, then answer commands until `stop`. */
export function serveCommands(info: unknown, handle: CommandHandler, stop: () => Promise<void>): void {
  process.on('message', (m: { type: string; id: number; cmd: string; args: Record<string, unknown> }) => {
    if (m.type !== 'cmd') return;
    if (m.cmd === 'stop') {
      void stop().finally(() => process.exit(0));
      return;
    }
    handle(m.cmd, m.args).then(
      (result) => process.send?.({ type: 'reply', id: m.id, result }),
      (err: unknown) => process.send?.({ type: 'reply', id: m.id, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.send?.({ type: 'ready', info });
}

export interface AutocannonResult {
  requestsPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  errors: number;
  total: number;
}

/** Runs the autocannon CLI (a child process, so its CPU is its own) and reads its JSON summary. */
export async function autocannon(url: string, options: { connections: number; seconds: number; headers?: Record<string, string> }): Promise<AutocannonResult> {
  const bin = createRequire(import.meta.url).resolve('autocannon');
  const args = [bin, '-j', '-c', String(options.connections), '-d', String(options.seconds)];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}=${v}`);
  args.push(url);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  Child.all.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  Child.all.delete(proc);
  if (code !== 0) throw new Error(`autocannon exited with ${String(code)}`);
  const r = JSON.parse(out) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  return {
    requestsPerSec: r.requests.average,
    latencyP50Ms: r.latency.p50,
    latencyP99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
    total: r.requests.total,
  };
}

/** Whether Debian's `wrk` is on the PATH (the bench runs it beside autocannon when it is). */
export function wrkInstalled(): boolean {
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

/**
 * One `wrk -t1` run (a C load generator, lighter than autocannon, so the server gets more of the cores).
 * Non-2xx answers and socket errors are counted from its summary.
 */
export async function wrk(url: string, options: { connections: number; seconds: number; headers?: Record<string, string> }): Promise<AutocannonResult> {
  const args = ['-t1', '-c', String(options.connections), '-d', `${options.seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const proc = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  Child.all.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  Child.all.delete(proc);
  if (code !== 0) throw new Error(`wrk exited with ${String(code)}`);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const ms = (re: RegExp) => {
    const m = re.exec(out);
    if (m === null) return Number.NaN;
    const unit = m[2] ?? 'ms';
    return Number(m[1]) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  };
  const errors = [/connect (\d+)/, /read (\d+)/, /write (\d+)/, /timeout (\d+)/].reduce((sum, re) => sum + num(re), 0);
  return {
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    latencyP50Ms: ms(/\s50%\s+([\d.]+)(us|ms|s)/),
    latencyP99Ms: ms(/\s99%\s+([\d.]+)(us|ms|s)/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors,
    total: num(/(\d+) requests in/),
  };
}

/** The q-quantile (0..1) of already sorted numbers, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export function sortNumbers(values: Iterable<number>): number[] {
  return [...values].sort((a, b) => a - b);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits for `GET url` to answer 200. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}
